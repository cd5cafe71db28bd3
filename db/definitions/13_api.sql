-- The api schema: what PostgREST serves (PGRST_DB_SCHEMAS=api), views and functions only, and the
-- owner-rights helpers in kpi_api behind them. Its functions run as the caller (SECURITY INVOKER)
-- and name everything with its schema, so they carry no SET search_path: a function-level SET
-- changes the search path at every call, which makes the connection re-plan its next request
-- (measured: the history read after a CSV export went from 0.22 to 0.34 ms). The definer
-- functions in kpi_api keep theirs: they need it. Who may call what: 14_access.sql.

-- ============================================================================================
-- Views
-- ============================================================================================

create or replace view api.kpi_history with (security_invoker = true) as
select h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
       h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct, h.updated_at
from kpi.kpi_history h;

comment on view api.kpi_history is
  $$Weekly KPIs of the active tenant (the x-tenant header, or the only tenant of the token), one row per week (as_of, a Monday). Needs a JWT with role "authenticated" and "tenant_ids". PostgREST filters apply.
Example: GET /kpi_history?order=as_of.desc&limit=52 (also: as_of=gte.2024-01-01)$$;

comment on column api.kpi_history.as_of is 'Monday of the AVI week this row describes.';

comment on column api.kpi_history.vli_is_fallback is 'True when no VLI audit preceded the end of the week and vli_integrity_pct is the fallback 100.';

comment on column api.kpi_history.hrp_pct is 'Hallucination-risk probability in percent; NULL when the clarity report had none or an invalid one.';

