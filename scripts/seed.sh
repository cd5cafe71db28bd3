#!/usr/bin/env bash
# `npm run db:seed`: the demo tenants and their source reports (db/seed/demo.sql; re-runnable, it
# replaces the demo tenants as a whole). Against DATABASE_URL when set, otherwise the local
# cluster, started and migrated if needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${DATABASE_URL:-}" ]; then
  psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -f db/seed/demo.sql
else
  # migrate.sh starts the local cluster when it is not running.
  bash scripts/migrate.sh --no-dump-schema up >&2
  bash scripts/db.sh psql -X -q -v ON_ERROR_STOP=1 -f db/seed/demo.sql
fi
echo "seeded: acme, globex, initech, umbrella, hooli (db/seed/demo.sql)" >&2
