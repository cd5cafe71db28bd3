-- migrate:up

-- ============================================================================================
-- The all-tenant lock is only ever held by a transaction
-- ============================================================================================
-- The daily procedure used to hold a session-level advisory lock between its COMMITs; an error in
-- between (a cancel, a COMMIT refused inside a transaction block) left it held until the session
-- ended — forever, for a pooled connection — and every all-tenant run was skipped. Now every
-- holder takes it for one transaction, which ends on every path: commit, error, cancel, a killed
-- backend.

-- Timestamps as text in UTC, ISO 8601 as PostgreSQL writes them in JSON ("2024-02-01T06:30:00+00:00"),
-- whatever the session's TimeZone: what this project formats itself never depends on it.
create function kpi.utc_iso(ts timestamptz) returns text
language sql stable parallel safe
set search_path = ''
return (pg_catalog.to_json(ts at time zone 'UTC') #>> '{}') || '+00:00';

-- For a skipped run: the session that held the lock.
alter table kpi.kpi_runs add column lock_holder jsonb;
comment on column kpi.kpi_runs.lock_holder is
  'For a skipped run: the session that held the all-tenant lock, {"pid", "since", "run_id", "application_name"}.';

-- Who holds the all-tenant lock (advisory lock 1263552840/1, see kpi.try_lock_all_tenants), or
-- NULL. `since`: the start of the holder's run when it logged one, else of its transaction.
create function kpi.all_tenant_lock_holder() returns jsonb
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

-- A skipped run says who held the lock, in its answer and in the log.
create or replace function kpi.skipped_run(p_kind text, p_from date, p_to date) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  holder jsonb := kpi.all_tenant_lock_holder();
  run_id bigint := kpi.start_kpi_run(p_kind, null, p_from, p_to, 'skipped');
begin
  update kpi.kpi_runs set lock_holder = holder where id = run_id;
  return jsonb_build_object(
    'skipped', true, 'status', 'skipped',
    'message', case when holder is null then 'another all-tenant run is in progress'
                    else format('another all-tenant run is in progress: pid %s since %s%s', holder ->> 'pid',
                                holder ->> 'since', case when holder ->> 'run_id' is not null then format(' (run %s)', holder ->> 'run_id') else '' end) end,
    'holder', holder,
    'run_id', run_id);
end
$$;

-- The daily job. It commits its run as `running` before the work, so that a session that dies
-- mid-way leaves a run that never finished, then takes the lock for the one transaction that
-- does the work. Its first statement ends the CALL's own transaction: inside a transaction block
-- PostgreSQL refuses that COMMIT (2D000, invalid transaction termination) before anything is
-- written or locked.
create or replace procedure kpi.run_scheduled_kpi_fill()
language plpgsql
as $$
declare
  run_id bigint;
  holder jsonb;
begin
  commit;
  run_id := kpi.start_kpi_run('fill_all', null, null, null);
  commit;
  if not kpi.try_lock_all_tenants(false) then
    holder := kpi.all_tenant_lock_holder();
    update kpi.kpi_runs set status = 'skipped', finished_at = clock_timestamp(), lock_holder = holder where id = run_id;
    commit;
    return;
  end if;
  perform kpi.execute_all_tenant_run(run_id, null, null, true);
  commit;
end
$$;
comment on procedure kpi.run_scheduled_kpi_fill() is
  'What pg_cron runs daily: kpi.fill_all_kpi_history() with the run logged as running first. '
  'Call it outside a transaction block (it commits as it goes). Example: call kpi.run_scheduled_kpi_fill();';

drop function kpi.unlock_all_tenants();

-- ============================================================================================
-- A single-tenant fill that fails leaves a run-log row
-- ============================================================================================
-- kpi.fill_kpi_history raises (UNKNOWN_TENANT, NO_AVI, …), which rolls back everything its
-- transaction did, a log row included. This variant answers the failure as data instead, after
-- logging it as a failed run, so that the caller's transaction can commit the log: the API and
-- the server SDK use it and still answer the caller with the same error.
create function kpi.try_fill_kpi_history(tenant_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  failed_sqlstate text;
  failed_message text;
  known kpi.error_codes;
  run_id bigint;
begin
  return kpi.fill_kpi_history(try_fill_kpi_history.tenant_id);
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text;
  select * into known from kpi.error_codes e where e.sqlstate = failed_sqlstate;
  if known.code is null then
    select * into known from kpi.error_codes e where e.code = 'INTERNAL_ERROR';
  end if;
  run_id := kpi.start_kpi_run('fill', try_fill_kpi_history.tenant_id, null, null, 'failed');
  update kpi.kpi_runs r set total_count = 1, ok_count = 0, rows_written = 0,
    errors = jsonb_build_array(jsonb_build_object('tenant_id', try_fill_kpi_history.tenant_id, 'code', known.code,
                                                  'sqlstate', failed_sqlstate, 'message', failed_message))
  where r.id = run_id;
  return jsonb_build_object(
    'ok', false, 'code', known.code, 'http_status', known.http_status, 'sqlstate', failed_sqlstate,
    -- An unexpected error's own message stays in the log; the caller learns where to look.
    'message', case when known.code = 'INTERNAL_ERROR'
                    then format('the fill failed and changed nothing; see run %s in kpi.kpi_runs', run_id)
                    else failed_message end,
    'run_id', run_id);
end
$$;
comment on function kpi.try_fill_kpi_history(uuid) is
  'kpi.fill_kpi_history that logs a failure as a failed run and returns {"ok": false, "code", "http_status", "sqlstate", "message", "run_id"} instead of raising. '
  'Example: select kpi.try_fill_kpi_history(''<tenant uuid>'');';

-- The cron RPC: as before, but a single-tenant failure is logged, then answered with the same
-- status and body as the raise gave (response.status, so that the log row commits).
create or replace function kpi_api.run_cron(body jsonb, secret text) returns json
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  unknown_field text;
  result jsonb;
begin
  if secret is null then
    return kpi_api.deny('/rpc/kpi_history_cron', 'missing cron secret');
  end if;
  if not kpi_api.cron_secret_matches(secret) then
    return kpi_api.deny('/rpc/kpi_history_cron', 'wrong cron secret');
  end if;
  if body is null or jsonb_typeof(body) <> 'object' then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'the body must be a JSON object: {} or {"tenantId": "<uuid>"}');
  end if;
  select k into unknown_field from jsonb_object_keys(body) k where k <> 'tenantId' limit 1;
  if unknown_field is not null then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'the body accepts only "tenantId"');
  end if;
  if body ? 'tenantId' then
    if jsonb_typeof(body -> 'tenantId') <> 'string'
       or (body ->> 'tenantId') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      perform kpi_api.raise_http_error('INVALID_INPUT', 'tenantId must be a UUID string');
    end if;
    result := kpi.try_fill_kpi_history((body ->> 'tenantId')::uuid);
    if result ->> 'ok' = 'false' then
      perform set_config('response.status', result ->> 'http_status', true);
      return json_build_object('code', result ->> 'code', 'message', result ->> 'message', 'details', null, 'hint', null);
    end if;
    return result::json;
  end if;

  result := kpi.fill_all_kpi_history();
  if result ->> 'status' = 'failed' then
    -- The run is logged as failed and changed nothing; the caller learns where to look, not why.
    perform set_config('response.status', '500', true);
    return json_build_object('code', 'INTERNAL_ERROR',
      'message', format('the run failed and changed nothing; see run %s in kpi.kpi_runs', result ->> 'run_id'),
      'details', null, 'hint', null);
  end if;
  return result::json;
