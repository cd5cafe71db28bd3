-- Health: every reason an operator must act on, from the run log, the schedule and the alert
-- outbox. The whole report for the owner in psql and for callers with the cron secret; anonymous
-- HTTP callers get the status and its freshness only (nothing about tenants, runs or locks).

-- The scheduled jobs of this database, as health reads them (none without pg_cron here).
create or replace function kpi.scheduled_jobs() returns table (job text, cron text, active boolean, last_status text, last_message text, last_start timestamptz)
language plpgsql stable
set search_path = ''
as $$
begin
  if to_regclass('cron.job') is null then
    return;
  end if;
  return query execute $q$
    select j.jobname::text, j.schedule::text, j.active, d.status::text, left(d.return_message, 300), d.start_time
    from cron.job j
    left join lateral (select r.status, r.return_message, r.start_time from cron.job_run_details r
                       where r.jobid = j.jobid and r.status in ('succeeded', 'failed')
                       order by r.start_time desc limit 1) d on true
    where j.jobname like 'kpi-history%' and j.database = current_database()
    order by j.jobname$q$;
end
$$;

-- Tenants whose fill failed in each of the last `runs` finished all-tenant fills (NO_AVI every day,
-- or an error contained to them): {"count", "by_code", "tenants": [first 10 slugs], "run_id"}.
create or replace function kpi.tenants_failing(runs integer default 3) returns jsonb
language sql stable
set search_path = ''
as $$
  with recent as (
    select r.id, r.errors from kpi.kpi_runs r
    where r.kind = 'fill_all' and r.status in ('ok', 'partial')
    order by r.id desc limit runs
  ),
  failing as (
    select e ->> 'tenant_id' as tenant_id, min(e ->> 'code') as code
    from recent r cross join lateral jsonb_array_elements(r.errors) e
    where e ? 'tenant_id'
    group by e ->> 'tenant_id'
    having count(distinct r.id) = runs and (select count(*) from recent) = runs
  )
  select case when count(*) = 0 then null else jsonb_build_object(
    'count', count(*),
    'by_code', (select jsonb_object_agg(c.code, c.n) from (select f.code, count(*) as n from failing f group by f.code) c),
    'tenants', (select jsonb_agg(coalesce(t.slug, f.tenant_id) order by coalesce(t.slug, f.tenant_id))
                from (select * from failing order by tenant_id limit 10) f left join kpi.tenants t on t.id::text = f.tenant_id),
    'run_id', (select max(id) from recent)) end
  from failing
$$;

-- The whole report. Degraded, with a reason for each, when: the last all-tenant fill failed or
-- never finished; none succeeded in 26 hours; the all-tenant lock is held longer than any run
-- takes; the last full run corrected rows the change tracking missed; tenants failed in each of
-- the last three fills; the last backfill or source cleanup failed or never finished; a scheduled
-- job is paused, missing or failed its last run; alerts are dead or waiting over an hour.
create or replace function kpi.health_report() returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  last_run kpi.kpi_runs;
  last_full kpi.kpi_runs;
  last_success timestamptz;
  holder jsonb := kpi.all_tenant_lock_holder();
  alerts jsonb;
  failing jsonb := kpi.tenants_failing(3);
  schedule jsonb;
  other record;
  job record;
  reasons text[] := '{}';
