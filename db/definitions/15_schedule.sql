-- The schedule (pg_cron, in UTC: pg_cron 1.4 schedules in GMT), where pg_cron is installed in this
-- database. Jobs are found by name: a missing one is created, an existing one gets this schedule
-- and command but keeps its `active` — a job an operator paused stays paused when the definitions
-- are applied again. Where pg_cron lives in another database, db/setup/schedule_in_database.sql
-- creates the same jobs from there (docs/deploy.md).
-- The jobs, one home for both ways of scheduling them: the DO block below, and
-- db/setup/schedule_in_database.sql, which reads this list from the data's database and creates
-- the jobs in pg_cron's.
create or replace function kpi.schedule_plan() returns table (job text, cron text, command text)
language sql immutable
set search_path = ''
as $$
  values
    -- The daily fill, incremental.
    ('kpi-history', '0 4 * * *', 'call kpi.run_scheduled_kpi_fill()'),
    -- The run log, the denial audit, finished alerts, the change feed, pg_cron's own run details.
    ('kpi-history-cleanup', '30 4 * * *', 'select kpi.clean_up_run_history()'),
    -- Source retention per plan, in short batches.
    ('kpi-history-retention', '45 4 * * *', 'call kpi.run_source_cleanup()'),
    -- The weekly reconciliation: every tenant's latest week, reporting what tracking missed.
    ('kpi-history-reconcile', '0 5 * * 0', 'call kpi.run_scheduled_kpi_fill(full => true)')
$$;
comment on function kpi.schedule_plan() is
  'The pg_cron jobs kpi-history needs (name, schedule in GMT, command), created by the definitions where pg_cron is in this database, else by db/setup/schedule_in_database.sql.';

do $$
declare
  wanted record;
  existing bigint;
begin
  if not exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    raise notice 'pg_cron is not installed in this database: nothing is scheduled here';
    return;
  end if;
  for wanted in select * from kpi.schedule_plan() loop
    execute 'select jobid from cron.job where jobname = $1 and database = current_database() and username = current_user'
      into existing using wanted.job;
    if existing is null then
      execute 'select cron.schedule($1, $2, $3)' using wanted.job, wanted.cron, wanted.command;
    else
      execute 'select cron.alter_job($1, schedule => $2, command => $3)' using existing, wanted.cron, wanted.command;
    end if;
  end loop;
exception when insufficient_privilege then
  -- An owner that is not a superuser needs pg_cron's functions granted (docs/deploy.md): the rest
  -- of the definitions stand; the schedule waits for the grant and the next db:migrate.
  raise warning 'kpi-history: nothing scheduled (%): as an administrator run: grant usage on schema cron to %; grant execute on function cron.alter_job(bigint, text, text, text, text, boolean) to %;',
    sqlerrm, current_user, current_user;
end
$$;