end
$$;

-- ============================================================================================
-- Installing a cron secret leaves exactly that secret active
-- ============================================================================================
-- `install` used to add the secret, then retire all but the newest: mid-rotation, with a newer
-- secret active, it retired the very secret it installed. docker compose runs it on every start.
create function kpi.install_cron_secret(secret text) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  added jsonb := kpi.add_cron_secret(secret);
  retired bigint;
begin
  update kpi.cron_secrets s set retired_at = clock_timestamp()
  where s.retired_at is null and s.secret_sha256 <> kpi.cron_secret_hash(s.salt, secret);
  get diagnostics retired = row_count;
  return jsonb_build_object('added', added -> 'added', 'retired', retired,
    'active_secrets', (select count(*) from kpi.cron_secrets where retired_at is null));
end
$$;
comment on function kpi.install_cron_secret(text) is
  'Makes `secret` (32+ characters) the only active cron secret, whatever was active before.';

-- ============================================================================================
-- The denial audit is bounded: one row per endpoint, reason, caller and minute, with a count
-- ============================================================================================
-- Anonymous callers could add a committed row per bad call. Now repeated denials of the same kind
-- in the same minute add to one row's count; with the 90-day retention the table is bounded by
-- the kinds of denial, not by the number of calls.
alter table kpi.api_denials
  add column minute timestamptz generated always as (date_bin('1 minute', denied_at, timestamptz '2000-01-01 00:00:00+00')) stored,
  add column denials integer not null default 1 constraint api_denials_denials_positive check (denials > 0),
  add column last_denied_at timestamptz;
