-- migrate:up

-- Re-scoring every tenant's anomalies (after a change of a default rule) is long work an operator
-- starts: it runs in committed batches with its own row in the run log, kind 'rescore'. A cleanup
-- writes no history: what it deleted is in details, and its rows_written is 0.
alter table kpi.kpi_runs drop constraint kpi_runs_kind,
  add constraint kpi_runs_kind check (kind in ('fill', 'fill_all', 'backfill', 'cleanup', 'rescore'));
update kpi.kpi_runs
set details = coalesce(details, '{}') || jsonb_build_object('rows_deleted', rows_written), rows_written = 0
where kind = 'cleanup' and rows_written > 0;
comment on column kpi.kpi_runs.status is 'ok: every tenant done; partial: some tenants had errors; failed: the run stopped with an error (see errors; a batched run keeps the batches before it); skipped: another all-tenant run held the lock; running: not finished.';

-- migrate:down
update kpi.kpi_runs set rows_written = (details ->> 'rows_deleted')::integer, details = details - 'rows_deleted'
where kind = 'cleanup' and details ? 'rows_deleted';
delete from kpi.kpi_runs where kind = 'rescore';
alter table kpi.kpi_runs drop constraint kpi_runs_kind,
  add constraint kpi_runs_kind check (kind in ('fill', 'fill_all', 'backfill', 'cleanup'));
comment on column kpi.kpi_runs.status is 'ok: every tenant written; partial: some tenants had errors; failed: nothing written (see errors); skipped: another all-tenant run held the lock; running: not finished.';
