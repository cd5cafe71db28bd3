-- The run log (kpi.kpi_runs): who started a run, its row while it runs and when it ends, and the
-- lock that keeps all-tenant runs from overlapping.

-- Who started this run: a PostgREST request, pg_cron, or any other SQL session.
create or replace function kpi.current_trigger() returns text
language sql stable
set search_path = ''
as $$
  select case
    when nullif(current_setting('request.path', true), '') is not null then 'api'
    when current_setting('application_name') = 'pg_cron'
      -- pg_stat_get_activity(pid) reads this backend's entry only, not every session's.
      or (select a.backend_type from pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a) = 'pg_cron'
      then 'pg_cron'
    else 'sql'
  end
$$;

create or replace function kpi.start_kpi_run(p_kind text, p_tenant_id uuid, p_from date, p_to date, p_status text default 'running')
returns bigint
language sql volatile
set search_path = ''
as $$
  insert into kpi.kpi_runs (kind, tenant_id, range_from, range_to, trigger, application_name, status, finished_at)
  values (p_kind, p_tenant_id, p_from, p_to, kpi.current_trigger(), nullif(current_setting('application_name'), ''),
          p_status, case when p_status <> 'running' then clock_timestamp() end)
  returning id
$$;

create or replace function kpi.finish_kpi_run(p_run_id bigint, p_status text, p_result jsonb)
returns void
language sql volatile
set search_path = ''
as $$
  update kpi.kpi_runs set
    status = p_status,
    finished_at = clock_timestamp(),
    ok_count = (p_result ->> 'ok')::int,
    total_count = (p_result ->> 'total')::int,
    rows_written = (p_result ->> 'rows_written')::int,
    errors = coalesce(p_result -> 'errors', '[]'),
    warnings = coalesce(p_result -> 'warnings', '[]')
  where id = p_run_id
$$;

-- All-tenant runs exclude each other with this advisory lock (two int4 keys: 'KPIH', 1), always
-- held by one transaction: it ends on every path (commit, error, cancel, a killed backend), so no
-- error can leave it held for the rest of a pooled session.
create or replace function kpi.try_lock_all_tenants() returns boolean
language sql volatile
set search_path = ''
as $$
  select pg_catalog.pg_try_advisory_xact_lock(1263552840, 1)
$$;

-- Who holds the all-tenant lock, or NULL. `since`: the start of the holder's run when it logged
-- one, else of its transaction.
create or replace function kpi.all_tenant_lock_holder() returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
           'pid', l.pid,
           'since', kpi.utc_iso(coalesce(r.started_at, a.xact_start)),
           'run_id', r.id,
           'application_name', nullif(a.application_name, ''))
  from pg_catalog.pg_locks l
  left join pg_catalog.pg_stat_activity a on a.pid = l.pid
  left join lateral (
    select k.id, k.started_at from kpi.kpi_runs k
    where k.backend_pid = l.pid and k.status = 'running' and k.tenant_id is null
    order by k.id desc limit 1) r on true
  where l.locktype = 'advisory' and l.classid = 1263552840 and l.objid = 1 and l.objsubid = 2 and l.granted
  limit 1
$$;

-- A second all-tenant run while one holds the lock: logged and answered at once, naming the
-- holder in its answer and in the log. `run_id`: a run already logged as running (the scheduled
-- procedure logs first), else a new row.
create or replace function kpi.skipped_run(p_kind text, p_from date, p_to date, p_run_id bigint default null) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  holder jsonb := kpi.all_tenant_lock_holder();
  run_id bigint := coalesce(p_run_id, kpi.start_kpi_run(p_kind, null, p_from, p_to, 'skipped'));
begin
  update kpi.kpi_runs set status = 'skipped', finished_at = coalesce(finished_at, clock_timestamp()), lock_holder = holder
  where id = run_id;
  return jsonb_build_object(
    'skipped', true, 'status', 'skipped',
    'message', case when holder is null then 'another all-tenant run is in progress'
                    else format('another all-tenant run is in progress: pid %s since %s%s', holder ->> 'pid',
                                holder ->> 'since', case when holder ->> 'run_id' is not null then format(' (run %s)', holder ->> 'run_id') else '' end) end,
    'holder', holder,
    'run_id', run_id);
end
$$;

-- How a procedure's run ended, said where its caller looks: a NOTICE for psql (the run id, its
-- status and counts, where the details are), and for a failed run an error raised after the run
-- log's row is committed — so pg_cron records the job as failed, with this message, and psql
-- exits non-zero — instead of a CALL that succeeds whatever happened.
create or replace function kpi.report_run_outcome(p_run_id bigint) returns void
language plpgsql stable
set search_path = ''
as $$
declare
  run kpi.kpi_runs;
  error_count integer;
begin
  select * into run from kpi.kpi_runs r where r.id = p_run_id;
  error_count := jsonb_array_length(run.errors);
  if run.status = 'failed' then
    perform kpi.raise_error('INTERNAL_ERROR',
      format('%s run %s failed (SQLSTATE %s): %s', run.kind, run.id, coalesce(run.errors -> 0 ->> 'sqlstate', '?'),
             coalesce(run.errors -> 0 ->> 'message', 'no message')),
      case when run.kind = 'backfill' and run.details ->> 'next_tenant' is not null
           then format('The batches before the failure are kept; go on with resume_after => %L. Details: select errors, details from kpi.kpi_runs where id = %s;',
                       run.details ->> 'next_tenant', run.id)
           else format('Details: select errors, details from kpi.kpi_runs where id = %s;', run.id) end);
  end if;
  raise notice '% run %: %', run.kind, run.id,
    case run.status
      when 'skipped' then format('skipped, another all-tenant run holds the lock (%s)', coalesce(run.lock_holder::text, 'gone since'))
      else format('%s, %s of %s tenants, %s rows written%s', run.status, coalesce(run.ok_count, 0), coalesce(run.total_count, 0),
                  coalesce(run.rows_written, 0),
                  case when error_count > 0
                       then format(', %s tenant errors (select errors from kpi.kpi_runs where id = %s)', error_count, run.id)
                       else '' end)
    end;
end
$$;
