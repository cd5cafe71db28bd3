-- Where the fill's time goes, by function: a cold full fill of every tenant, and three backfill
-- batches of 1,000 tenants, each in a transaction rolled back, with track_functions on (the time
-- of each function itself, "self", and with what it calls, "total"); then the rows' computing
-- alone. Run it on the bench's database after `npm run bench`
-- (docs/performance.md):
--   psql postgres://postgres@127.0.0.1:54359/kpi_bench_20k -f scripts/bench/where-the-time-goes.sql
-- (track_functions keeps SQL functions from being inlined, so their own rows here cost more than
-- in a fill without it: read the big ones.)
\timing on
\pset pager off

\echo === a cold full fill, warm-up
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts;
select kpi.fill_all_kpi_history(full => true) ->> 'rows_written' as rows; rollback;

\echo === a cold full fill, by function
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts;
set local track_functions = 'all';
select kpi.fill_all_kpi_history(full => true) ->> 'rows_written' as rows;
select funcname, calls, round(total_time) as total_ms, round(self_time) as self_ms
from pg_stat_xact_user_functions order by total_time desc limit 12;
rollback;

\echo === computing the same rows without writing them (the floor writes them without computing: the bench figure)
begin;
create temp table pairs on commit drop as
  select tenant_id, as_of from kpi.fill_targets('latest', null, null, null) where as_of is not null and not kept;
select count(*) as computed from pairs w
cross join lateral (
  select r.aiv_pct from kpi.avi_reports r where r.tenant_id = w.tenant_id and r.week_start = w.as_of limit 1) a
left join lateral (
  select v.integrity_pct from kpi.vli_audits v where v.tenant_id = w.tenant_id and v.audited_at < kpi.week_end(w.as_of)
  order by v.audited_at desc, v.id desc limit 1) vli on true
left join lateral (
  select kpi.hrp_pct(c.hrp) from kpi.clarity_reports c where c.tenant_id = w.tenant_id and c.measured_at < kpi.week_end(w.as_of)
  order by c.measured_at desc, c.id desc limit 1) clarity on true;
rollback;

\echo === three backfill batches of 1,000 tenants, by function
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts;
set local track_functions = 'all';
select kpi.start_kpi_run('backfill', null, null, null) as run \gset
select kpi.backfill_batch(:run, null, 1000, null, null) ->> 'next_tenant' as next \gset
select kpi.backfill_batch(:run, :'next', 1000, null, null) ->> 'next_tenant' as next \gset
select kpi.backfill_batch(:run, :'next', 1000, null, null) ->> 'next_tenant' as next \gset
select funcname, calls, round(total_time) as total_ms, round(self_time) as self_ms
from pg_stat_xact_user_functions order by total_time desc limit 12;
select count(*) as rows_written from kpi.kpi_history;
rollback;
