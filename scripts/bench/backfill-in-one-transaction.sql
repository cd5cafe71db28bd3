-- The backfill of every tenant in one transaction, from an empty history, timed and rolled back:
-- what `npm run bench` measures, on data it left (the 100,000-tenant figure of docs/performance.md).
--   psql postgres://postgres@127.0.0.1:54359/kpi_bench -f scripts/bench/backfill-in-one-transaction.sql
\set ON_ERROR_STOP 1
begin;
truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts;
\timing on
select kpi.backfill_kpi_history() - 'errors' - 'warnings' as result;
\timing off
rollback;
