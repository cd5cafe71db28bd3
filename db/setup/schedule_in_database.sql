-- Creates kpi-history's pg_cron jobs where pg_cron lives in another database than the data — the
-- usual case on managed PostgreSQL, where pg_cron is in `postgres`. Run it in pg_cron's database as
-- the role the jobs should run as (the owner of the data):
--
--   psql "$CRON_DATABASE_URL" -v data_database=kpi_history -f db/setup/schedule_in_database.sql
--
-- The jobs are read from the data's database (kpi.schedule_plan(), db/definitions/15_schedule.sql)
-- and created with cron.schedule_in_database (pg_cron 1.4+), each named "<job>@<database>" so that
-- several databases of one server keep their own. A job found by name gets the current schedule,
-- command and database and keeps whether it is active (a paused job stays paused). Safe to re-run.
\set ON_ERROR_STOP on
\if :{?data_database}
\else
do $$ begin raise exception 'usage: psql "$CRON_DATABASE_URL" -v data_database=<the database of kpi-history> -f db/setup/schedule_in_database.sql'; end $$;
\endif

select current_database() as cron_database \gset
\connect :data_database
select json_agg(json_build_object('job', p.job || '@' || current_database(), 'cron', p.cron, 'command', p.command))::text as jobs
from kpi.schedule_plan() p \gset
\connect :cron_database

select set_config('kpi_history.jobs', :'jobs', false), set_config('kpi_history.database', :'data_database', false) \gset
do $$
declare
  wanted record;
  existing bigint;
begin
  for wanted in select * from json_to_recordset(current_setting('kpi_history.jobs')::json) as j (job text, cron text, command text) loop
    select j.jobid into existing from cron.job j where j.jobname = wanted.job and j.username = current_user;
    if existing is null then
      perform cron.schedule_in_database(wanted.job, wanted.cron, wanted.command, current_setting('kpi_history.database'));
    else
      perform cron.alter_job(existing, schedule => wanted.cron, command => wanted.command, database => current_setting('kpi_history.database'));
    end if;
  end loop;
end
$$;

select jobname, schedule, command, database, active from cron.job
where jobname like '%@' || :'data_database' and username = current_user order by jobname;
