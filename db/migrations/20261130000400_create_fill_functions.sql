-- migrate:up

-- ============================================================================================
-- Semantics of one history row, as small functions the planner inlines
-- ============================================================================================

-- A week runs Monday 00:00 UTC to the next Monday 00:00 UTC, whatever the session's TimeZone.
create function kpi.week_end(week_start date) returns timestamptz
language sql immutable parallel safe
return (week_start + 7)::timestamp at time zone 'UTC';

-- HRP in percent from clarity's metrics->'hrp': a JSON number from 0 to 1, else NULL.
-- (Nested CASE: the cast must not be reached for a string, and AND does not promise an order.)
create function kpi.hrp_pct(hrp jsonb) returns numeric
language sql immutable parallel safe
return case when jsonb_typeof(hrp) = 'number'
            then case when hrp::numeric between 0 and 1 then round(hrp::numeric * 100, 2) end
       end;

-- A present HRP that is not usable (a string, a boolean, out of range…). Absent or JSON null is
-- merely missing and warns nobody.
create function kpi.hrp_is_invalid(hrp jsonb) returns boolean
language sql immutable parallel safe
return coalesce(jsonb_typeof(hrp), 'null') <> 'null' and kpi.hrp_pct(hrp) is null;

-- ============================================================================================
-- The set-based write shared by every fill: one statement for any number of tenants
-- ============================================================================================
-- p_latest_only: each tenant's latest AVI week (the daily fill); otherwise every AVI week between
-- p_from and p_to (a backfill). VLI and HRP are taken as of the end of each week: no look-ahead.
-- Every source read is an index-only probe. Rows whose values did not change are filtered out
-- before the upsert (which would otherwise lock each of them), so a re-run writes nothing and
-- updated_at keeps meaning "last changed"; the ON CONFLICT … WHERE guards concurrent writers.
-- Returns {"ok": tenants with a row, "total": tenants considered, "weeks", "rows_written",
-- "as_of" (the latest week), "no_avi": [{tenant_id, slug}] (latest mode), "warnings": [...]}.
--
-- Custom plans: the NULL tenant and the p_latest_only branch fold away, so one tenant is an
-- index probe and all tenants one pass. Memoize is off: no probe repeats, so its cache only costs.
-- JIT is off: the work is index probes, and compiling the big plan cost more than it saved.
create function kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean)
returns jsonb
language plpgsql volatile
set search_path = ''
set plan_cache_mode = force_custom_plan
set enable_memoize = off
set jit = off
as $$
declare
  stats jsonb;
