#!/usr/bin/env bash
# `npm start`: the local database with pg_cron, migrated, seeded with demo tenants, and what is in it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/ensure-deps.sh
bash scripts/db.sh up
bash scripts/migrate.sh --no-dump-schema up >&2
psql_db() { bash scripts/db.sh psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_db -f db/seed/demo.sql

echo
echo "== Demo tenants and their source reports"
psql_db -P footer=off -c "
  select t.slug, t.name,
         (select count(*) from kpi.avi_reports a where a.tenant_id = t.id) as avi_reports,
         (select max(week_start) from kpi.avi_reports a where a.tenant_id = t.id) as latest_avi_week,
         (select count(*) from kpi.vli_audits v where v.tenant_id = t.id) as vli_audits,
         (select count(*) from kpi.clarity_reports c where c.tenant_id = t.id) as clarity_reports
  from kpi.tenants t order by t.slug"

cat <<EOF

The database is running at $(bash scripts/db.sh url)
  Look around:   npm run db:psql            (or: scripts/db.sh psql -c 'select * from kpi.tenants')
  Stop it:       npm run db:down
EOF
