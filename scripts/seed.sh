#!/usr/bin/env bash
# `npm run db:seed`: the demo tenants and their source reports (db/seed/demo.sql). Seeding again
# replaces the demo tenants as a whole: it deletes them first, with everything that is theirs
# (history, anomalies, custom KPIs, …), and says so before it does. Into the local cluster
# (started and migrated if needed); into DATABASE_URL — a database the project did not create,
# where a real tenant could be called acme — only with --yes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

USAGE="usage: npm run db:seed [-- --yes]

Inserts the demo tenants (acme, globex, initech, umbrella, hooli) and their source reports from
db/seed/demo.sql. Tenants with those slugs are deleted first, with everything that is theirs: the
script lists what that is before it deletes anything.
  (default)  the local cluster of scripts/db.sh, started and migrated if needed
  --yes      required with DATABASE_URL set: seed that database, replacing tenants with those slugs"
CLI_NAME=db:seed
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
cli_refuse "--yes" "$@"
yes=no
for arg in "$@"; do
  case "$arg" in
    --yes) yes=yes ;;
    *) cli_fail "unexpected argument: $arg" ;;
  esac
done

if [ -n "${DATABASE_URL:-}" ]; then
  [ "$yes" = yes ] || cli_fail "DATABASE_URL is set: that database was not created by this project, and seeding deletes any tenant named acme, globex, initech, umbrella or hooli in it. Run again with --yes to seed it, or unset DATABASE_URL for the local cluster."
  psql_db() { psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
else
  # migrate.sh starts the local cluster when it is not running.
  bash scripts/migrate.sh --no-dump-schema up >&2
  psql_db() { bash scripts/db.sh psql -X -q -v ON_ERROR_STOP=1 "$@"; }
fi

# The slugs the seed replaces, read from the seed itself (its one delete statement).
slugs=$(sed -nE "s/^delete from kpi\.tenants where slug in \((.*)\);$/\1/p" db/seed/demo.sql)
[ -n "$slugs" ] || { echo "db:seed: db/seed/demo.sql has no 'delete from kpi.tenants where slug in (…);' line" >&2; exit 1; }
replaced=$(psql_db -A -t -c "
  select string_agg(format('%s (%s history weeks, %s custom KPIs, %s anomalies, %s AVI reports)', t.slug,
           (select count(*) from kpi.kpi_history h where h.tenant_id = t.id),
           (select count(*) from kpi.custom_kpis d where d.tenant_id = t.id),
           (select count(*) from kpi.kpi_anomalies a where a.tenant_id = t.id),
           (select count(*) from kpi.avi_reports a where a.tenant_id = t.id)), ', ' order by t.slug)
  from kpi.tenants t where t.slug in ($slugs)")
if [ -n "$replaced" ]; then
  echo "db:seed: replacing the demo tenants: deleting $replaced" >&2
fi
psql_db -f db/seed/demo.sql
echo "seeded: acme, globex, initech, umbrella, hooli (db/seed/demo.sql)" >&2