begin
  with avi as (
    -- Every tenant with its latest report, or NULLs when it has none (those are reported).
    select t.id as tenant_id, t.slug, latest.week_start, latest.aiv_pct, latest.ati_pct, latest.crs_pct,
           latest.elasticity_usd_per_point
    from kpi.tenants t
    left join lateral (
      select r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
      from kpi.avi_reports r
      where r.tenant_id = t.id
      order by r.week_start desc
      limit 1
    ) latest on true
    where p_latest_only and (p_tenant_id is null or t.id = p_tenant_id)
    union all
    select r.tenant_id, null, r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
    from kpi.avi_reports r
    where not p_latest_only
      and (p_tenant_id is null or r.tenant_id = p_tenant_id)
      and r.week_start >= coalesce(p_from, '-infinity'::date)
      and r.week_start <= coalesce(p_to, 'infinity'::date)
  ),
  computed as materialized (
    select a.tenant_id,
           a.week_start as as_of,
           a.aiv_pct, a.ati_pct, a.crs_pct, a.elasticity_usd_per_point,
           coalesce(vli.integrity_pct, 100) as vli_integrity_pct,
           vli.integrity_pct is null as vli_is_fallback,
           kpi.hrp_pct(clarity.hrp) as hrp_pct,
           kpi.hrp_is_invalid(clarity.hrp) as hrp_is_invalid,
           clarity.hrp,
           clarity.measured_at
    from avi a
    left join lateral (
      select v.integrity_pct
      from kpi.vli_audits v
      where v.tenant_id = a.tenant_id and v.audited_at < kpi.week_end(a.week_start)
      order by v.audited_at desc, v.id desc
      limit 1
    ) vli on true
    left join lateral (
      select c.hrp, c.measured_at
      from kpi.clarity_reports c
      where c.tenant_id = a.tenant_id and c.measured_at < kpi.week_end(a.week_start)
      order by c.measured_at desc, c.id desc
      limit 1
    ) clarity on true
    where a.week_start is not null
  ),
  written as (
    insert into kpi.kpi_history as h (
      tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point,
      vli_integrity_pct, vli_is_fallback, hrp_pct)
    select c.tenant_id, c.as_of, c.aiv_pct, c.ati_pct, c.crs_pct, c.elasticity_usd_per_point,
           c.vli_integrity_pct, c.vli_is_fallback, c.hrp_pct
    from computed c
    -- The row already there, by an index probe (a lateral LIMIT 1 keeps the planner from hashing
    -- the whole history instead, which it prefers once the table is large).
    left join lateral (
      select o.aiv_pct, o.ati_pct, o.crs_pct, o.elasticity_usd_per_point, o.vli_integrity_pct, o.vli_is_fallback, o.hrp_pct
      from kpi.kpi_history o
      where o.tenant_id = c.tenant_id and o.as_of = c.as_of
      limit 1
    ) existing on true
    where existing is null
       or (existing.aiv_pct, existing.ati_pct, existing.crs_pct, existing.elasticity_usd_per_point,
           existing.vli_integrity_pct, existing.vli_is_fallback, existing.hrp_pct)
          is distinct from
          (c.aiv_pct, c.ati_pct, c.crs_pct, c.elasticity_usd_per_point, c.vli_integrity_pct, c.vli_is_fallback, c.hrp_pct)
    -- One order for every writer, so concurrent runs lock shared rows in the same order.
    order by c.tenant_id, c.as_of
    on conflict (tenant_id, as_of) do update set
      aiv_pct = excluded.aiv_pct,
      ati_pct = excluded.ati_pct,
      crs_pct = excluded.crs_pct,
      elasticity_usd_per_point = excluded.elasticity_usd_per_point,
      vli_integrity_pct = excluded.vli_integrity_pct,
      vli_is_fallback = excluded.vli_is_fallback,
      hrp_pct = excluded.hrp_pct,
      updated_at = now()
    where (h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
           h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct)
          is distinct from
          (excluded.aiv_pct, excluded.ati_pct, excluded.crs_pct, excluded.elasticity_usd_per_point,
           excluded.vli_integrity_pct, excluded.vli_is_fallback, excluded.hrp_pct)
    returning 1
  )
  select jsonb_build_object(
           'ok', case when p_latest_only then (select count(*) from computed)
                      else (select count(distinct tenant_id) from computed) end,
           'total', case when p_latest_only then (select count(*) from avi)
                         else (select count(distinct tenant_id) from computed) end,
           'weeks', (select count(*) from computed),
           'rows_written', (select count(*) from written),
           'as_of', (select max(as_of) from computed),
           'no_avi', coalesce((
             select jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'slug', slug) order by tenant_id)
             from avi where week_start is null), '[]'::jsonb),
           'warnings', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', tenant_id,
                      'as_of', as_of,
                      'code', 'INVALID_CLARITY',
                      'message', format('clarity report measured at %s has hrp %s; expected a number from 0 to 1, so hrp_pct is NULL',
                                        to_char(measured_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), hrp::text))
                    order by tenant_id, as_of)
             from computed where hrp_is_invalid), '[]'::jsonb))
  into stats;
  return stats;
end
$$;

-- ============================================================================================
-- Run log helpers
-- ============================================================================================

-- Who started this run: a PostgREST request, pg_cron, or any other SQL session.
create function kpi.current_trigger() returns text
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

create function kpi.start_kpi_run(p_kind text, p_tenant_id uuid, p_from date, p_to date, p_status text default 'running')
returns bigint
language sql volatile
set search_path = ''
as $$
  insert into kpi.kpi_runs (kind, tenant_id, range_from, range_to, trigger, application_name, status, finished_at)
  values (p_kind, p_tenant_id, p_from, p_to, kpi.current_trigger(), nullif(current_setting('application_name'), ''),
          p_status, case when p_status <> 'running' then clock_timestamp() end)
  returning id
$$;

create function kpi.finish_kpi_run(p_run_id bigint, p_status text, p_result jsonb)
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