update kpi.api_denials set last_denied_at = denied_at;
-- Earlier rows of one kind and minute become one row with their count.
with groups as (
  select min(id) as keep, count(*) as n, max(denied_at) as last
  from kpi.api_denials group by endpoint, reason, db_role, jwt_sub, minute having count(*) > 1
), merged as (
  update kpi.api_denials d set denials = g.n, last_denied_at = g.last from groups g where d.id = g.keep returning d.id
)
delete from kpi.api_denials d
using kpi.api_denials k
where k.id in (select id from merged) and d.id > k.id
  and (d.endpoint, d.reason, d.db_role, d.minute) = (k.endpoint, k.reason, k.db_role, k.minute)
  and d.jwt_sub is not distinct from k.jwt_sub;
alter table kpi.api_denials alter column last_denied_at set not null,
  alter column last_denied_at set default clock_timestamp(),
  add constraint api_denials_one_row_per_kind_and_minute unique nulls not distinct (endpoint, reason, db_role, jwt_sub, minute);
comment on table kpi.api_denials is
  'Audit of refused API calls (missing or wrong cron secret…): one row per endpoint, reason, role, JWT subject and minute, with the number of denials. Holds no secret.';
comment on column kpi.api_denials.denied_at is 'The first denial of this kind in the minute.';
comment on column kpi.api_denials.denials is 'How many calls of this kind were denied in the minute.';

create or replace function kpi_api.deny(endpoint text, reason text) returns json
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  insert into kpi.api_denials as d (endpoint, reason, db_role, jwt_sub)
  values (endpoint, reason, current_setting('role'), kpi_api.request_claims() ->> 'sub')
  on conflict on constraint api_denials_one_row_per_kind_and_minute
  do update set denials = d.denials + 1, last_denied_at = clock_timestamp();
  perform set_config('response.status', '403', true);
  return json_build_object('code', 'FORBIDDEN', 'message', 'a valid cron secret is required',
                           'details', null, 'hint', 'Send it in the x-cron-secret header.');
end
$$;