create or replace view api.kpi_history_export with (security_invoker = true) as
select t.slug as tenant, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
       h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct,
       -- kpi.utc_iso, inlined: the API roles execute nothing in kpi.
       (pg_catalog.to_json(h.updated_at at time zone 'UTC') #>> '{}') || '+00:00' as updated_at
from kpi.kpi_history h
join kpi.tenants t on t.id = h.tenant_id;

comment on view api.kpi_history_export is
  $$The CSV export's columns in order (updated_at as ISO 8601 text in UTC), for the active tenant (row-level security), or for every tenant in psql as the owner. Prefer GET /rpc/kpi_history_csv for a file.
Example: GET /kpi_history_export?order=as_of.desc&limit=10$$;

-- The active tenant, for naming things after it in a browser: a cross-origin app cannot read
-- Content-Disposition (PostgREST's CORS exposes a fixed list of headers without it, Cors.hs).
create or replace view api.active_tenant with (security_invoker = true) as
select t.id, t.slug, t.name from kpi.tenants t;

comment on view api.active_tenant is
  $$The tenant this request acts for (the x-tenant header, or the only tenant of the token): one row, or none when the token grants an id that is no tenant. Needs a JWT with role "authenticated" and "tenant_ids".
Example: GET /active_tenant?select=slug,name$$;

create or replace view api.kpi_history_monthly with (security_invoker = true) as
select t.slug as tenant, r.period_start, r.period_end, r.weeks, r.first_week, r.last_week, r.complete,
       r.aiv_pct_avg, r.aiv_pct_min, r.aiv_pct_max, r.aiv_pct_last,
       r.ati_pct_avg, r.ati_pct_min, r.ati_pct_max, r.ati_pct_last,
       r.crs_pct_avg, r.crs_pct_min, r.crs_pct_max, r.crs_pct_last,
       r.elasticity_usd_per_point_avg, r.elasticity_usd_per_point_min, r.elasticity_usd_per_point_max, r.elasticity_usd_per_point_last,
       r.vli_integrity_pct_avg, r.vli_integrity_pct_min, r.vli_integrity_pct_max, r.vli_integrity_pct_last,
       r.hrp_pct_avg, r.hrp_pct_min, r.hrp_pct_max, r.hrp_pct_last,
       r.vli_fallback_weeks, r.hrp_weeks
from kpi.kpi_history_rollups r
join kpi.tenants t on t.id = r.tenant_id
where r.period = 'month';

create or replace view api.kpi_history_quarterly with (security_invoker = true) as
select t.slug as tenant, r.period_start, r.period_end, r.weeks, r.first_week, r.last_week, r.complete,
       r.aiv_pct_avg, r.aiv_pct_min, r.aiv_pct_max, r.aiv_pct_last,
       r.ati_pct_avg, r.ati_pct_min, r.ati_pct_max, r.ati_pct_last,
       r.crs_pct_avg, r.crs_pct_min, r.crs_pct_max, r.crs_pct_last,
       r.elasticity_usd_per_point_avg, r.elasticity_usd_per_point_min, r.elasticity_usd_per_point_max, r.elasticity_usd_per_point_last,
       r.vli_integrity_pct_avg, r.vli_integrity_pct_min, r.vli_integrity_pct_max, r.vli_integrity_pct_last,
       r.hrp_pct_avg, r.hrp_pct_min, r.hrp_pct_max, r.hrp_pct_last,
       r.vli_fallback_weeks, r.hrp_weeks
from kpi.kpi_history_rollups r
join kpi.tenants t on t.id = r.tenant_id
where r.period = 'quarter';

comment on view api.kpi_history_monthly is
  $$Monthly rollups of the active tenant's weekly KPIs (the x-tenant header, or the only tenant of the token), one row per month with history. A week counts in the month of its Thursday (as_of + 3, ISO 8601). As the owner in psql: every tenant. PostgREST filters apply.
Example: GET /kpi_history_monthly?period_start=gte.2026-01-01&order=period_start.desc$$;

comment on view api.kpi_history_quarterly is
  $$Quarterly rollups of the active tenant's weekly KPIs (the x-tenant header, or the only tenant of the token), one row per quarter with history. A week counts in the quarter of its Thursday (as_of + 3, ISO 8601). As the owner in psql: every tenant. PostgREST filters apply.
Example: GET /kpi_history_quarterly?order=period_start.desc&limit=4$$;

-- The same column comments on both views. "Never NULL." is part of the contract: the generated
-- SDK types (scripts/gen-types.ts) read it, since PostgreSQL cannot declare a view column NOT NULL.
do $$
declare
  view_name text;
  kpi text;
  column_comments constant text[][] := array[
    ['tenant', 'The tenant''s slug. Never NULL.'],
    ['period_start', 'First day of the period. Never NULL.'],
    ['period_end', 'Last day of the period. Never NULL.'],
    ['weeks', 'Weekly rows in the period (weeks whose Thursday falls in it). Never NULL.'],
    ['first_week', 'as_of (Monday) of the earliest week in the period. Never NULL.'],
    ['last_week', 'as_of (Monday) of the latest week in the period; the *_last columns are its values. Never NULL.'],
    ['complete', 'True when the period has ended (UTC): no more weeks will join it. Never NULL.'],
    ['vli_fallback_weeks', 'Weeks whose vli_integrity_pct is the fallback 100 (no audit yet); they count in the VLI figures. Never NULL.'],
    ['hrp_weeks', 'Weeks with an HRP; the hrp_pct figures are over these weeks only. Never NULL.']];
  i integer;
  never_null text;
begin
  foreach view_name in array array['api.kpi_history_monthly', 'api.kpi_history_quarterly'] loop
    for i in 1 .. array_length(column_comments, 1) loop
      execute format('comment on column %s.%I is %L', view_name, column_comments[i][1], column_comments[i][2]);
    end loop;
    foreach kpi in array array['aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'] loop
      -- Every week has each KPI except the HRP, which may be missing from every week of a period.
      never_null := case when kpi = 'hrp_pct' then '' else ' Never NULL.' end;
      execute format('comment on column %s.%I is %L', view_name, kpi || '_avg',
                     format('Mean of the weeks'' %s, rounded to 2 decimals (NULLs ignored).%s', kpi, never_null));
      execute format('comment on column %s.%I is %L', view_name, kpi || '_min', format('Lowest %s of the weeks.%s', kpi, never_null));
      execute format('comment on column %s.%I is %L', view_name, kpi || '_max', format('Highest %s of the weeks.%s', kpi, never_null));
      execute format('comment on column %s.%I is %L', view_name, kpi || '_last',
                     case when kpi = 'hrp_pct' then 'hrp_pct of the latest week (last_week); NULL when that week has none, even if earlier weeks do.'
                          else format('%s of the latest week (last_week). Never NULL.', kpi) end);
    end loop;
  end loop;
end
$$;

create or replace view api.kpi_anomalies with (security_invoker = true) as
select a.as_of, a.kpi, a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction,
       a.threshold, a.detected_at
from kpi.kpi_anomalies a;

comment on view api.kpi_anomalies is
  $$Anomalies of the active tenant's weekly KPIs (the x-tenant header, or the only tenant of the token): one row per week and KPI whose value is far from the previous 12 weeks (|modified z-score| above the threshold, and a minimum difference). PostgREST filters apply.
Example: GET /kpi_anomalies?as_of=gte.2026-01-01&order=as_of.desc,kpi$$;

comment on column api.kpi_anomalies.kpi is 'One of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, hrp_pct, or a custom KPI''s key.';

comment on column api.kpi_anomalies.value is 'The week''s value of the KPI.';

comment on column api.kpi_anomalies.baseline_median is 'Median of the KPI over the previous 12 weeks (those with a value).';

comment on column api.kpi_anomalies.baseline_mad is 'Median absolute deviation from that median; 0 when at least half the weeks had the median itself.';

comment on column api.kpi_anomalies.baseline_weeks is 'How many of the previous 12 weeks had a value (8 to 12).';

comment on column api.kpi_anomalies.score is 'Modified z-score 0.6745 (value - median) / MAD (Iglewicz & Hoaglin); with MAD 0, (value - median) / (1.253314 mean absolute deviation); "Infinity" or "-Infinity" when the baseline has no spread at all.';

comment on column api.kpi_anomalies.direction is 'up or down: above or below the median.';

comment on column api.kpi_anomalies.threshold is 'The |score| it exceeded (the rule in force).';

create or replace view api.custom_kpis with (security_invoker = true) as
select d.key, d.label, d.unit, d.source, d.path, d.field, d.aggregate, d.combine, d.left_kpi, d.right_kpi,
       d.valid_min, d.valid_max, d.active, d.created_at, d.updated_at
from kpi.custom_kpis d;

comment on view api.custom_kpis is
  $$The active tenant's custom KPI definitions. Members read them; admins (token claim tenant_roles: {"<tenant id>": "kpi_admin"}) insert, update and delete through this view. A definition is a source with an aggregate, or a combine of two KPIs; invalid input is INVALID_INPUT 400 naming the field, a member's write FORBIDDEN 403.
Example: POST /custom_kpis {"key": "p95_latency_ms", "label": "p95 latency", "unit": "ms", "source": "clarity", "path": ["latency", "p95_ms"], "aggregate": "avg"}$$;

comment on column api.custom_kpis.key is 'Unique per tenant: 1 to 40 lower-case letters, digits or _, starting with a letter; not a built-in KPI name. Cannot be changed. Never NULL.';

comment on column api.custom_kpis.label is 'Never NULL.';

comment on column api.custom_kpis.source is 'clarity (a number at path inside the clarity report''s metrics), avi or vli (their column field); NULL for a combine.';

comment on column api.custom_kpis.path is 'For source clarity: the keys leading to the number, e.g. ["latency", "p95_ms"].';

comment on column api.custom_kpis.field is 'For source avi: aiv_pct, ati_pct, crs_pct or elasticity_usd_per_point; for vli: integrity_pct.';

comment on column api.custom_kpis.aggregate is 'Over the week (Monday 00:00 UTC to the next Monday): latest, avg, min, max, sum or count.';

comment on column api.custom_kpis.combine is 'difference (left_kpi - right_kpi) or ratio (left_kpi / right_kpi, NULL when dividing by zero) of two weekly KPIs: built-in, or custom with a source.';

comment on column api.custom_kpis.valid_min is 'A value below is stored as NULL, with an INVALID_CUSTOM warning in the run.';

comment on column api.custom_kpis.valid_max is 'A value above is stored as NULL, with an INVALID_CUSTOM warning in the run.';

comment on column api.custom_kpis.active is 'Only active KPIs are computed (at most 20 per tenant by default); deactivating one removes its values. Never NULL.';

comment on column api.custom_kpis.created_at is 'Never NULL.';

comment on column api.custom_kpis.updated_at is 'Never NULL.';

create or replace view api.custom_kpi_values with (security_invoker = true) as
select v.as_of, v.key, v.value from kpi.custom_kpi_values v;

comment on view api.custom_kpi_values is
  $$The active tenant's custom KPI values, one row per week (as_of, a Monday) and key. PostgREST filters apply.
Example: GET /custom_kpi_values?as_of=gte.2026-01-01&key=in.(p95_latency_ms,aiv_minus_ati)&order=as_of,key$$;

comment on column api.custom_kpi_values.as_of is 'Monday of the week. Never NULL.';

comment on column api.custom_kpi_values.key is 'The custom KPI (api.custom_kpis.key). Never NULL.';

comment on column api.custom_kpi_values.value is 'NULL when the week had no data for it, or the value was outside its valid range.';

create or replace view api.custom_kpi_rollups with (security_invoker = true) as
select r.period, r.period_start, r.key, r.weeks, r.avg, r.min, r.max, r.last
from kpi.custom_kpi_rollups r;

comment on view api.custom_kpi_rollups is
  $$Monthly and quarterly rollups of the active tenant's custom KPIs: one row per period (month or quarter), period_start and key. A week counts in the month and quarter of its Thursday.
Example: GET /custom_kpi_rollups?period=eq.month&period_start=gte.2026-01-01&order=period_start,key$$;

comment on column api.custom_kpi_rollups.period is 'month or quarter. Never NULL.';

comment on column api.custom_kpi_rollups.period_start is 'First day of the month or quarter. Never NULL.';

comment on column api.custom_kpi_rollups.key is 'Never NULL.';

comment on column api.custom_kpi_rollups.weeks is 'Weeks of the period with a row (a value or NULL). Never NULL.';

comment on column api.custom_kpi_rollups.avg is 'Mean of the weeks'' values (NULLs ignored), to 6 decimal places.';

comment on column api.custom_kpi_rollups.last is 'The latest week''s value.';

-- ============================================================================================
-- Functions
-- ============================================================================================

-- The CSV export. Its parameters are text, parsed by kpi_api.date_argument and integer_argument, so
-- that bad input is our INVALID_INPUT naming the argument; `weeks`, `period` and `custom` are
-- not among PostgREST's reserved query keys (select, columns, on_conflict, and keys ending in
-- order, limit, offset, and, or), so a GET passes them as arguments.
create or replace function api.kpi_history_csv(weeks text default null, "from" text default null, "to" text default null,
                                               period text default null, custom text default null)
returns api."text/csv"
language plpgsql stable
as $$
declare
  period_name text := coalesce(lower(btrim(period)), 'week');
  with_custom text := coalesce(lower(btrim(custom)), 'false');
  tenant uuid;
  custom_keys text[] := '{}';
  week_count integer;
  from_date date;
  to_date date;
  tenant_slug text;
  rows_json json[];
  body text;
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  if period_name not in ('week', 'month', 'quarter') then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('period must be week, month or quarter, got %s', left(period, 40)));
  end if;
  if period_name <> 'week' and weeks is not null then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'weeks applies to period=week; choose months and quarters with from and to');
  end if;
  if with_custom not in ('true', 'false') then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('custom must be true or false, got %s', left(custom, 40)));
  end if;
  if with_custom = 'true' and period_name <> 'week' then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'custom applies to period=week; read monthly and quarterly custom KPIs from /custom_kpi_rollups');
  end if;
  week_count := coalesce(kpi_api.integer_argument('weeks', weeks, 1, 1000), 52);
  from_date := kpi_api.date_argument('from', "from");
  to_date := kpi_api.date_argument('to', "to");
  if from_date > to_date then
    perform kpi_api.raise_http_error('INVALID_INPUT', '"from" is after "to"');
  end if;
  -- Through row-level security, like the rows: the active tenant or an error. A token may grant
  -- an id that is no tenant (deleted, or never created): no file is named after nobody.
  select t.id, t.slug into tenant, tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());
  if tenant_slug is null then
    perform kpi_api.raise_http_error('UNKNOWN_TENANT', 'the active tenant does not exist');
  end if;

  -- The rows as JSON, oldest first; a row is in range when its first day (as_of, period_start) is
  -- in [from, to]. Then one statement turns them into lines, whatever their view.
  if period_name = 'week' then
    -- The latest `weeks` weeks in the range.
    select array_agg(row_to_json(latest) order by latest.as_of) into rows_json
    from (
      select e.* from api.kpi_history_export e
      where (from_date is null or e.as_of >= from_date) and (to_date is null or e.as_of <= to_date)
      order by e.as_of desc
      limit week_count
    ) latest;
  elsif period_name = 'month' then
    select array_agg(row_to_json(m) order by m.period_start) into rows_json
    from api.kpi_history_monthly m
    where (from_date is null or m.period_start >= from_date) and (to_date is null or m.period_start <= to_date);
  else
    select array_agg(row_to_json(q) order by q.period_start) into rows_json
    from api.kpi_history_quarterly q
    where (from_date is null or q.period_start >= from_date) and (to_date is null or q.period_start <= to_date);
  end if;
  if with_custom = 'true' then
    -- One column per active custom KPI, by key, after the built-in ones.
    select coalesce(array_agg(d.key order by d.key), '{}') into custom_keys
    from kpi.custom_kpis d where d.tenant_id = tenant and d.active;
  end if;
  select string_agg((select string_agg(kpi_api.csv_field(f.value), ',') from json_each_text(r.line) f)
                    || coalesce((select string_agg(',' || coalesce(w.kpi_values ->> k.key, ''), '' order by k.n)
                                 from unnest(custom_keys) with ordinality k(key, n)
                                 left join kpi.custom_kpi_weeks w
                                   on w.tenant_id = tenant and w.as_of = (r.line ->> 'as_of')::date), '')
                    || E'\r\n', '' order by r.n) into body
  from unnest(rows_json) with ordinality r(line, n);

  -- The weekly file keeps the name it always had, so links and scripts that expect it still work.
  perform set_config('response.headers', json_build_array(json_build_object(
    'Content-Disposition',
    format('attachment; filename="kpi-history-%s-%s%s.csv"', tenant_slug,
           case when period_name = 'week' then '' else period_name || '-' end,
           to_char(now() at time zone 'UTC', 'YYYY-MM-DD'))))::text, true);
  return rtrim(kpi_api.csv_header(case period_name when 'week' then 'api.kpi_history_export'::regclass
                                                   when 'month' then 'api.kpi_history_monthly'::regclass
                                                   else 'api.kpi_history_quarterly'::regclass end), E'\r\n')
         || coalesce((select string_agg(',' || kpi_api.csv_field('custom.' || k), '') from unnest(custom_keys) k), '')
         || E'\r\n' || coalesce(body, '');
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;