-- All-tenant runs exclude each other with this advisory lock (two int4 keys: 'KPIH', 1). The
-- daily job holds it for its session, a SQL call for its transaction; the two conflict.
create function kpi.try_lock_all_tenants(for_session boolean) returns boolean
language sql volatile
set search_path = ''
as $$
  select case when for_session then pg_catalog.pg_try_advisory_lock(1263552840, 1)
              else pg_catalog.pg_try_advisory_xact_lock(1263552840, 1) end
$$;

create function kpi.unlock_all_tenants() returns boolean
language sql volatile
set search_path = ''
as $$
  select pg_catalog.pg_advisory_unlock(1263552840, 1)
$$;

-- Runs an all-tenant write for a run already in the log and closes the run. An error does not
-- escape: the subtransaction undoes every row the run wrote, and the run is logged as failed, so
-- the log outlives the failure. (A cancel, query_canceled, is caught too; a killed session is not,
-- and its run stays `running`, which the health check reports.)
create function kpi.execute_all_tenant_run(p_run_id bigint, p_from date, p_to date, p_latest_only boolean)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  result jsonb;
  failure_state text;
  failure_message text;
begin
  begin
    result := kpi.write_kpi_history(null, p_from, p_to, p_latest_only);
    -- Tenants without any AVI report (found by the same pass) are the errors.
    result := result - 'no_avi' || jsonb_build_object('errors', coalesce((
      select jsonb_agg(jsonb_build_object(
               'tenant_id', missing ->> 'tenant_id',
               'code', 'NO_AVI',
               'message', format('tenant %s has no AVI report', missing ->> 'slug')))
      from jsonb_array_elements(result -> 'no_avi') missing), '[]'::jsonb));
  exception when others or query_canceled then
    get stacked diagnostics failure_state = returned_sqlstate, failure_message = message_text;
    result := jsonb_build_object(
      'ok', 0, 'total', null, 'rows_written', 0, 'warnings', '[]'::jsonb,
      'errors', jsonb_build_array(jsonb_build_object(
        'code', 'INTERNAL_ERROR', 'sqlstate', failure_state, 'message', failure_message)));
    perform kpi.finish_kpi_run(p_run_id, 'failed', result);
    return result || jsonb_build_object('status', 'failed', 'run_id', p_run_id);
  end;
  result := result - 'as_of' || jsonb_build_object(
    'status', case when result -> 'errors' = '[]'::jsonb then 'ok' else 'partial' end,
    'run_id', p_run_id);
  perform kpi.finish_kpi_run(p_run_id, result ->> 'status', result);
  return result;
end
$$;

-- A second all-tenant run while one holds the lock: logged and answered at once.
create function kpi.skipped_run(p_kind text, p_from date, p_to date) returns jsonb
language sql volatile
set search_path = ''
as $$
  select jsonb_build_object(
    'skipped', true, 'status', 'skipped',
    'message', 'another all-tenant run is in progress',
    'run_id', kpi.start_kpi_run(p_kind, null, p_from, p_to, 'skipped'))
$$;

-- Checks a tenant id given to a single-tenant function: given, a tenant, with an AVI report.
create function kpi.assert_tenant_can_fill(p_tenant_id uuid) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if p_tenant_id is null then
    perform kpi.raise_error('INVALID_INPUT', 'tenant_id is required');
  end if;
  if not exists (select from kpi.tenants where id = p_tenant_id) then
    perform kpi.raise_error('UNKNOWN_TENANT', format('no tenant has id %s', p_tenant_id));
  end if;
  if not exists (select from kpi.avi_reports r where r.tenant_id = p_tenant_id) then
    perform kpi.raise_error('NO_AVI', format('tenant %s has no AVI report', p_tenant_id),
                            'Insert a row into kpi.avi_reports for this tenant first.');
  end if;
end
$$;

-- ============================================================================================
-- The fills
-- ============================================================================================