-- ============================================================================================
-- Times in UTC wherever the project formats them: the CSV and psql export, health
-- ============================================================================================
drop view api.kpi_history_export;
create view api.kpi_history_export with (security_invoker = true) as
select t.slug as tenant, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
       h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct,
       -- kpi.utc_iso, inlined: the API roles execute nothing in kpi.
       (pg_catalog.to_json(h.updated_at at time zone 'UTC') #>> '{}') || '+00:00' as updated_at
from kpi.kpi_history h
join kpi.tenants t on t.id = h.tenant_id;
comment on view api.kpi_history_export is
  $$The CSV export's columns in order (updated_at as ISO 8601 text in UTC), for the active tenant (row-level security), or for every tenant in psql as the owner. Prefer GET /rpc/kpi_history_csv for a file.
Example: GET /kpi_history_export?order=as_of.desc&limit=10$$;
grant select on api.kpi_history_export to authenticated;

-- Health: also degraded while the all-tenant lock is held longer than any run takes (an hour;
-- a full fill of a million tenants takes under a minute), which means a transaction that took it
-- and never ended. Times in UTC.
create or replace function kpi_api.health() returns json
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  last_run kpi.kpi_runs;
  last_success timestamptz;
  schedule jsonb;
  holder jsonb := kpi.all_tenant_lock_holder();
  reasons text[] := '{}';
begin
  select * into last_run from kpi.kpi_runs
  where kind = 'fill_all' and status <> 'skipped' order by started_at desc, id desc limit 1;
  select max(finished_at) into last_success from kpi.kpi_runs
  where kind = 'fill_all' and status in ('ok', 'partial');

  if last_run.status = 'failed' then
    reasons := reasons || 'the last run failed'::text;
  elsif last_run.status = 'running'
        and not exists (select from pg_catalog.pg_stat_activity a where a.pid = last_run.backend_pid) then
    reasons := reasons || 'the last run never finished'::text;
  end if;
  if last_success is null or last_success < now() - interval '26 hours' then
    reasons := reasons || 'no successful run in the last 26 hours'::text;
  end if;
  if (holder ->> 'since')::timestamptz < now() - interval '1 hour' then
    reasons := reasons || format('the all-tenant lock has been held since %s by pid %s (longer than a run takes)',
                                 holder ->> 'since', holder ->> 'pid');
  end if;

  if to_regclass('cron.job') is not null then
    execute $q$select jsonb_build_object('job', jobname, 'cron', schedule, 'timezone', 'UTC', 'active', active)
               from cron.job where jobname = 'kpi-history'$q$ into schedule;
  end if;

  return json_build_object(
    'status', case when cardinality(reasons) = 0 then 'healthy' else 'degraded' end,
    'timestamp', kpi.utc_iso(now()),
    'reasons', to_json(reasons),
    'last_run', case when last_run.id is null then null else json_build_object(
                  'status', last_run.status, 'trigger', last_run.trigger,
                  'started_at', kpi.utc_iso(last_run.started_at), 'finished_at', kpi.utc_iso(last_run.finished_at)) end,
    'last_success_at', kpi.utc_iso(last_success),
    'schedule', schedule);
end
$$;

notify pgrst, 'reload schema';

-- migrate:down
-- The previous health, export view, denial audit, cron RPC and daily procedure.
create or replace function kpi_api.health() returns json
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  last_run kpi.kpi_runs;
  last_success timestamptz;
  schedule jsonb;
  reasons text[] := '{}';
begin
  select * into last_run from kpi.kpi_runs
  where kind = 'fill_all' and status <> 'skipped' order by started_at desc, id desc limit 1;
  select max(finished_at) into last_success from kpi.kpi_runs
  where kind = 'fill_all' and status in ('ok', 'partial');
  if last_run.status = 'failed' then
    reasons := reasons || 'the last run failed'::text;
  elsif last_run.status = 'running'
        and not exists (select from pg_catalog.pg_stat_activity a where a.pid = last_run.backend_pid) then
    reasons := reasons || 'the last run never finished'::text;
  end if;
  if last_success is null or last_success < now() - interval '26 hours' then
    reasons := reasons || 'no successful run in the last 26 hours'::text;
  end if;
  if to_regclass('cron.job') is not null then
    execute $q$select jsonb_build_object('job', jobname, 'cron', schedule, 'timezone', 'UTC', 'active', active)
               from cron.job where jobname = 'kpi-history'$q$ into schedule;
  end if;
  return json_build_object(
    'status', case when cardinality(reasons) = 0 then 'healthy' else 'degraded' end,
    'timestamp', now(), 'reasons', to_json(reasons),
    'last_run', case when last_run.id is null then null else json_build_object(
                  'status', last_run.status, 'trigger', last_run.trigger,
                  'started_at', last_run.started_at, 'finished_at', last_run.finished_at) end,
    'last_success_at', last_success, 'schedule', schedule);
end
$$;
drop view api.kpi_history_export;
create view api.kpi_history_export with (security_invoker = true) as
select t.slug as tenant, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
       h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct, h.updated_at
from kpi.kpi_history h
join kpi.tenants t on t.id = h.tenant_id;
grant select on api.kpi_history_export to authenticated;
create or replace function kpi_api.deny(endpoint text, reason text) returns json
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  insert into kpi.api_denials (endpoint, reason, db_role, jwt_sub)
  values (endpoint, reason, current_setting('role'), kpi_api.request_claims() ->> 'sub');
  perform set_config('response.status', '403', true);
  return json_build_object('code', 'FORBIDDEN', 'message', 'a valid cron secret is required',
                           'details', null, 'hint', 'Send it in the x-cron-secret header.');
end
$$;
alter table kpi.api_denials drop constraint api_denials_one_row_per_kind_and_minute,
  drop column last_denied_at, drop column denials, drop column minute;
drop function kpi.install_cron_secret(text);
create or replace function kpi_api.run_cron(body jsonb, secret text) returns json
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  unknown_field text;
  result jsonb;
begin
  if secret is null then
    return kpi_api.deny('/rpc/kpi_history_cron', 'missing cron secret');
  end if;
  if not kpi_api.cron_secret_matches(secret) then
    return kpi_api.deny('/rpc/kpi_history_cron', 'wrong cron secret');
  end if;
  if body is null or jsonb_typeof(body) <> 'object' then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'the body must be a JSON object: {} or {"tenantId": "<uuid>"}');
  end if;
  select k into unknown_field from jsonb_object_keys(body) k where k <> 'tenantId' limit 1;
  if unknown_field is not null then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'the body accepts only "tenantId"');
  end if;
  if body ? 'tenantId' then
    if jsonb_typeof(body -> 'tenantId') <> 'string'
       or (body ->> 'tenantId') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      perform kpi_api.raise_http_error('INVALID_INPUT', 'tenantId must be a UUID string');
    end if;
    return kpi.fill_kpi_history((body ->> 'tenantId')::uuid)::json;
  end if;
  result := kpi.fill_all_kpi_history();
  if result ->> 'status' = 'failed' then
    perform set_config('response.status', '500', true);
    return json_build_object('code', 'INTERNAL_ERROR',
      'message', format('the run failed and changed nothing; see run %s in kpi.kpi_runs', result ->> 'run_id'),
      'details', null, 'hint', null);
  end if;
  return result::json;