comment on function api.kpi_history_csv(text, text, text, text, text) is
  $$CSV (RFC 4180: header row, CRLF, quoted where needed) of the active tenant's history, oldest first. period=week (default): the latest `weeks` weeks (1..1000, default 52) with as_of in [from, to], columns of api.kpi_history_export, file kpi-history-<tenant>-<date>.csv; custom=true adds a column custom.<key> per active custom KPI (by key). period=month|quarter: every period with period_start in [from, to] (YYYY-MM-DD), columns of api.kpi_history_monthly|quarterly, file kpi-history-<tenant>-<period>-<date>.csv. Sets Content-Disposition: attachment.
Errors: INVALID_INPUT 400 (weeks, from, to, period, custom; weeks or custom with a month or quarter), FORBIDDEN 403, TENANT_REQUIRED 400, UNKNOWN_TENANT 404.
Example: GET /rpc/kpi_history_csv?weeks=12&custom=true with Accept: text/csv$$;

-- The cron RPC's work, given the request body as is ({} for all tenants, {"tenantId": "<uuid>"}
-- for one) and the secret the caller sent. The secret is checked here, before the body, so that
-- no path reaches the fill without it and a caller without it learns nothing else. A
-- single-tenant failure is logged, then answered with its status and body (response.status, so
-- that the log row commits).
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
       or kpi.uuid_or_null(body ->> 'tenantId') is null then
      perform kpi_api.raise_http_error('INVALID_INPUT', 'tenantId must be a UUID string');
    end if;
    result := kpi.try_fill_kpi_history(body ->> 'tenantId');
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

