-- migrate:up

-- ============================================================================================
-- Retention: pg_cron never deletes its own history, and the run log would grow forever
-- ============================================================================================
create function kpi.clean_up_run_history() returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  runs_deleted bigint;
  denials_deleted bigint := 0;
  job_details_deleted bigint := 0;
begin
  delete from kpi.kpi_runs where started_at < now() - interval '90 days';
  get diagnostics runs_deleted = row_count;
  -- The audit of refused API calls (a later migration) is kept as long as the run log.
  if to_regclass('kpi.api_denials') is not null then
    execute 'delete from kpi.api_denials where denied_at < now() - interval ''90 days''';
    get diagnostics denials_deleted = row_count;
  end if;
  -- cron.job_run_details exists only in the pg_cron database.
  if to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where start_time < now() - interval ''7 days''';
    get diagnostics job_details_deleted = row_count;
  end if;
  return jsonb_build_object('kpi_runs_deleted', runs_deleted, 'api_denials_deleted', denials_deleted,
                            'cron_job_run_details_deleted', job_details_deleted);
end
$$;
comment on function kpi.clean_up_run_history() is
  'Deletes kpi_runs and api_denials rows older than 90 days and cron.job_run_details rows older than 7 days. Run daily by pg_cron.';

-- ============================================================================================
-- Schedule (UTC: pg_cron 1.4 schedules in GMT). Named jobs are upserted, so re-running this
-- block never duplicates them. Databases without pg_cron (test clones, a server without the
-- extension) migrate all the same and simply have no schedule.
-- ============================================================================================
do $$
begin
  if current_setting('cron.database_name', true) = current_database()
     and exists (select from pg_available_extensions where name = 'pg_cron') then
    create extension if not exists pg_cron;
  end if;
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('kpi-history', '0 4 * * *', 'call kpi.run_scheduled_kpi_fill()');
    perform cron.schedule('kpi-history-cleanup', '30 4 * * *', 'select kpi.clean_up_run_history()');
  else
    raise notice 'pg_cron is not installed in this database: the daily fill is not scheduled';
  end if;
end
$$;

-- migrate:down
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.unschedule(jobid) from cron.job where jobname in ('kpi-history', 'kpi-history-cleanup');
  end if;
end
$$;
drop function kpi.clean_up_run_history();