end
$$;
drop function kpi.try_fill_kpi_history(uuid);
create function kpi.unlock_all_tenants() returns boolean
language sql volatile
set search_path = ''
as $$
  select pg_catalog.pg_advisory_unlock(1263552840, 1)
$$;
create or replace procedure kpi.run_scheduled_kpi_fill()
language plpgsql
as $$
declare
  run_id bigint;
begin
  if not kpi.try_lock_all_tenants(true) then
    perform kpi.skipped_run('fill_all', null, null);
    return;
  end if;
  run_id := kpi.start_kpi_run('fill_all', null, null, null);
  commit;
  perform kpi.execute_all_tenant_run(run_id, null, null, true);
  commit;
  perform kpi.unlock_all_tenants();
end
$$;
create or replace function kpi.skipped_run(p_kind text, p_from date, p_to date) returns jsonb
language sql volatile
set search_path = ''
as $$
  select jsonb_build_object(
    'skipped', true, 'status', 'skipped',
    'message', 'another all-tenant run is in progress',
    'run_id', kpi.start_kpi_run(p_kind, null, p_from, p_to, 'skipped'))
$$;
drop function kpi.all_tenant_lock_holder();
drop function kpi.utc_iso(timestamptz);
alter table kpi.kpi_runs drop column lock_holder;
notify pgrst, 'reload schema';