-- The all-tenant fill takes longer than the API roles' statement_timeout allows (14_access.sql):
-- PostgREST hoists this function's own statement_timeout into the request's transaction.
create or replace function api.kpi_history_cron(json) returns json
language plpgsql volatile
set statement_timeout = '30min'
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

-- Health answers our body even when something inside fails (a broken catalog, a missing table).
-- The whole report in psql and for callers with the cron secret (x-cron-secret); anyone else
-- learns the status and its freshness only.
create or replace function api.kpi_history_health() returns json
language plpgsql stable
as $$
declare
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
  secret text := kpi_api.request_header('x-cron-secret');
begin
  return kpi_api.health(details => coalesce(current_setting('request.method', true), '') = ''
                                   or (secret is not null and kpi_api.cron_secret_matches(secret)));
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;

comment on function api.kpi_history_health() is
  $$Health of kpi-history; no token needed. Anyone: {"status": "healthy" | "degraded", "timestamp", "last_success_at"}. With the cron secret in the x-cron-secret header (and in psql), the whole report: "reasons" (each thing to act on), "last_run", "failing_tenants", "schedule", "alerts" — see kpi.health_report().
Example: GET /rpc/kpi_history_health$$;

-- `after` is not among PostgREST's reserved query keys (select, columns, on_conflict, and keys
-- ending in order, limit, offset, and, or), so a GET passes it as the argument.
create or replace function api.kpi_history_changes("after" text default null) returns json
language plpgsql stable
as $$
declare
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  return kpi_api.changes_page("after", 1000);
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;

comment on function api.kpi_history_changes(text) is
  $$The active tenant's changes to its history, anomalies and custom KPI values after the cursor `after` (omit it to start from the oldest change kept): {"changes": [{"cursor", "entity": "history"|"anomaly"|"custom_values", "op": "insert"|"update"|"delete", "as_of", "kpi", "data", "changed_at"}], "next": "<cursor>", "has_more"}. Up to 1,000 per page; each change once, none skipped: only settled transactions are returned. History rows carry a revision (the highest is the latest).
Errors: INVALID_INPUT 400 (a malformed cursor), CURSOR_EXPIRED 410 (the changes after it were pruned: re-read the state), FORBIDDEN 403, TENANT_REQUIRED 400.
Example: GET /rpc/kpi_history_changes?after=1234.56$$;
