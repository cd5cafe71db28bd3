-- migrate:up

-- ============================================================================================
-- Owner-rights functions behind the endpoints (kpi_api: not exposed)
-- ============================================================================================

-- True when `candidate` is one of the active cron secrets.
create function kpi_api.cron_secret_matches(candidate text) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (
    select from kpi.cron_secrets s
    where s.retired_at is null and s.secret_sha256 = kpi.cron_secret_hash(s.salt, candidate))
$$;

-- Refuses the request with FORBIDDEN (403) and still commits an audit row: the answer is set with
-- response.status instead of an exception, which would roll the audit row back.
create function kpi_api.deny(endpoint text, reason text) returns json
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

-- The cron RPC's work, given the request body as is ({} for all tenants, {"tenantId": "<uuid>"}
-- for one) and the secret the caller sent. The secret is checked here, before the body, so that
-- no path reaches the fill without it and a caller without it learns nothing else.
create function kpi_api.run_cron(body jsonb, secret text) returns json
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
    -- The run is logged as failed and changed nothing; the caller learns where to look, not why.
    perform set_config('response.status', '500', true);
    return json_build_object('code', 'INTERNAL_ERROR',
      'message', format('the run failed and changed nothing; see run %s in kpi.kpi_runs', result ->> 'run_id'),
      'details', null, 'hint', null);
  end if;
  return result::json;
end
$$;

-- Liveness of the daily fill, with nothing tenant-specific in it.
create function kpi_api.health() returns json
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
    'timestamp', now(),
    'reasons', to_json(reasons),
    'last_run', case when last_run.id is null then null else json_build_object(
                  'status', last_run.status, 'trigger', last_run.trigger,
                  'started_at', last_run.started_at, 'finished_at', last_run.finished_at) end,
    'last_success_at', last_success,
    'schedule', schedule);
end
$$;

-- One RFC 4180 field: quoted when it holds a quote, a comma or a line break; NULL is empty.
create function kpi_api.csv_field(value text) returns text
language sql immutable parallel safe
return case when value is null then ''
            when value ~ '[",\r\n]' then '"' || replace(value, '"', '""') || '"'
            else value end;

grant execute on function kpi_api.run_cron(jsonb, text) to anon, authenticated;
grant execute on function kpi_api.health() to anon, authenticated;
grant execute on function kpi_api.csv_field(text) to authenticated;

-- ============================================================================================
-- The api schema: what PostgREST serves
-- ============================================================================================
-- Its functions run as the caller (SECURITY INVOKER) and name everything with its schema, so they
-- carry no SET search_path: a function-level SET changes the search path at every call, which
-- makes the connection re-plan its next request (measured: the history read after a CSV export
-- went from 0.22 to 0.34 ms). The definer functions in kpi_api keep theirs: they need it.

create view api.kpi_history with (security_invoker = true) as
select h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
       h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct, h.updated_at
from kpi.kpi_history h;
comment on view api.kpi_history is
  $$Weekly KPIs of the active tenant (the x-tenant header, or the only tenant of the token), one row per week (as_of, a Monday). Needs a JWT with role "authenticated" and "tenant_ids". PostgREST filters apply.
Example: GET /kpi_history?order=as_of.desc&limit=52 (also: as_of=gte.2024-01-01)$$;
comment on column api.kpi_history.as_of is 'Monday of the AVI week this row describes.';
comment on column api.kpi_history.vli_is_fallback is 'True when no VLI audit preceded the end of the week and vli_integrity_pct is the fallback 100.';
comment on column api.kpi_history.hrp_pct is 'Hallucination-risk probability in percent; NULL when the clarity report had none or an invalid one.';
grant select on api.kpi_history to authenticated;

-- The export's columns, in the export's order: the CSV endpoint writes exactly these, and
-- operators can use it with psql: \copy (select * from api.kpi_history_export) to 'kpi.csv' csv header
create view api.kpi_history_export with (security_invoker = true) as
select t.slug as tenant, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
       h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct, h.updated_at
from kpi.kpi_history h
join kpi.tenants t on t.id = h.tenant_id;
comment on view api.kpi_history_export is
  $$The CSV export's columns in order, for the active tenant (row-level security), or for every tenant in psql as the owner. Prefer GET /rpc/kpi_history_csv for a file.
Example: GET /kpi_history_export?order=as_of.desc&limit=10$$;
grant select on api.kpi_history_export to authenticated;

-- PostgREST's media type handler: a function returning this domain answers Accept: text/csv raw.
create domain api."text/csv" as text;
comment on domain api."text/csv" is 'Media type text/csv: functions returning it answer Accept: text/csv with their text as is.';

