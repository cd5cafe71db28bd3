#!/usr/bin/env bash
# `npm run db:migrate`: the migrations (db/migrations, dbmate: tables and data), then the
# definitions (db/definitions: every function, view, trigger, policy and grant; see
# scripts/definitions.ts). Against DATABASE_URL when set; otherwise against the local cluster
# (started if needed), whose schema is then dumped to the committed db/schema.sql.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
  cat <<'EOF'
usage: npm run db:migrate [-- COMMAND] [--no-dump-schema]

  up        apply pending migrations, then the definitions (the default)
  status    list applied and pending migrations
  rollback  roll back the latest migration (tables only: see docs/schema.md, "Upgrading")

Against DATABASE_URL when set, otherwise the local cluster (scripts/db.sh), whose schema is then
written to db/schema.sql (--no-dump-schema: not). DBMATE: the dbmate binary (default node_modules/.bin/dbmate).
EOF
}

command=""
dump=yes
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --no-dump-schema) dump=no ;;
    up | migrate | status | rollback | down)
      [ -z "$command" ] || { usage >&2; exit 2; }
      command="$arg" ;;
    *) echo "migrate: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done
command="${command:-up}"

DBMATE="${DBMATE:-$ROOT/node_modules/.bin/dbmate}"
if [ -z "${DATABASE_URL:-}" ]; then
  bash scripts/db.sh up
  # dbmate asks for TLS unless told otherwise; the local cluster listens on loopback without it.
  DATABASE_URL="$(bash scripts/db.sh url)?sslmode=disable"
else
  # A database the project did not start: its dump is not the committed one.
  dump=no
fi
export DATABASE_URL

"$DBMATE" --migrations-dir db/migrations --no-dump-schema "$command"
case "$command" in
  up | migrate) node_modules/.bin/tsx scripts/definitions.ts ;;
  *) dump=no ;;
esac

if [ "$dump" = yes ]; then
  "$DBMATE" --migrations-dir db/migrations --schema-file db/schema.sql dump >/dev/null
  # pg_dump fences its output with a random \restrict key; a fixed one keeps the committed dump's
  # diff to what really changed.
  sed -i -E 's/^\\(un)?restrict .*/\\\1restrict kpi_history/' db/schema.sql
fi