begin
  select * into last_run from kpi.kpi_runs
  where kind = 'fill_all' and status <> 'skipped' order by started_at desc, id desc limit 1;
  select max(finished_at) into last_success from kpi.kpi_runs
  where kind = 'fill_all' and status in ('ok', 'partial');
  select * into last_full from kpi.kpi_runs
  where kind = 'fill_all' and mode = 'full' and status in ('ok', 'partial') order by started_at desc, id desc limit 1;

  if last_run.status = 'failed' then
    reasons := reasons || format('the last run failed (run %s: %s)', last_run.id, left(last_run.errors -> 0 ->> 'message', 200));
  elsif last_run.status = 'running'
        and not exists (select from pg_catalog.pg_stat_activity a where a.pid = last_run.backend_pid) then
    reasons := reasons || format('the last run never finished (run %s: its session is gone)', last_run.id);
  end if;
  if last_success is null or last_success < now() - interval '26 hours' then
    reasons := reasons || 'no successful run in the last 26 hours'::text;
  end if;
  if (holder ->> 'since')::timestamptz < now() - interval '1 hour' then
    reasons := reasons || format('the all-tenant lock has been held since %s by pid %s (longer than a run takes)',
                                 holder ->> 'since', holder ->> 'pid');
  end if;
  if (last_full.details ->> 'corrected')::integer > 0 then
    reasons := reasons || format('the last full run corrected %s rows the change tracking missed (run %s)',
                                 last_full.details ->> 'corrected', last_full.id);
  end if;
  if failing is not null then
    reasons := reasons || format('%s tenant(s) failed in each of the last 3 runs (%s), e.g. %s: see the errors of run %s',
                                 failing ->> 'count',
                                 (select string_agg(format('%s %s', k, v), ', ' order by k) from jsonb_each_text(failing -> 'by_code') x (k, v)),
                                 (select string_agg(t, ', ') from jsonb_array_elements_text(failing -> 'tenants') t),
                                 failing ->> 'run_id');
  end if;
  -- The other runs operators start or schedule: the latest of each kind.
  for other in
    select distinct on (r.kind) r.kind, r.id, r.status, r.backend_pid, r.errors
    from kpi.kpi_runs r where r.kind in ('backfill', 'cleanup', 'rescore') and r.tenant_id is null and r.status <> 'skipped'
    order by r.kind, r.id desc
  loop
    if other.status = 'failed' then
      reasons := reasons || format('the last %s failed (run %s: %s)', case other.kind when 'cleanup' then 'source cleanup' when 'rescore' then 're-scoring' else other.kind end,
                                   other.id, left(other.errors -> 0 ->> 'message', 200));
    elsif other.status = 'running' and not exists (select from pg_catalog.pg_stat_activity a where a.pid = other.backend_pid) then
      reasons := reasons || format('the last %s never finished (run %s: its session is gone)',
                                   case other.kind when 'cleanup' then 'source cleanup' when 'rescore' then 're-scoring' else other.kind end, other.id);
    end if;
  end loop;

  -- The schedule, where pg_cron runs in this database.
  if to_regclass('cron.job') is not null then
    select coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
             'job', j.job, 'cron', j.cron, 'timezone', 'UTC', 'active', j.active,
             'last_status', j.last_status, 'last_start', kpi.utc_iso(j.last_start)))), '[]')
    into schedule from kpi.scheduled_jobs() j;
    if not exists (select from kpi.scheduled_jobs() j where j.job = 'kpi-history') then
      reasons := reasons || 'the daily job kpi-history is not scheduled (npm run db:migrate schedules it)'::text;
    end if;
    for job in select * from kpi.scheduled_jobs() j loop
      if not job.active then
        reasons := reasons || format('the pg_cron job %s is paused (cron.job.active = false)', job.job);
      elsif job.last_status = 'failed' then
        reasons := reasons || format('the pg_cron job %s failed at %s: %s', job.job, kpi.utc_iso(job.last_start), job.last_message);
      end if;
    end loop;
  end if;

  -- Alerts: how many wait, how many were given up on (the partial indexes keep these cheap).
  select jsonb_build_object(
           'pending', (select count(*) from kpi.alerts a where a.status = 'pending'),
           'overdue', (select count(*) from kpi.alerts a where a.status = 'pending' and a.next_attempt_at < now() - interval '1 hour'),
           'dead', (select count(*) from kpi.alerts a where a.status = 'dead'))
  into alerts;
  if (alerts ->> 'dead')::integer > 0 then
    reasons := reasons || format('%s alerts are dead (not delivered within the retry window, or refused): see kpi.alerts',
                                 alerts ->> 'dead');
  end if;
  if (alerts ->> 'overdue')::integer > 0 then
    reasons := reasons || format('%s alerts have waited over an hour: is a worker running (npm run worker)?', alerts ->> 'overdue');
  end if;

  return jsonb_build_object(
    'status', case when cardinality(reasons) = 0 then 'healthy' else 'degraded' end,
    'timestamp', kpi.utc_iso(now()),
    'reasons', to_jsonb(reasons),
    'last_run', case when last_run.id is null then null else jsonb_build_object(
                  'run_id', last_run.id, 'status', last_run.status, 'trigger', last_run.trigger,
                  'started_at', kpi.utc_iso(last_run.started_at), 'finished_at', kpi.utc_iso(last_run.finished_at)) end,
    'last_success_at', kpi.utc_iso(last_success),
    'failing_tenants', failing,
    'schedule', schedule,
    'alerts', alerts);
end
$$;
comment on function kpi.health_report() is
  'Health of kpi-history with every reason to act: {"status": "healthy" | "degraded", "reasons": [...], "last_run", "last_success_at", "failing_tenants", "schedule", "alerts"}. Example: select jsonb_pretty(kpi.health_report());';

-- Over HTTP (api.kpi_history_health): the whole report with the cron secret, else the status and
-- its freshness only. Security definer: the API roles read nothing in kpi themselves.
create or replace function kpi_api.health(details boolean) returns json
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  report jsonb := kpi.health_report();
begin
  if details then
    return report::json;
  end if;
  return json_build_object('status', report -> 'status', 'timestamp', report -> 'timestamp',
                           'last_success_at', report -> 'last_success_at');
end
$$;
