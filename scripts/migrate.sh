#!/usr/bin/env bash
# Applies db/migrations with dbmate and refreshes the committed dump db/schema.sql.
# Against DATABASE_URL when set; otherwise against the local cluster (started if needed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ -z "${DATABASE_URL:-}" ]; then
  bash scripts/db.sh up
  # dbmate asks for TLS unless told otherwise; the local cluster listens on loopback without it.
  DATABASE_URL="$(bash scripts/db.sh url)?sslmode=disable"
fi
export DATABASE_URL
node_modules/.bin/dbmate --migrations-dir db/migrations --schema-file db/schema.sql "${@:-up}"

# pg_dump fences its output with a random \restrict key; a fixed one keeps the committed dump's diff
# to what really changed.
if [ -f db/schema.sql ]; then
  sed -i -E 's/^\\(un)?restrict .*/\\\1restrict kpi_history/' db/schema.sql
fi