create function api.kpi_history_csv("limit" integer default 52, "from" date default null, "to" date default null)
returns api."text/csv"
language plpgsql stable
as $$
declare
  tenant_slug text;
  header text;
  body text;
begin
  if "limit" is null or "limit" < 1 or "limit" > 1000 then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'limit must be between 1 and 1000');
  end if;
  if "from" > "to" then
    perform kpi_api.raise_http_error('INVALID_INPUT', '"from" is after "to"');
  end if;
  -- Through row-level security, like the rows: the active tenant or an error.
  select t.slug into tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());

  -- The header and the field order come from the export view, so the two cannot disagree.
  select string_agg(kpi_api.csv_field(a.attname), ',' order by a.attnum) || E'\r\n' into header
  from pg_catalog.pg_attribute a
  where a.attrelid = 'api.kpi_history_export'::regclass and a.attnum > 0 and not a.attisdropped;

  -- The latest `limit` weeks in the range, oldest first.
  select string_agg(line, '' order by as_of) into body
  from (
    select e.as_of,
           (select string_agg(kpi_api.csv_field(f.value), ',') from json_each_text(row_to_json(e)) f) || E'\r\n' as line
    from api.kpi_history_export e
    where ("from" is null or e.as_of >= "from") and ("to" is null or e.as_of <= "to")
    order by e.as_of desc
    limit "limit"
  ) latest;

  perform set_config('response.headers', json_build_array(json_build_object(
    'Content-Disposition',
    format('attachment; filename="kpi-history-%s-%s.csv"', tenant_slug, to_char(now() at time zone 'UTC', 'YYYY-MM-DD'))))::text, true);
  return header || coalesce(body, '');
end
$$;
comment on function api.kpi_history_csv(integer, date, date) is
  $$CSV (RFC 4180: header row, CRLF, quoted where needed) of the active tenant's latest `limit` weeks (1..1000, default 52) with as_of in [from, to], oldest first. Columns: those of api.kpi_history_export. Sets Content-Disposition: attachment; filename="kpi-history-<tenant>-<date>.csv".
Example: GET /rpc/kpi_history_csv?limit=12&from=2024-01-01 with Accept: text/csv$$;
grant execute on function api.kpi_history_csv(integer, date, date) to authenticated;

create function api.kpi_history_cron(json) returns json
language plpgsql volatile
as $$
declare
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  return kpi_api.run_cron($1::jsonb,
    coalesce(kpi_api.request_header('x-cron-secret'), kpi_api.request_claims() ->> 'cron_secret'));
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;
comment on function api.kpi_history_cron(json) is
  $$Runs the KPI fill. Body: {} for all tenants, or {"tenantId": "<uuid>"} for one. Needs the cron secret in the x-cron-secret header (or a "cron_secret" JWT claim).
Result: {"ok": true, "as_of": "YYYY-MM-DD", …} for one tenant; {"ok": n, "total": n, "errors": [{"tenant_id", "code", "message"}], "warnings": [...], "status", "run_id"} for all, or {"skipped": true} while another all-tenant run is going.
Errors (body {"code", "message"}): FORBIDDEN 403 (missing or wrong secret), INVALID_INPUT 400, UNKNOWN_TENANT 404, NO_AVI 422, INTERNAL_ERROR 500.
Example: POST /rpc/kpi_history_cron with header x-cron-secret: $CRON_SECRET and body {}$$;
grant execute on function api.kpi_history_cron(json) to anon, authenticated;

create function api.kpi_history_health() returns json
language sql stable
as $$
  select kpi_api.health()
$$;
comment on function api.kpi_history_health() is
  $$Health of the daily KPI fill; no token needed, nothing tenant-specific. {"status": "healthy" | "degraded", "timestamp", "reasons": [...], "last_run": {"status", "trigger", "started_at", "finished_at"}, "last_success_at", "schedule": {"job", "cron", "timezone", "active"}}. Degraded when the last run failed or never finished, or no run succeeded in the last 26 hours.
Example: GET /rpc/kpi_history_health$$;
grant execute on function api.kpi_history_health() to anon, authenticated;

-- PostgREST reloads its schema cache on this notification.
notify pgrst, 'reload schema';

-- migrate:down
drop function api.kpi_history_health();
drop function api.kpi_history_cron(json);
drop function api.kpi_history_csv(integer, date, date);
drop domain api."text/csv";
drop view api.kpi_history_export;
drop view api.kpi_history;
drop function kpi_api.csv_field(text);
drop function kpi_api.health();
drop function kpi_api.run_cron(jsonb, text);
drop function kpi_api.deny(text, text);
drop function kpi_api.cron_secret_matches(text);
notify pgrst, 'reload schema';
