-- Where a cold full fill's time goes: the same fill of every tenant, each variant in a transaction
-- rolled back, with the history's triggers disabled in turn (scoring; scoring and the change log;
-- all of them), three times each; then the choice of the (tenant, week) pairs alone. Run it on
-- the bench's database after `npm run bench` (docs/performance.md):
--   psql postgres://postgres@127.0.0.1:54359/kpi_bench -f scripts/bench/full-fill-breakdown.sql
-- Compare the times with psql's \timing lines; the floor is the bench's own figure.
\timing on
\pset pager off
-- Where a cold full fill's time goes, per variant, each in a transaction rolled back.
\echo === all on
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; checkpoint; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
\echo === no scoring
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger kpi_history_scored_insert; alter table kpi.kpi_history disable trigger kpi_history_scored_update; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger kpi_history_scored_insert; alter table kpi.kpi_history disable trigger kpi_history_scored_update; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger kpi_history_scored_insert; alter table kpi.kpi_history disable trigger kpi_history_scored_update; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
\echo === no scoring, no log
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger kpi_history_scored_insert; alter table kpi.kpi_history disable trigger kpi_history_scored_update; alter table kpi.kpi_history disable trigger kpi_history_logged_insert; alter table kpi.kpi_history disable trigger kpi_history_logged_update; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger kpi_history_scored_insert; alter table kpi.kpi_history disable trigger kpi_history_scored_update; alter table kpi.kpi_history disable trigger kpi_history_logged_insert; alter table kpi.kpi_history disable trigger kpi_history_logged_update; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger kpi_history_scored_insert; alter table kpi.kpi_history disable trigger kpi_history_scored_update; alter table kpi.kpi_history disable trigger kpi_history_logged_insert; alter table kpi.kpi_history disable trigger kpi_history_logged_update; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
\echo === every user trigger of kpi_history off
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger user; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger user; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
begin; truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts; alter table kpi.kpi_history disable trigger user; select kpi.fill_all_kpi_history(full => true)->>'rows_written' as rows; rollback;
\echo === which pairs (fill_targets, full)
select count(*) from kpi.fill_targets('latest', null, null, null);
select count(*) from kpi.fill_targets('latest', null, null, null);
