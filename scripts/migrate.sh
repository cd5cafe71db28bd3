#!/usr/bin/env bash
# `npm run db:migrate`: the migrations (db/migrations, dbmate: tables and data), then the
# definitions (db/definitions: every function, view, trigger, policy and grant; see
# scripts/definitions.ts). Against DATABASE_URL when set; otherwise against the local cluster
# (started if needed), whose schema is then dumped to the committed db/schema.sql.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

USAGE="usage: npm run db:migrate [-- COMMAND] [--no-dump-schema]

  up        apply pending migrations, then the definitions (the default)
  status    list applied and pending migrations
  rollback  roll back the latest migration (tables only: see docs/schema.md, \"Upgrading\")

Against DATABASE_URL when set, otherwise the local cluster (scripts/db.sh), whose schema is then
written to db/schema.sql (--no-dump-schema: not). DBMATE: the dbmate binary (default node_modules/.bin/dbmate)."
CLI_NAME=db:migrate
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
cli_refuse "--no-dump-schema" "$@"

command=""
dump=yes
for arg in "$@"; do
  case "$arg" in
    --no-dump-schema) dump=no ;;
    up | migrate | status | rollback | down)
      [ -z "$command" ] || cli_fail "one command at a time (got $command and $arg)"
      command="$arg" ;;
    *) cli_fail "unknown command: $arg" ;;
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
  # dbmate asks for TLS unless the URL says otherwise: on loopback, where a server without TLS is
  # the usual case, it is told not to (a remote server keeps whatever the URL asks).
  case "$DATABASE_URL" in
    *sslmode=*) ;;
    *@localhost[:/]* | *@127.0.0.1[:/]* | *@\[::1\][:/]*)
      case "$DATABASE_URL" in *\?*) DATABASE_URL="$DATABASE_URL&sslmode=disable" ;; *) DATABASE_URL="$DATABASE_URL?sslmode=disable" ;; esac ;;
  esac
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
