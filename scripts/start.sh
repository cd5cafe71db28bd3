#!/usr/bin/env bash
# `npm start`: the local database with pg_cron, migrated, seeded with demo tenants, and what is in it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USAGE="usage: npm start

Starts the local PostgreSQL cluster with pg_cron (installing what is missing), migrates it, seeds
the demo tenants (replacing them if they are there), runs the aggregation and shows the result."
CLI_NAME=start
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
cli_refuse "" "$@"
[ "$#" -eq 0 ] || cli_fail "unexpected argument: $1"

bash scripts/ensure-deps.sh
# Starts and migrates the local cluster too.
DATABASE_URL= bash scripts/seed.sh
psql_db() { bash scripts/db.sh psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo
echo "== Demo tenants and their source reports"
psql_db -P footer=off -c "
  select t.slug, t.name,
         (select count(*) from kpi.avi_reports a where a.tenant_id = t.id) as avi_reports,
         (select max(week_start) from kpi.avi_reports a where a.tenant_id = t.id) as latest_avi_week,
         (select count(*) from kpi.vli_audits v where v.tenant_id = t.id) as vli_audits,
         (select count(*) from kpi.clarity_reports c where c.tenant_id = t.id) as clarity_reports
  from kpi.tenants t order by t.slug"

echo
echo "== Aggregation: kpi.fill_all_kpi_history() (the fill pg_cron runs daily at 04:00 UTC, through kpi.run_scheduled_kpi_fill())"
psql_db -P footer=off -c "
  select r.status, r.ok as tenants_ok, r.total as tenants_total, r.rows_written,
         jsonb_path_query_array(r.errors, '\$[*].code') as errors,
         jsonb_path_query_array(r.warnings, '\$[*].code') as warnings
  from jsonb_to_record(kpi.fill_all_kpi_history())
    as r(status text, ok int, total int, rows_written int, errors jsonb, warnings jsonb)"

echo
echo "== Latest kpi_history row of each demo tenant"
psql_db -P footer=off -c "
  select distinct on (t.slug) t.slug, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
         h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct, h.updated_at
  from kpi.kpi_history h join kpi.tenants t on t.id = h.tenant_id
  order by t.slug, h.as_of desc"

echo
echo "== Months of each demo tenant (api.kpi_history_monthly, as the owner: every tenant)"
psql_db -P footer=off -c "
  select tenant, period_start, weeks, complete, aiv_pct_avg, aiv_pct_last, vli_integrity_pct_avg, hrp_pct_avg
  from api.kpi_history_monthly order by tenant, period_start"

echo
echo "== Anomalies found by the fill (kpi.kpi_anomalies), each with an alert for npm run worker to post"
psql_db -P footer=off -c "
  select t.slug, a.as_of, a.kpi, a.value, a.baseline_median, round(a.score::numeric, 2) as score, a.direction,
         (select string_agg(distinct l.status, ', ') from kpi.alerts l
          where l.tenant_id = a.tenant_id and l.as_of = a.as_of and l.kpi = a.kpi) as alert
  from kpi.kpi_anomalies a join kpi.tenants t on t.id = a.tenant_id
  order by t.slug, a.as_of, a.kpi"

echo
echo "== Last runs (kpi.kpi_runs)"
psql_db -P footer=off -c "
  select id, kind, trigger, status, started_at, duration_ms, ok_count, total_count, rows_written
  from kpi.kpi_runs order by id desc limit 5"

cat <<EOF

The database is running at $(bash scripts/db.sh url)
  Look around:   npm run db:psql            (or: scripts/db.sh psql -c 'select * from kpi.tenants')
  Fill again:    scripts/db.sh psql -c 'select kpi.fill_all_kpi_history()'
  Backfill:      scripts/db.sh psql -c 'select kpi.backfill_kpi_history()'
  The schedule:  scripts/db.sh psql -c 'select jobname, schedule, command from cron.job'
  Post alerts:   KPI_ALERT_WEBHOOK_URL=… KPI_ALERT_WEBHOOK_SECRET=… npm run worker   (docs/alerts.md)
  Stop it:       npm run db:down
EOF