create function kpi.fill_kpi_history(tenant_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  run_id bigint;
  result jsonb;
begin
  perform kpi.assert_tenant_can_fill(tenant_id);
  run_id := kpi.start_kpi_run('fill', tenant_id, null, null);
  result := kpi.write_kpi_history(tenant_id, null, null, true);
  perform kpi.finish_kpi_run(run_id, 'ok', result || '{"total": 1, "errors": []}');
  return jsonb_build_object('ok', true, 'as_of', result -> 'as_of', 'rows_written', result -> 'rows_written',
                            'warnings', result -> 'warnings', 'run_id', run_id);
end
$$;
comment on function kpi.fill_kpi_history(uuid) is
  'Writes the tenant''s latest AVI week into kpi_history. Returns {"ok": true, "as_of": "YYYY-MM-DD", …}. '
  'Raises UNKNOWN_TENANT (KH404) or NO_AVI (KH422). Example: select kpi.fill_kpi_history(''<tenant uuid>'');';

create function kpi.fill_all_kpi_history() returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if not kpi.try_lock_all_tenants(false) then
    return kpi.skipped_run('fill_all', null, null);
  end if;
  return kpi.execute_all_tenant_run(kpi.start_kpi_run('fill_all', null, null, null), null, null, true);
end
$$;
comment on function kpi.fill_all_kpi_history() is
  'Writes every tenant''s latest AVI week into kpi_history in one set-based statement. Returns '
  '{"ok": n, "total": n, "rows_written": n, "errors": [{"tenant_id", "code": "NO_AVI", "message"}], '
  '"warnings": [...], "status", "run_id"}, or {"skipped": true, …} while another all-tenant run holds '
  'the lock. Example: select kpi.fill_all_kpi_history();';

create function kpi.backfill_kpi_history(tenant_id uuid default null, "from" date default null, "to" date default null)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  run_id bigint;
  result jsonb;
begin
  if "from" > "to" then
    perform kpi.raise_error('INVALID_INPUT', format('"from" (%s) is after "to" (%s)', "from", "to"));
  end if;
  if tenant_id is null then
    if not kpi.try_lock_all_tenants(false) then
      return kpi.skipped_run('backfill', "from", "to");
    end if;
    return kpi.execute_all_tenant_run(kpi.start_kpi_run('backfill', null, "from", "to"), "from", "to", false);
  end if;

  perform kpi.assert_tenant_can_fill(tenant_id);
  run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
  result := kpi.write_kpi_history(tenant_id, "from", "to", false) - 'as_of' - 'no_avi'
            || jsonb_build_object('total', 1, 'errors', '[]'::jsonb, 'status', 'ok', 'run_id', run_id);
  perform kpi.finish_kpi_run(run_id, 'ok', result);
  return result;
end
$$;
comment on function kpi.backfill_kpi_history(uuid, date, date) is
  'Writes one kpi_history row per AVI week in [from, to] (NULL = unbounded) for one tenant or all '
  '(tenant_id NULL), with VLI and HRP as of the end of each week. Idempotent. Returns '
  '{"ok", "total", "weeks", "rows_written", "errors", "warnings", "status", "run_id"}. '
  'Example: select kpi.backfill_kpi_history("from" => ''2024-01-01'');';

-- The daily job. A procedure, so that the run is committed as `running` before the work starts:
-- if the session dies mid-way the log still shows a run that never finished.
create procedure kpi.run_scheduled_kpi_fill()
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
comment on procedure kpi.run_scheduled_kpi_fill() is
  'What pg_cron runs daily: kpi.fill_all_kpi_history() with the run logged as running first. '
  'Example: call kpi.run_scheduled_kpi_fill();';

-- migrate:down
drop procedure kpi.run_scheduled_kpi_fill();
drop function kpi.backfill_kpi_history(uuid, date, date);
drop function kpi.fill_all_kpi_history();
drop function kpi.fill_kpi_history(uuid);
drop function kpi.assert_tenant_can_fill(uuid);
drop function kpi.skipped_run(text, date, date);
drop function kpi.execute_all_tenant_run(bigint, date, date, boolean);
drop function kpi.unlock_all_tenants();
drop function kpi.try_lock_all_tenants(boolean);
drop function kpi.finish_kpi_run(bigint, text, jsonb);
drop function kpi.start_kpi_run(text, uuid, date, date, text);
drop function kpi.current_trigger();
drop function kpi.write_kpi_history(uuid, date, date, boolean);
drop function kpi.hrp_is_invalid(jsonb);
drop function kpi.hrp_pct(jsonb);
drop function kpi.week_end(date);
