\restrict kpi_history

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: api; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA api;


--
-- Name: SCHEMA api; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA api IS 'The HTTP API of kpi-history, served by PostgREST. Views and functions only.';


--
-- Name: pg_cron; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA public;


--
-- Name: EXTENSION pg_cron; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION pg_cron IS 'Job scheduler for PostgreSQL';


--
-- Name: kpi; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA kpi;


--
-- Name: SCHEMA kpi; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA kpi IS 'Private: KPI source tables, history, run log and the aggregation. Not exposed over HTTP.';


--
-- Name: kpi_api; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA kpi_api;


--
-- Name: SCHEMA kpi_api; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA kpi_api IS 'Private: request context and the owner-rights functions behind the api schema. Not exposed over HTTP.';


--
-- Name: text/csv; Type: DOMAIN; Schema: api; Owner: -
--

CREATE DOMAIN api."text/csv" AS text;


--
-- Name: DOMAIN "text/csv"; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON DOMAIN api."text/csv" IS 'Media type text/csv: functions returning it answer Accept: text/csv with their text as is.';


--
-- Name: history_change; Type: TYPE; Schema: kpi; Owner: -
--

CREATE TYPE kpi.history_change AS (
	as_of date,
	aiv_pct numeric(5,2),
	ati_pct numeric(5,2),
	crs_pct numeric(5,2),
	elasticity_usd_per_point numeric(10,2),
	vli_integrity_pct numeric(5,2),
	vli_is_fallback boolean,
	hrp_pct numeric(5,2),
	updated_at timestamp with time zone,
	revision integer
);


--
-- Name: TYPE history_change; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TYPE kpi.history_change IS 'A kpi_history row as the change feed keeps it (kpi.kpi_changes.history_row).';


--
-- Name: kpi_history_changes(text); Type: FUNCTION; Schema: api; Owner: -
--

CREATE FUNCTION api.kpi_history_changes(after text DEFAULT NULL::text) RETURNS json
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: FUNCTION kpi_history_changes(after text); Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON FUNCTION api.kpi_history_changes(after text) IS 'The active tenant''s changes to its history, anomalies and custom KPI values after the cursor `after` (omit it to start from the oldest change kept): {"changes": [{"cursor", "entity": "history"|"anomaly"|"custom_values", "op": "insert"|"update"|"delete", "as_of", "kpi", "data", "changed_at"}], "next": "<cursor>", "has_more"}. Up to 1,000 per page; each change once, none skipped: only settled transactions are returned. History rows carry a revision (the highest is the latest).
Errors: INVALID_INPUT 400 (a malformed cursor), CURSOR_EXPIRED 410 (the changes after it were pruned: re-read the state), FORBIDDEN 403, TENANT_REQUIRED 400.
Example: GET /rpc/kpi_history_changes?after=1234.56';


--
-- Name: kpi_history_cron(json); Type: FUNCTION; Schema: api; Owner: -
--

CREATE FUNCTION api.kpi_history_cron(json) RETURNS json
    LANGUAGE plpgsql
    SET statement_timeout TO '30min'
    AS $_$
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
$_$;


--
-- Name: FUNCTION kpi_history_cron(json); Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON FUNCTION api.kpi_history_cron(json) IS 'Runs the KPI fill. Body: {} for all tenants, or {"tenantId": "<uuid>"} for one. Needs the cron secret in the x-cron-secret header (or a "cron_secret" JWT claim).
Result: {"ok": true, "as_of": "YYYY-MM-DD", …} for one tenant; {"ok": n, "total": n, "errors": [{"tenant_id", "code", "message"}], "warnings": [...], "status", "run_id"} for all, or {"skipped": true} while another all-tenant run is going.
Errors (body {"code", "message"}): FORBIDDEN 403 (missing or wrong secret), INVALID_INPUT 400, UNKNOWN_TENANT 404, NO_AVI 422, INTERNAL_ERROR 500.
Example: POST /rpc/kpi_history_cron with header x-cron-secret: $CRON_SECRET and body {}';


--
-- Name: kpi_history_csv(text, text, text, text, text); Type: FUNCTION; Schema: api; Owner: -
--

CREATE FUNCTION api.kpi_history_csv(weeks text DEFAULT NULL::text, "from" text DEFAULT NULL::text, "to" text DEFAULT NULL::text, period text DEFAULT NULL::text, custom text DEFAULT NULL::text) RETURNS api."text/csv"
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: FUNCTION kpi_history_csv(weeks text, "from" text, "to" text, period text, custom text); Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON FUNCTION api.kpi_history_csv(weeks text, "from" text, "to" text, period text, custom text) IS 'CSV (RFC 4180: header row, CRLF, quoted where needed) of the active tenant''s history, oldest first. period=week (default): the latest `weeks` weeks (1..1000, default 52) with as_of in [from, to], columns of api.kpi_history_export, file kpi-history-<tenant>-<date>.csv; custom=true adds a column custom.<key> per active custom KPI (by key). period=month|quarter: every period with period_start in [from, to] (YYYY-MM-DD), columns of api.kpi_history_monthly|quarterly, file kpi-history-<tenant>-<period>-<date>.csv. Sets Content-Disposition: attachment.
Errors: INVALID_INPUT 400 (weeks, from, to, period, custom; weeks or custom with a month or quarter), FORBIDDEN 403, TENANT_REQUIRED 400, UNKNOWN_TENANT 404.
Example: GET /rpc/kpi_history_csv?weeks=12&custom=true with Accept: text/csv';


--
-- Name: kpi_history_health(); Type: FUNCTION; Schema: api; Owner: -
--

CREATE FUNCTION api.kpi_history_health() RETURNS json
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: FUNCTION kpi_history_health(); Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON FUNCTION api.kpi_history_health() IS 'Health of kpi-history; no token needed. Anyone: {"status": "healthy" | "degraded", "timestamp", "last_success_at"}. With the cron secret in the x-cron-secret header (and in psql), the whole report: "reasons" (each thing to act on), "last_run", "failing_tenants", "schedule", "alerts" — see kpi.health_report().
Example: GET /rpc/kpi_history_health';


--
-- Name: add_cron_secret(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.add_cron_secret(secret text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  added boolean := false;
  new_salt bytea := uuid_send(gen_random_uuid());
begin
  if secret is null or length(secret) < 32 then
    perform kpi.raise_error('INVALID_INPUT',
      format('CRON_SECRET must be at least 32 characters (it has %s)', coalesce(length(secret), 0)),
      'Generate one with: openssl rand -base64 48');
  end if;
  if not exists (select from kpi.cron_secrets s
                 where s.retired_at is null and s.secret_sha256 = kpi.cron_secret_hash(s.salt, secret)) then
    insert into kpi.cron_secrets (salt, secret_sha256) values (new_salt, kpi.cron_secret_hash(new_salt, secret));
    added := true;
  end if;
  return jsonb_build_object('added', added,
    'active_secrets', (select count(*) from kpi.cron_secrets where retired_at is null));
end
$$;


--
-- Name: FUNCTION add_cron_secret(secret text); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.add_cron_secret(secret text) IS 'Adds an active cron secret (32+ characters), keeping the others: the first step of a rotation.';


--
-- Name: add_fill_stats(jsonb, jsonb); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.add_fill_stats(a jsonb, b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    RETURN jsonb_strip_nulls(jsonb_build_object('weeks', (COALESCE(((a ->> 'weeks'::text))::bigint, (0)::bigint) + COALESCE(((b ->> 'weeks'::text))::bigint, (0)::bigint)), 'rows_written', (COALESCE(((a ->> 'rows_written'::text))::bigint, (0)::bigint) + COALESCE(((b ->> 'rows_written'::text))::bigint, (0)::bigint)), 'custom_weeks_written', CASE WHEN ((a ? 'custom_weeks_written'::text) OR (b ? 'custom_weeks_written'::text)) THEN (COALESCE(((a ->> 'custom_weeks_written'::text))::bigint, (0)::bigint) + COALESCE(((b ->> 'custom_weeks_written'::text))::bigint, (0)::bigint)) ELSE NULL::bigint END, 'custom_values', CASE WHEN ((a ? 'custom_values'::text) OR (b ? 'custom_values'::text)) THEN (COALESCE(((a ->> 'custom_values'::text))::bigint, (0)::bigint) + COALESCE(((b ->> 'custom_values'::text))::bigint, (0)::bigint)) ELSE NULL::bigint END, 'written', (SELECT COALESCE(jsonb_agg(x.e), '[]'::jsonb) AS "coalesce" FROM (SELECT e.value AS e FROM jsonb_array_elements((COALESCE((add_fill_stats.a -> 'written'::text), '[]'::jsonb) || COALESCE((add_fill_stats.b -> 'written'::text), '[]'::jsonb))) e(value) LIMIT 100) x), 'warnings', (COALESCE((a -> 'warnings'::text), '[]'::jsonb) || COALESCE((b -> 'warnings'::text), '[]'::jsonb)), 'failed', (COALESCE((a -> 'failed'::text), '[]'::jsonb) || COALESCE((b -> 'failed'::text), '[]'::jsonb))));


--
-- Name: add_run_results(jsonb, jsonb); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.add_run_results(a jsonb, b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    RETURN jsonb_strip_nulls(((SELECT jsonb_object_agg(k.k, (SELECT sum(x.v) AS sum FROM (VALUES (((add_run_results.a ->> k.k))::numeric), (((add_run_results.b ->> k.k))::numeric)) x(v))) AS jsonb_object_agg FROM unnest(ARRAY['ok'::text, 'total'::text, 'tenants_considered'::text, 'weeks'::text, 'weeks_kept'::text, 'rows_written'::text, 'anomalies'::text, 'custom_weeks_written'::text, 'custom_values'::text, 'custom_kpis_derived'::text]) k(k)) || jsonb_build_object('as_of', GREATEST((a ->> 'as_of'::text), (b ->> 'as_of'::text)), 'errors', (COALESCE((a -> 'errors'::text), '[]'::jsonb) || COALESCE((b -> 'errors'::text), '[]'::jsonb)), 'warnings', (COALESCE((a -> 'warnings'::text), '[]'::jsonb) || COALESCE((b -> 'warnings'::text), '[]'::jsonb)))));


--
-- Name: all_tenant_lock_holder(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.all_tenant_lock_holder() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
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


--
-- Name: anomalies_changed(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.anomalies_changed() RETURNS integer
    LANGUAGE sql STABLE
    SET search_path TO ''
    RETURN (COALESCE(NULLIF(current_setting('kpi.anomalies_changed'::text, true), ''::text), '0'::text))::integer;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: kpi_anomalies; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.kpi_anomalies (
    tenant_id uuid NOT NULL,
    as_of date NOT NULL,
    kpi text NOT NULL,
    value numeric NOT NULL,
    baseline_median numeric NOT NULL,
    baseline_mad numeric NOT NULL,
    baseline_weeks integer NOT NULL,
    score double precision NOT NULL,
    direction text NOT NULL,
    threshold numeric NOT NULL,
    detected_at timestamp with time zone DEFAULT now() NOT NULL,
    run_id bigint,
    CONSTRAINT kpi_anomalies_direction CHECK ((direction = ANY (ARRAY['up'::text, 'down'::text])))
);

ALTER TABLE ONLY kpi.kpi_anomalies FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE kpi_anomalies; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.kpi_anomalies IS 'KPI values far from the tenant''s previous 12 weeks, one row per tenant, week and KPI. Always equal to a from-scratch detection over kpi_history (kpi.rescore_anomalies), kept so by triggers on kpi_history and on the rules.';


--
-- Name: anomaly_change_data(kpi.kpi_anomalies); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.anomaly_change_data(a kpi.kpi_anomalies) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('as_of', (a).as_of, 'kpi', (a).kpi, 'value', (a).value, 'baseline_median', (a).baseline_median, 'baseline_mad', (a).baseline_mad, 'baseline_weeks', (a).baseline_weeks, 'score', (a).score, 'direction', (a).direction, 'threshold', (a).threshold, 'detected_at', ((to_json(((a).detected_at AT TIME ZONE 'UTC'::text)) #>> '{}'::text[]) || '+00:00'::text));


--
-- Name: anomaly_ruled_out(numeric, numeric, numeric, numeric, numeric); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.anomaly_ruled_out(value numeric, lo numeric, hi numeric, min_delta numeric, min_delta_of_median numeric) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (GREATEST(COALESCE(min_delta, (0)::numeric), CASE WHEN ((COALESCE(min_delta_of_median, (0)::numeric) <> (0)::numeric) AND (sign(lo) = sign(hi))) THEN (min_delta_of_median * LEAST(abs(lo), abs(hi))) ELSE (0)::numeric END) > GREATEST((hi - value), (value - lo)));


--
-- Name: apply_custom_kpi_changes(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.apply_custom_kpi_changes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  settings kpi.custom_kpi_settings;
  grown_tenants uuid[];
  added boolean;
  problem record;
  forgotten record;
begin
  select * into settings from kpi.custom_kpi_settings;
  if tg_op = 'DELETE' then
    -- A KPI that a remaining combine uses stays (delete the combine first).
    select o.key, string_agg(d.key, ', ' order by d.key) as used_by into problem
    from old_rows o
    join kpi.custom_kpis d on d.tenant_id = o.tenant_id and d.combine is not null and o.key in (d.left_kpi, d.right_kpi)
    group by o.tenant_id, o.key
    order by o.tenant_id, o.key
    limit 1;
    if found then
      perform kpi_api.raise_request_error('INVALID_INPUT', format('key: %s is combined in %s; change or delete that first', problem.key, problem.used_by));
    end if;
    for forgotten in select o.tenant_id, array_agg(o.key) as keys from old_rows o group by o.tenant_id loop
      perform kpi.forget_custom_kpi_values(forgotten.tenant_id, forgotten.keys);
    end loop;
    return null;
  end if;

  if tg_op = 'UPDATE' then
    -- Only a statement that changed a definition is checked (the row trigger says so): the fill
    -- marking what it derived, and this function's own marking of combines, are not.
    if coalesce(current_setting('kpi.custom_kpis_changed', true), '') <> 'on' then
      return null;
    end if;
    perform set_config('kpi.custom_kpis_changed', '', true);
  end if;

  -- The tenants whose counts grow: every tenant a definition was added to (added), or where an
  -- update activated one.
  if tg_op = 'INSERT' then
    select array_agg(distinct n.tenant_id), true into grown_tenants, added from new_rows n;
  else
    select array_agg(distinct n.tenant_id), false into grown_tenants, added
    from new_rows n join old_rows o on o.tenant_id = n.tenant_id and o.key = n.key
    where n.active and not o.active;
  end if;

  -- One writer per tenant at a time, so that two concurrent statements cannot both pass a count:
  -- the tenants' rows, locked in id order (a row lock lives in the row, so a bulk definition of
  -- every tenant's KPIs takes no lock-table slot per tenant; NO KEY UPDATE leaves writers of
  -- sources alone).
  perform from kpi.tenants t where t.id = any (grown_tenants) order by t.id for no key update;

  -- The limits, per tenant whose counts grew: what it has after the statement.
  select c.total, c.active into problem
  from unnest(grown_tenants) g (tenant_id)
  cross join lateral (
    select count(*) as total, count(*) filter (where d.active) as active
    from kpi.custom_kpis d where d.tenant_id = g.tenant_id) c
  where (added and c.total > settings.max_per_tenant) or c.active > settings.max_active_per_tenant
  limit 1;
  if found then
    if added and problem.total > settings.max_per_tenant then
      perform kpi_api.raise_request_error('INVALID_INPUT',
        format('key: this tenant would have %s custom KPIs; the limit is %s, active or not (kpi.custom_kpi_settings)',
               problem.total, settings.max_per_tenant));
    end if;
    perform kpi_api.raise_request_error('INVALID_INPUT',
      format('active: this tenant has %s active custom KPIs, the limit (kpi.custom_kpi_settings)', settings.max_active_per_tenant));
  end if;

  -- Each operand of a combine is built in, or an active KPI of the tenant with a source (one
  -- level deep, so no cycles).
  select n.key, x.operand into problem
  from new_rows n
  cross join lateral (values (n.left_kpi), (n.right_kpi)) x (operand)
  where n.combine is not null
    and x.operand not in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct')
    and not exists (select from kpi.custom_kpis d
                    where d.tenant_id = n.tenant_id and d.key = x.operand and d.combine is null and d.active)
  limit 1;
  if found then
    perform kpi_api.raise_request_error('INVALID_INPUT', format(
      'left_kpi: %s is neither a built-in KPI nor an active custom KPI of this tenant with a source (a combine is one level deep)',
      left(problem.operand, 60)));
  end if;

  if tg_op = 'UPDATE' then
    -- A KPI others combine stays an active KPI with a source.
    select n.key, string_agg(d.key, ', ' order by d.key) as used_by into problem
    from new_rows n
    join kpi.custom_kpis d on d.tenant_id = n.tenant_id and d.combine is not null and n.key in (d.left_kpi, d.right_kpi)
                          and d.key <> n.key
    where n.combine is not null or not n.active
    group by n.tenant_id, n.key
    limit 1;
    if found then
      perform kpi_api.raise_request_error('INVALID_INPUT',
        format('combine: %s is combined in %s, so it stays an active KPI with a source', problem.key, problem.used_by));
    end if;
    -- Changed definitions (a new revision) forget their values, and the combines built on them
    -- are derived again.
    for forgotten in
      with changed as (
        select n.tenant_id, n.key from new_rows n join old_rows o on o.tenant_id = n.tenant_id and o.key = n.key
        where n.revision is distinct from o.revision
      ),
      combines as (
        update kpi.custom_kpis d set derived_revision = null
        from changed c
        where d.tenant_id = c.tenant_id and d.combine is not null and c.key in (d.left_kpi, d.right_kpi) and d.key <> c.key
        returning d.tenant_id, d.key
      )
      select k.tenant_id, array_agg(distinct k.key) as keys
      from (select tenant_id, key from changed union all select tenant_id, key from combines) k
      group by k.tenant_id
    loop
      perform kpi.forget_custom_kpi_values(forgotten.tenant_id, forgotten.keys);
    end loop;
  else
    -- A new definition finds no value left under its key by an earlier one.
    for forgotten in select n.tenant_id, array_agg(n.key) as keys from new_rows n group by n.tenant_id loop
      perform kpi.forget_custom_kpi_values(forgotten.tenant_id, forgotten.keys);
    end loop;
  end if;
  return null;
end
$$;


--
-- Name: backfill_batch(bigint, uuid, integer, date, date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.backfill_batch(p_run_id bigint, p_after uuid, p_batch integer, p_from date, p_to date) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  batch uuid[];
begin
  select array_agg(t.id order by t.id) into batch
  from (select t.id from kpi.tenants t where p_after is null or t.id > p_after order by t.id limit p_batch) t;
  if batch is null then
    return jsonb_build_object('next_tenant', null);
  end if;
  return kpi.execute_fill(p_run_id, 'range', batch, p_from, p_to)
         || jsonb_build_object('next_tenant', case when cardinality(batch) = p_batch then batch[p_batch] end);
end
$$;


--
-- Name: backfill_kpi_history(text, date, date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.backfill_kpi_history(tenant text DEFAULT NULL::text, "from" date DEFAULT NULL::date, "to" date DEFAULT NULL::date) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  tenant_id uuid;
  run_id bigint;
  result jsonb := '{}';
  batch jsonb;
  error jsonb;
begin
  if "from" > "to" then
    perform kpi.raise_error('INVALID_INPUT', format('"from" (%s) is after "to" (%s)', "from", "to"));
  end if;
  if tenant is null then
    if not kpi.try_lock_all_tenants() then
      return kpi.skipped_run('backfill', "from", "to");
    end if;
    run_id := kpi.start_kpi_run('backfill', null, "from", "to");
    begin
      -- In batches of 1,000 tenants: each statement's memory stays bounded whatever the number of
      -- tenants, all in this one transaction (call kpi.run_backfill() commits each batch instead).
      loop
        batch := kpi.backfill_batch(run_id, (batch ->> 'next_tenant')::uuid, 1000, "from", "to");
        result := kpi.add_run_results(result, batch - 'next_tenant');
        exit when batch ->> 'next_tenant' is null;
      end loop;
    exception when others or query_canceled then
      return kpi.fail_run(run_id, sqlstate, sqlerrm);
    end;
  else
    tenant_id := kpi.tenant_id_of(tenant);
    run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
    result := kpi.execute_fill(run_id, 'range', array[tenant_id], "from", "to");
    error := result -> 'errors' -> 0;
    if error is not null then
      perform kpi.raise_error(error ->> 'code', error ->> 'message', error ->> 'hint');
    end if;
  end if;
  result := result || jsonb_build_object(
    'status', case when coalesce(result -> 'errors', '[]') = '[]'::jsonb then 'ok' else 'partial' end, 'run_id', run_id);
  perform kpi.finish_kpi_run(run_id, result ->> 'status', result);
  return kpi.run_result(result) - 'tenants_considered' - 'as_of';
end
$$;


--
-- Name: FUNCTION backfill_kpi_history(tenant text, "from" date, "to" date); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.backfill_kpi_history(tenant text, "from" date, "to" date) IS 'Writes one kpi_history row per AVI week in [from, to] (NULL = unbounded) for one tenant (by slug or id) or all (tenant NULL), with VLI and HRP as of the end of each week, in one transaction. Idempotent. Returns {"ok", "total", "weeks", "weeks_kept", "rows_written", "anomalies", "errors", "warnings", "status", "run_id"}; a tenant without AVI reports is a NO_AVI error. For many tenants prefer call kpi.run_backfill(), which commits as it goes. Example: select kpi.backfill_kpi_history(''acme'', ''2024-01-01'');';


--
-- Name: built_in_kpis(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.built_in_kpis() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY['aiv_pct'::text, 'ati_pct'::text, 'crs_pct'::text, 'elasticity_usd_per_point'::text, 'vli_integrity_pct'::text, 'hrp_pct'::text];


--
-- Name: custom_kpi_weeks; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.custom_kpi_weeks (
    tenant_id uuid NOT NULL,
    as_of date NOT NULL,
    kpi_values jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT custom_kpi_weeks_values_object CHECK ((jsonb_typeof(kpi_values) = 'object'::text))
);

ALTER TABLE ONLY kpi.custom_kpi_weeks FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE custom_kpi_weeks; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.custom_kpi_weeks IS 'The custom KPI values of each tenant''s history week, {key: value}, written by the fill with the week''s history row. Read a value per row through kpi.custom_kpi_values.';


--
-- Name: kpi_history; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.kpi_history (
    tenant_id uuid NOT NULL,
    as_of date NOT NULL,
    aiv_pct numeric(5,2) NOT NULL,
    ati_pct numeric(5,2) NOT NULL,
    crs_pct numeric(5,2) NOT NULL,
    elasticity_usd_per_point numeric(10,2) NOT NULL,
    vli_integrity_pct numeric(5,2) NOT NULL,
    vli_is_fallback boolean NOT NULL,
    hrp_pct numeric(5,2),
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    revision integer DEFAULT 1 NOT NULL,
    CONSTRAINT kpi_history_aiv_pct_range CHECK (((aiv_pct >= (0)::numeric) AND (aiv_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_as_of_is_monday CHECK ((EXTRACT(isodow FROM as_of) = (1)::numeric)),
    CONSTRAINT kpi_history_ati_pct_range CHECK (((ati_pct >= (0)::numeric) AND (ati_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_crs_pct_range CHECK (((crs_pct >= (0)::numeric) AND (crs_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_hrp_pct_range CHECK (((hrp_pct >= (0)::numeric) AND (hrp_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_vli_integrity_pct_range CHECK (((vli_integrity_pct >= (0)::numeric) AND (vli_integrity_pct <= (100)::numeric)))
);

ALTER TABLE ONLY kpi.kpi_history FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE kpi_history; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.kpi_history IS 'Weekly KPIs per tenant, written only by the aggregation (kpi.fill_* functions).';


--
-- Name: COLUMN kpi_history.as_of; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_history.as_of IS 'The Monday of the AVI week the row describes.';


--
-- Name: COLUMN kpi_history.vli_is_fallback; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_history.vli_is_fallback IS 'True when no VLI audit existed before the end of the week and vli_integrity_pct is the 100 fallback.';


--
-- Name: COLUMN kpi_history.hrp_pct; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_history.hrp_pct IS 'Hallucination-risk probability in percent (100 x clarity metrics->''hrp''); NULL when missing or invalid.';


--
-- Name: COLUMN kpi_history.revision; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_history.revision IS 'Raised by every update of the row: orders its versions in the change feed.';


--
-- Name: baseline_values(uuid, date, text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.baseline_values(p_tenant_id uuid, p_as_of date, p_kpi text) RETURNS numeric[]
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT array_agg(x.v ORDER BY x.v) AS array_agg FROM (SELECT CASE baseline_values.p_kpi WHEN 'aiv_pct'::text THEN b.aiv_pct WHEN 'ati_pct'::text THEN b.ati_pct WHEN 'crs_pct'::text THEN b.crs_pct WHEN 'elasticity_usd_per_point'::text THEN b.elasticity_usd_per_point WHEN 'vli_integrity_pct'::text THEN CASE WHEN (NOT b.vli_is_fallback) THEN b.vli_integrity_pct ELSE NULL::numeric END WHEN 'hrp_pct'::text THEN b.hrp_pct ELSE NULL::numeric END AS v FROM kpi.kpi_history b WHERE ((baseline_values.p_kpi = ANY (kpi.built_in_kpis())) AND (b.tenant_id = baseline_values.p_tenant_id) AND (b.as_of >= (baseline_values.p_as_of - 84)) AND (b.as_of < baseline_values.p_as_of)) UNION ALL SELECT ((w.kpi_values ->> baseline_values.p_kpi))::numeric AS "numeric" FROM kpi.custom_kpi_weeks w WHERE ((NOT (baseline_values.p_kpi = ANY (kpi.built_in_kpis()))) AND (w.tenant_id = baseline_values.p_tenant_id) AND (w.as_of >= (baseline_values.p_as_of - 84)) AND (w.as_of < baseline_values.p_as_of))) x WHERE (x.v IS NOT NULL));


--
-- Name: check_custom_kpi_row(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.check_custom_kpi_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    AS $_$
declare
  built_in constant text[] := array['aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'];
  operand text;
begin
  perform kpi.refuse_non_admin();
  if tg_op = 'DELETE' then
    return old;
  end if;
  if new.tenant_id is null then
    if coalesce(current_setting('request.method', true), '') <> '' then
      -- Through the API the tenant is the request's (the x-tenant header, or the token's only one).
      new.tenant_id := kpi_api.current_tenant_id();
    else
      perform kpi_api.raise_request_error('INVALID_INPUT', 'tenant_id: required',
                                      'Give the tenant''s id: tenant_id => kpi.tenant_id_of(''<slug>'').');
    end if;
  end if;
  if tg_op = 'UPDATE' and (new.key is distinct from old.key or new.tenant_id is distinct from old.tenant_id) then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'key: cannot be changed; define a new KPI and delete this one');
  end if;
  if new.key is null or new.key !~ '^[a-z][a-z0-9_]{0,39}$' then
    perform kpi_api.raise_request_error('INVALID_INPUT',
      format('key: 1 to 40 lower-case letters, digits or _, starting with a letter (got %s)', coalesce(left(new.key, 60), 'null')));
  end if;
  if new.key = any (built_in) then
    perform kpi_api.raise_request_error('INVALID_INPUT', format('key: %s is a built-in KPI', new.key));
  end if;
  if new.key = 'custom' then
    -- The anomaly rule of every custom KPI is named so.
    perform kpi_api.raise_request_error('INVALID_INPUT', 'key: custom is reserved');
  end if;
  if tg_op = 'INSERT' and exists (select from kpi.custom_kpis d where d.tenant_id = new.tenant_id and d.key = new.key) then
    perform kpi_api.raise_request_error('INVALID_INPUT', format('key: %s is already defined', new.key));
  end if;
  -- Lengths as given, not as trimmed: 'x' and five million spaces is no label.
  if new.label is null or char_length(new.label) > 100 or btrim(new.label) = '' then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'label: required, up to 100 characters');
  end if;
  if char_length(new.unit) > 20 then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'unit: up to 20 characters');
  end if;
  if (new.source is null) = (new.combine is null) then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'source: give either a source (clarity, avi, vli) with an aggregate, or a combine of two KPIs');
  end if;
  if new.source is not null then
    if new.source not in ('clarity', 'avi', 'vli') then
      perform kpi_api.raise_request_error('INVALID_INPUT', format('source: one of clarity, avi, vli (got %s)', left(new.source, 40)));
    end if;
    if new.aggregate is null or new.aggregate not in ('latest', 'avg', 'min', 'max', 'sum', 'count') then
      perform kpi_api.raise_request_error('INVALID_INPUT',
        format('aggregate: one of latest, avg, min, max, sum, count (got %s)', coalesce(left(new.aggregate, 40), 'null')));
    end if;
    if new.source = 'clarity' then
      if new.path is null or cardinality(new.path) not between 1 and 8 or array_position(new.path, null) is not null
         or array_position(new.path, '') is not null
         or exists (select from unnest(new.path) k where char_length(k) > 64) then
        perform kpi_api.raise_request_error('INVALID_INPUT',
          'path: for source clarity, a list of 1 to 8 non-empty keys of up to 64 characters into metrics, e.g. ["latency", "p95_ms"]');
      end if;
      if new.field is not null then
        perform kpi_api.raise_request_error('INVALID_INPUT', 'field: only for sources avi and vli (clarity takes a path)');
      end if;
    else
      if new.path is not null then
        perform kpi_api.raise_request_error('INVALID_INPUT', 'path: only for source clarity');
      end if;
      if new.source = 'avi' and (new.field is null or new.field not in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point')) then
        perform kpi_api.raise_request_error('INVALID_INPUT',
          format('field: for source avi, one of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point (got %s)', coalesce(left(new.field, 40), 'null')));
      end if;
      if new.source = 'vli' and new.field is distinct from 'integrity_pct' then
        perform kpi_api.raise_request_error('INVALID_INPUT', format('field: for source vli, integrity_pct (got %s)', coalesce(left(new.field, 40), 'null')));
      end if;
    end if;
  else
    if new.combine not in ('difference', 'ratio') then
      perform kpi_api.raise_request_error('INVALID_INPUT', format('combine: difference or ratio (got %s)', left(new.combine, 40)));
    end if;
    if new.aggregate is not null or new.path is not null or new.field is not null then
      perform kpi_api.raise_request_error('INVALID_INPUT', 'aggregate: a combine takes no aggregate, path or field: its operands are weekly KPIs already');
    end if;
    foreach operand in array array[new.left_kpi, new.right_kpi] loop
      if operand is null then
        perform kpi_api.raise_request_error('INVALID_INPUT', 'left_kpi: a combine needs left_kpi and right_kpi');
      end if;
      if operand = new.key then
        perform kpi_api.raise_request_error('INVALID_INPUT', format('left_kpi: %s cannot combine itself', new.key));
      end if;
      if char_length(operand) > 40 then
        perform kpi_api.raise_request_error('INVALID_INPUT', format('left_kpi: %s… is no KPI', left(operand, 40)));
      end if;
    end loop;
  end if;
  if new.valid_min > new.valid_max then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'valid_min: greater than valid_max');
  end if;
  if tg_op = 'UPDATE' and (old.source, old.path, old.field, old.aggregate, old.combine, old.left_kpi, old.right_kpi,
                           old.valid_min, old.valid_max, old.active)
                          is distinct from
                          (new.source, new.path, new.field, new.aggregate, new.combine, new.left_kpi, new.right_kpi,
                           new.valid_min, new.valid_max, new.active) then
    -- What the KPI computes changed: its values go, and every week is derived again.
    new.revision := old.revision + 1;
  end if;
  if tg_op = 'UPDATE' then
    -- For the statement's check (kpi.apply_custom_kpi_changes): a definition changed.
    perform set_config('kpi.custom_kpis_changed', 'on', true);
  end if;
  new.updated_at := now();
  return new;
end
$_$;


--
-- Name: citus_commands(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.citus_commands() RETURNS SETOF text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  with recursive refs as (
    select c.conrelid::regclass::text as from_table, c.confrelid::regclass::text as to_table
    from pg_catalog.pg_constraint c
    where c.contype = 'f' and c.connamespace = 'kpi'::regnamespace and c.conrelid <> c.confrelid
  ),
  depths (table_name, depth) as (
    select 'kpi.' || d.table_name, 0 from kpi.table_distribution d
    union all
    select r.from_table, x.depth + 1 from depths x join refs r on r.to_table = x.table_name
  )
  select command from (
    select 1 as step, 0 as depth, table_name,
           format('select create_reference_table(%L);', 'kpi.' || table_name) as command
    from kpi.table_distribution where placement = 'reference'
    union all
    select case when colocate_with is null then 2 else 3 end,
           (select max(x.depth) from depths x where x.table_name = 'kpi.' || d.table_name),
           table_name,
           case when colocate_with is null
                then format('select create_distributed_table(%L, %L);', 'kpi.' || table_name, distribution_column)
                else format('select create_distributed_table(%L, %L, colocate_with => %L);',
                            'kpi.' || table_name, distribution_column, 'kpi.' || colocate_with) end
    from kpi.table_distribution d where placement = 'distributed'
  ) c
  order by step, depth, table_name
$$;


--
-- Name: FUNCTION citus_commands(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.citus_commands() IS 'The create_reference_table / create_distributed_table statements that distribute the kpi schema on Citus, in order. Example: select * from kpi.citus_commands();';


--
-- Name: clean_up_run_history(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.clean_up_run_history() RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  runs_deleted bigint;
  denials_deleted bigint;
  job_details_deleted bigint := 0;
  alerts_deleted bigint;
begin
  delete from kpi.kpi_runs where started_at < now() - interval '90 days';
  get diagnostics runs_deleted = row_count;
  delete from kpi.api_denials where denied_at < now() - interval '90 days';
  get diagnostics denials_deleted = row_count;
  delete from kpi.alerts where status <> 'pending' and finished_at < now() - interval '90 days';
  get diagnostics alerts_deleted = row_count;
  -- cron.job_run_details exists only in the pg_cron database.
  if to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where start_time < now() - interval ''7 days''';
    get diagnostics job_details_deleted = row_count;
  end if;
  return jsonb_build_object('kpi_runs_deleted', runs_deleted, 'api_denials_deleted', denials_deleted,
                            'alerts_deleted', alerts_deleted, 'kpi_changes_deleted', kpi.prune_change_log(),
                            'cron_job_run_details_deleted', job_details_deleted);
end
$$;


--
-- Name: FUNCTION clean_up_run_history(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.clean_up_run_history() IS 'Deletes kpi_runs, api_denials and finished alerts older than 90 days, the change feed older than change_feed_settings.keep, and cron.job_run_details older than 7 days. Run daily by pg_cron.';


--
-- Name: cron_secret_hash(bytea, text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.cron_secret_hash(salt bytea, secret text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN sha256((salt || convert_to(secret, 'UTF8'::name)));


--
-- Name: current_trigger(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.current_trigger() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select case
    when nullif(current_setting('request.path', true), '') is not null then 'api'
    when current_setting('application_name') = 'pg_cron'
      -- pg_stat_get_activity(pid) reads this backend's entry only, not every session's.
      or (select a.backend_type from pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a) = 'pg_cron'
      then 'pg_cron'
    else 'sql'
  end
$$;


--
-- Name: custom_value_is_storable(numeric); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.custom_value_is_storable(value numeric) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((value IS NULL) OR (abs(value) <= '1000000000000000'::numeric));


--
-- Name: custom_values_change_data(kpi.custom_kpi_weeks); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.custom_values_change_data(w kpi.custom_kpi_weeks) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('as_of', (w).as_of, 'values', (w).kpi_values, 'updated_at', ((to_json(((w).updated_at AT TIME ZONE 'UTC'::text)) #>> '{}'::text[]) || '+00:00'::text));


--
-- Name: delete_expired_sources(text, timestamp with time zone, uuid, integer); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.delete_expired_sources(source text, as_of timestamp with time zone, from_tenant uuid, batch_size integer, OUT deleted bigint, OUT next_tenant uuid) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
declare
  keys text[] := string_to_array((kpi.source_table_layout(source)).key_columns, ', ');
  last_deleted uuid;
  slice_end uuid;
  slice_size integer;
begin
  select max(s.id::text collate "C")::uuid, count(*) into slice_end, slice_size
  from (select t.id from kpi.tenants t where t.id >= from_tenant order by t.id limit batch_size) s;
  -- What goes here only ever fed weeks that are final: no change to track.
  perform set_config('kpi.tracking', 'off', true);
  execute format($q$
    with expired as (%2$s order by 1 limit $5),
    gone as (
      delete from kpi.%1$I d using expired e
      where d.tenant_id = e.tenant_id and (%3$s) = (%4$s)
      returning d.tenant_id
    )
    select count(*), max(g.tenant_id::text collate "C")::uuid from gone g$q$,
    source,
    kpi.expired_sources_query(source),
    (select string_agg('d.' || k, ', ') from unnest(keys) k),
    (select string_agg('e.' || k, ', ') from unnest(keys) k))
  into deleted, last_deleted
  using as_of, from_tenant, slice_end, null::integer, batch_size;
  next_tenant := case
    when deleted >= batch_size then last_deleted
    when slice_size >= batch_size then (select t.id from kpi.tenants t where t.id > slice_end order by t.id limit 1)
  end;
end
$_$;


--
-- Name: derive_pending_contained(uuid[]); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.derive_pending_contained(p_tenants uuid[]) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  result jsonb := jsonb_build_object('kpis_derived', 0, 'values', 0, 'rows_written', 0, 'warnings', '[]'::jsonb, 'failed', '[]'::jsonb);
  one jsonb;
  pending uuid;
begin
  if not exists (select from kpi.custom_kpis d
                 where d.derived_revision is distinct from d.revision and d.active and (p_tenants is null or d.tenant_id = any (p_tenants))) then
    return result;
  end if;
  if p_tenants is null then
    begin
      return kpi.derive_pending_custom_kpis(null) || jsonb_build_object('failed', '[]'::jsonb);
    exception when others then
      null; -- tenant by tenant below
    end;
  end if;
  for pending in
    select distinct d.tenant_id from kpi.custom_kpis d
    where d.derived_revision is distinct from d.revision and d.active and (p_tenants is null or d.tenant_id = any (p_tenants))
    order by d.tenant_id
  loop
    begin
      one := kpi.derive_pending_custom_kpis(pending);
      result := result || jsonb_build_object(
        'kpis_derived', (result ->> 'kpis_derived')::bigint + (one ->> 'kpis_derived')::bigint,
        'values', (result ->> 'values')::bigint + (one ->> 'values')::bigint,
        'rows_written', (result ->> 'rows_written')::bigint + (one ->> 'rows_written')::bigint,
        'warnings', (result -> 'warnings') || (one -> 'warnings'));
    exception when others then
      result := jsonb_set(result, '{failed}', (result -> 'failed') || jsonb_build_array(jsonb_build_object(
        'tenant_id', pending, 'sqlstate', sqlstate, 'message', 'deriving its new custom KPIs failed: ' || left(sqlerrm, 400))));
    end;
  end loop;
  return result;
end
$$;


--
-- Name: derive_pending_custom_kpis(uuid); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.derive_pending_custom_kpis(p_tenant_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  pending_tenants uuid[];
  pending_weeks date[];
  -- The pending definitions with the revision read now.
  derived_keys jsonb;
  stats jsonb;
begin
  select jsonb_agg(jsonb_build_object('tenant_id', d.tenant_id, 'key', d.key, 'revision', d.revision))
  into derived_keys
  from kpi.custom_kpis d
  where d.derived_revision is distinct from d.revision and d.active and (p_tenant_id is null or d.tenant_id = p_tenant_id);
  if derived_keys is null then
    return jsonb_build_object('kpis_derived', 0, 'values', 0, 'rows_written', 0, 'warnings', '[]'::jsonb);
  end if;
  -- Every kept week of the tenants concerned. (Both arrays from one aggregate pass, so that they
  -- stay aligned.)
  select array_agg(h.tenant_id), array_agg(h.as_of)
  into pending_tenants, pending_weeks
  from (select distinct p.tenant_id from jsonb_to_recordset(derived_keys) as p (tenant_id uuid)) p
  join kpi.tenants t on t.id = p.tenant_id
  join kpi.plans pl on pl.plan = t.plan
  join kpi.kpi_history h on h.tenant_id = p.tenant_id
  where kpi.week_end(h.as_of) > kpi.source_horizon(coalesce(t.source_retention_days, pl.source_retention_days),
                                                  t.sources_purged_before, (select kpi.last_source_cleanup()));
  stats := kpi.write_custom_kpi_values(coalesce(pending_tenants, '{}'), coalesce(pending_weeks, '{}'));
  -- Derived as of the revision read at the start: a change committed since stays pending.
  update kpi.custom_kpis d set derived_revision = p.revision
  from jsonb_to_recordset(derived_keys) as p (tenant_id uuid, key text, revision integer)
  where d.tenant_id = p.tenant_id and d.key = p.key and d.revision = p.revision;
  return stats || jsonb_build_object('kpis_derived', jsonb_array_length(derived_keys));
end
$$;


--
-- Name: FUNCTION derive_pending_custom_kpis(p_tenant_id uuid); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.derive_pending_custom_kpis(p_tenant_id uuid) IS 'Derives the custom KPIs not derived yet (new, changed or re-activated definitions) of one tenant (or all) over every history week whose sources are kept.';


--
-- Name: execute_fill(bigint, text, uuid[], date, date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.execute_fill(p_run_id bigint, p_mode text, p_tenants uuid[], p_from date, p_to date) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
declare
  tenant_ids uuid[];
  weeks date[];
  no_avi uuid[];
  weeks_kept bigint;
  tenants_considered bigint;
  tenants_listed bigint;
  latest_week date;
  derived jsonb;
  written jsonb;
  failed jsonb;
  anomalies_before integer := kpi.anomalies_changed();
  total bigint;
begin
  select coalesce(array_agg(t.tenant_id order by t.tenant_id, t.as_of) filter (where t.as_of is not null and not t.kept), '{}'),
         coalesce(array_agg(t.as_of order by t.tenant_id, t.as_of) filter (where t.as_of is not null and not t.kept), '{}'),
         coalesce(array_agg(t.tenant_id order by t.tenant_id) filter (where t.as_of is null), '{}'),
         count(*) filter (where t.kept),
         -- The tenants whose sources were read: all of them but those the stale mode lists from
         -- kpi.tenants_without_avi.
         count(distinct t.tenant_id) filter (where t.as_of is not null or p_mode <> 'stale'),
         count(distinct t.tenant_id),
         max(t.as_of)
  into tenant_ids, weeks, no_avi, weeks_kept, tenants_considered, tenants_listed, latest_week
  from kpi.fill_targets(p_mode, p_tenants, p_from, p_to) t;

  -- A backfill counts the history weeks it left as they are, not the reports (retention may have
  -- deleted those). From the tenants, and into the history only for those whose sources have a
  -- horizon, one index range each: a join the planner may start from the history reads every row
  -- a long backfill has written so far in its transaction (no statistics know of them), batch
  -- after batch — measured 12 s of a 16 s batch after four batches of 1,000 tenants.
  if p_mode = 'range' then
    select coalesce(sum(k.weeks), 0) into weeks_kept
    from kpi.tenants t
    join kpi.plans p on p.plan = t.plan
    cross join lateral (select kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days),
                                                  t.sources_purged_before, (select kpi.last_source_cleanup())) as horizon) x
    cross join lateral (
      select count(*) as weeks from kpi.kpi_history h
      where h.tenant_id = t.id
        and h.as_of >= coalesce(p_from, '-infinity'::date) and h.as_of <= coalesce(p_to, 'infinity'::date)
        and kpi.week_end(h.as_of) <= x.horizon
    ) k
    where (p_tenants is null or t.id = any (p_tenants)) and x.horizon > '-infinity'::timestamptz;
  end if;

  -- Definitions not derived yet first, over every week; the run's own weeks then find their values.
  derived := kpi.derive_pending_contained(p_tenants);
  written := kpi.write_weeks_contained(tenant_ids, weeks);
  failed := (written -> 'failed') || (derived -> 'failed');
  if p_mode = 'stale' and jsonb_array_length(written -> 'failed') > 0 then
    -- Still stale: recorded again, from the earliest week the run had for them.
    insert into kpi.source_changes (tenant_ids, from_weeks)
    select array_agg(x.tenant_id), array_agg(x.from_week)
    from (select f.tenant_id, min(w.as_of) as from_week
          from jsonb_to_recordset(written -> 'failed') f (tenant_id uuid)
          join unnest(tenant_ids, weeks) w (tenant_id, as_of) on w.tenant_id = f.tenant_id
          group by f.tenant_id) x
    having count(*) > 0;
  end if;

  total := case when p_tenants is not null then cardinality(p_tenants)
                when p_mode = 'stale' then (select c.tenants from kpi.tenant_count c)
                else tenants_listed end;
  return jsonb_strip_nulls(jsonb_build_object(
    'ok', total - cardinality(no_avi) - (select count(distinct f ->> 'tenant_id') from jsonb_array_elements(failed) f),
    'total', total,
    'tenants_considered', tenants_considered,
    'as_of', latest_week,
    'weeks', (written ->> 'weeks')::bigint,
    'weeks_kept', weeks_kept,
    'rows_written', (written ->> 'rows_written')::bigint,
    'written', written -> 'written',
    'anomalies', kpi.anomalies_changed() - anomalies_before,
    'custom_weeks_written', case when written ? 'custom_weeks_written' or (derived ->> 'rows_written')::bigint > 0
                                 then coalesce((written ->> 'custom_weeks_written')::bigint, 0) + (derived ->> 'rows_written')::bigint end,
    'custom_values', case when written ? 'custom_values' or (derived ->> 'values')::bigint > 0
                          then coalesce((written ->> 'custom_values')::bigint, 0) + (derived ->> 'values')::bigint end,
    'custom_kpis_derived', nullif((derived ->> 'kpis_derived')::bigint, 0),
    'errors', (select coalesce(jsonb_agg(kpi.no_avi_error(n, t.slug) order by n), '[]'::jsonb)
               from unnest(no_avi) n left join kpi.tenants t on t.id = n)
              || (select coalesce(jsonb_agg(jsonb_build_object(
                        'tenant_id', f.tenant_id,
                        'tenant', t.slug,
                        'code', 'INTERNAL_ERROR', 'sqlstate', f.sqlstate,
                        'message', format('the fill of tenant %s failed and wrote nothing for it: %s',
                                          coalesce(t.slug, f.tenant_id::text), f.message))
                        order by f.tenant_id), '[]'::jsonb)
                  from jsonb_to_recordset(failed) f (tenant_id uuid, sqlstate text, message text)
                  left join kpi.tenants t on t.id = f.tenant_id),
    -- A pending KPI's warning for one of the run's weeks is in both lists: once is enough.
    'warnings', (select coalesce(jsonb_agg(w.warning order by w.warning ->> 'tenant_id', w.warning ->> 'as_of', w.warning ->> 'kpi', w.warning ->> 'code'), '[]'::jsonb)
                 from (select distinct x.warning
                       from jsonb_array_elements((derived -> 'warnings') || (written -> 'warnings')) as x (warning)) w)));
end
$$;


--
-- Name: execute_fill_all(bigint, boolean); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.execute_fill_all(p_run_id bigint, p_full boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  run_mode constant text := case when p_full then 'full' else 'incremental' end;
  incremental jsonb;
  reconciled jsonb;
  result jsonb;
  corrected integer := 0;
begin
  update kpi.kpi_runs set mode = run_mode where id = p_run_id;
  begin
    incremental := kpi.execute_fill(p_run_id, 'stale', null, null, null);
    result := incremental;
    if p_full then
      reconciled := kpi.execute_fill(p_run_id, 'latest', null, null, null);
      corrected := (reconciled ->> 'rows_written')::integer;
      result := reconciled || jsonb_build_object(
        'rows_written', corrected + (incremental ->> 'rows_written')::integer,
        'anomalies', (incremental ->> 'anomalies')::integer + (reconciled ->> 'anomalies')::integer,
        -- A tenant that failed in both passes is one error.
        'errors', (select coalesce(jsonb_agg(e order by e ->> 'code', e ->> 'tenant_id'), '[]'::jsonb)
                   from (select distinct on (e ->> 'tenant_id', e ->> 'code') e
                         from jsonb_array_elements((incremental -> 'errors') || (reconciled -> 'errors')) e) x),
        'warnings', (select coalesce(jsonb_agg(distinct w), '[]'::jsonb)
                     from jsonb_array_elements((incremental -> 'warnings') || (reconciled -> 'warnings')) w)
          || (select coalesce(jsonb_agg(jsonb_build_object(
                   'tenant_id', w ->> 'tenant_id', 'as_of', w ->> 'as_of', 'code', 'UNTRACKED_CHANGE',
                   'message', 'the full run corrected this row: no change record covered it')), '[]'::jsonb)
              from jsonb_array_elements(reconciled -> 'written') w),
        'corrected', corrected);
    end if;
  exception when others or query_canceled then
    return kpi.fail_run(p_run_id, sqlstate, sqlerrm, run_mode);
  end;
  result := result - 'as_of' || jsonb_build_object(
    'mode', run_mode,
    'status', case when result -> 'errors' = '[]'::jsonb then 'ok' else 'partial' end,
    'run_id', p_run_id);
  perform kpi.finish_kpi_run(p_run_id, result ->> 'status', result);
  update kpi.kpi_runs set details = jsonb_strip_nulls(jsonb_build_object(
      'tenants_considered', result -> 'tenants_considered', 'corrected', result -> 'corrected'))
  where id = p_run_id;
  return kpi.run_result(result);
end
$$;


--
-- Name: expired_sources_query(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.expired_sources_query(source text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
declare
  layout record := kpi.source_table_layout(source);
  keys text[];
begin
  if layout.key_columns is null then
    raise exception 'kpi.expired_sources_query: unknown source table %', source;
  end if;
  keys := string_to_array(layout.key_columns, ', ');
  return format($q$
    select x.tenant_id, %2$s
    from kpi.tenants t
    join kpi.plans p on p.plan = t.plan
    cross join lateral (
      select $1 - make_interval(days => coalesce($4, t.source_retention_days, p.source_retention_days)) as cutoff) c
    cross join lateral (
      select %6$s from kpi.%1$I k
      where k.tenant_id = t.id and %3$s
      order by %4$s limit 1) kept
    cross join lateral (
      select x.tenant_id, %2$s from kpi.%1$I x
      where x.tenant_id = t.id and (%2$s) < (kept.%5$s)) x
    where t.id >= $2 and t.id <= $3 and c.cutoff is not null$q$,
    source,
    (select string_agg('x.' || k, ', ') from unnest(keys) k),
    layout.before_cutoff,
    (select string_agg('k.' || k || ' desc', ', ') from unnest(keys) k),
    (select string_agg(k, ', kept.') from unnest(keys) k),
    (select string_agg('k.' || k, ', ') from unnest(keys) k));
end
$_$;


--
-- Name: fail_run(bigint, text, text, text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.fail_run(p_run_id bigint, p_sqlstate text, p_message text, p_mode text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  result jsonb := jsonb_strip_nulls(jsonb_build_object(
    'ok', 0, 'total', null, 'rows_written', 0, 'warnings', '[]'::jsonb, 'mode', p_mode,
    'errors', jsonb_build_array(jsonb_build_object('code', 'INTERNAL_ERROR', 'sqlstate', p_sqlstate, 'message', p_message))));
begin
  perform kpi.finish_kpi_run(p_run_id, 'failed', result);
  return result || jsonb_build_object('status', 'failed', 'run_id', p_run_id);
end
$$;


--
-- Name: fill_all_kpi_history(boolean); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.fill_all_kpi_history("full" boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if not kpi.try_lock_all_tenants() then
    return kpi.skipped_run('fill_all', null, null);
  end if;
  return kpi.execute_fill_all(kpi.start_kpi_run('fill_all', null, null, null), coalesce(fill_all_kpi_history.full, false));
end
$$;


--
-- Name: FUNCTION fill_all_kpi_history("full" boolean); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.fill_all_kpi_history("full" boolean) IS 'Brings every tenant''s history up to date. Incremental (the default): only the tenants whose sources changed, as the change-tracking triggers recorded them. full => true: every tenant''s latest week too, reporting in "corrected" what the records missed (should be 0). A tenant whose write fails is an error of the run (partial), the others are written. Returns {"ok", "total", "tenants_considered", "mode", "rows_written", "anomalies", "errors": [first 100], "error_counts", "warnings": [first 100], "status", "run_id"} (and "corrected" for a full run), or {"skipped": true, …} while another all-tenant run holds the lock. Example: select kpi.fill_all_kpi_history();';


--
-- Name: fill_kpi_history(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.fill_kpi_history(tenant text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  tenant_id uuid := kpi.tenant_id_of(tenant);
  run_id bigint;
  result jsonb;
  error jsonb;
begin
  run_id := kpi.start_kpi_run('fill', tenant_id, null, null);
  result := kpi.execute_fill(run_id, 'latest', array[tenant_id], null, null);
  error := result -> 'errors' -> 0;
  if error is not null then
    -- NO_AVI, or the tenant's write failed: raised, which undoes the run's row too
    -- (kpi.try_fill_kpi_history logs it instead).
    perform kpi.raise_error(error ->> 'code', error ->> 'message', error ->> 'hint');
  end if;
  perform kpi.finish_kpi_run(run_id, 'ok', result);
  -- The all-tenant result's vocabulary (status, run_id, rows_written, errors, warnings,
  -- anomalies) for one tenant: ok is true rather than a count, and errors is always empty, since
  -- a tenant's error is raised (a partial run of one tenant is a failed one).
  return jsonb_build_object('ok', true, 'status', 'ok', 'as_of', result -> 'as_of', 'rows_written', result -> 'rows_written',
                            'errors', '[]'::jsonb, 'warnings', result -> 'warnings', 'anomalies', result -> 'anomalies', 'run_id', run_id);
end
$$;


--
-- Name: FUNCTION fill_kpi_history(tenant text); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.fill_kpi_history(tenant text) IS 'Writes the tenant''s latest AVI week into kpi_history; the tenant by slug or id. Returns {"ok": true, "status": "ok", "as_of": "YYYY-MM-DD", "rows_written", "errors": [], "warnings", "anomalies", "run_id"}. Raises UNKNOWN_TENANT (KH404) or NO_AVI (KH422). Example: select kpi.fill_kpi_history(''acme'');';


--
-- Name: fill_targets(text, uuid[], date, date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.fill_targets(p_mode text, p_tenants uuid[], p_from date DEFAULT NULL::date, p_to date DEFAULT NULL::date) RETURNS TABLE(tenant_id uuid, as_of date, kept boolean)
    LANGUAGE plpgsql
    SET search_path TO ''
    SET plan_cache_mode TO 'force_custom_plan'
    SET enable_memoize TO 'off'
    SET jit TO 'off'
    AS $$
begin
  if p_mode is null or p_mode not in ('latest', 'stale', 'range') then
    raise exception 'kpi.fill_targets: the mode is latest, stale or range, not %', p_mode;
  end if;
  return query
  with tenants as (
    -- Every tenant, or the given ones, with the horizon of its sources.
    select t.id, kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days), t.sources_purged_before,
                                    (select kpi.last_source_cleanup())) as horizon
    from kpi.tenants t
    join kpi.plans p on p.plan = t.plan
    where p_mode <> 'stale' and (p_tenants is null or t.id = any (p_tenants))
  ),
  consumed as (
    delete from kpi.source_changes s where p_mode = 'stale' returning s.tenant_ids, s.from_weeks
  ),
  stale as (
    select c.tenant_id, min(c.from_week) as from_week
    from consumed s cross join lateral unnest(s.tenant_ids, s.from_weeks) as c (tenant_id, from_week)
    where p_tenants is null or c.tenant_id = any (p_tenants)
    group by c.tenant_id
  ),
  pairs as (
    -- latest: the latest report by one backward index probe; NULL when there is none.
    select t.id as tenant_id, latest.week_start, t.horizon
    from tenants t
    left join lateral (
      select r.week_start from kpi.avi_reports r where r.tenant_id = t.id order by r.week_start desc limit 1
    ) latest on true
    where p_mode = 'latest'
    union all
    -- range: every report in [from, to], and NULL for a tenant with none at all. (Whether it has
    -- none is one probe of its own reports. Asked with NOT EXISTS, the planner hashed every
    -- tenant's reports instead, for each batch that had a tenant without any: 1,019,400 reports
    -- read for 1,000 tenants at 20,000 tenants, half of the batch's choosing.)
    select t.id, r.week_start, t.horizon
    from tenants t
    left join lateral (
      select r.week_start from kpi.avi_reports r
      where r.tenant_id = t.id and r.week_start >= coalesce(p_from, '-infinity'::date) and r.week_start <= coalesce(p_to, 'infinity'::date)
    ) r on true
    where p_mode = 'range'
      and (r.week_start is not null or (select a.week_start from kpi.avi_reports a where a.tenant_id = t.id limit 1) is null)
    union all
    -- stale: the recorded tenants' weeks from the earliest one that may have changed (a tenant
    -- deleted since has none), and every tenant without reports.
    select s.tenant_id, r.week_start,
           kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days), t.sources_purged_before, (select kpi.last_source_cleanup()))
    from stale s
    join kpi.tenants t on t.id = s.tenant_id
    join kpi.plans p on p.plan = t.plan
    join kpi.avi_reports r on r.tenant_id = s.tenant_id and r.week_start >= s.from_week
    where p_mode = 'stale'
    union all
    select w.tenant_id, null, null
    from kpi.tenants_without_avi w
    where p_mode = 'stale' and (p_tenants is null or w.tenant_id = any (p_tenants))
  )
  select x.tenant_id, x.week_start, x.week_start is not null and kpi.week_end(x.week_start) <= x.horizon
  from pairs x
  -- The order every writer locks shared rows in.
  order by x.tenant_id, x.week_start;
end
$$;


--
-- Name: FUNCTION fill_targets(p_mode text, p_tenants uuid[], p_from date, p_to date); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.fill_targets(p_mode text, p_tenants uuid[], p_from date, p_to date) IS 'The (tenant, week) pairs a fill computes: p_mode latest (each tenant''s latest AVI week), stale (the weeks the change records name, consuming them) or range (every AVI week in [from, to]); for every tenant (p_tenants NULL) or the given ones. as_of NULL: the tenant has no AVI report (NO_AVI); kept: a week whose sources may be gone, left as it is.';


--
-- Name: finish_kpi_run(bigint, text, jsonb); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.finish_kpi_run(p_run_id bigint, p_status text, p_result jsonb) RETURNS void
    LANGUAGE sql
    SET search_path TO ''
    AS $$
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


--
-- Name: forget_custom_kpi_values(uuid, text[]); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.forget_custom_kpi_values(p_tenant_id uuid, p_keys text[]) RETURNS void
    LANGUAGE sql
    SET search_path TO ''
    BEGIN ATOMIC
 DELETE FROM kpi.custom_kpi_weeks w
   WHERE ((w.tenant_id = forget_custom_kpi_values.p_tenant_id) AND ((w.kpi_values - forget_custom_kpi_values.p_keys) = '{}'::jsonb));
 UPDATE kpi.custom_kpi_weeks w SET kpi_values = (w.kpi_values - forget_custom_kpi_values.p_keys), updated_at = now()
   WHERE ((w.tenant_id = forget_custom_kpi_values.p_tenant_id) AND (w.kpi_values ?| forget_custom_kpi_values.p_keys));
 DELETE FROM kpi.kpi_anomalies a
   WHERE ((a.tenant_id = forget_custom_kpi_values.p_tenant_id) AND (a.kpi = ANY (forget_custom_kpi_values.p_keys)));
END;


--
-- Name: health_report(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.health_report() RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
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


--
-- Name: FUNCTION health_report(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.health_report() IS 'Health of kpi-history with every reason to act: {"status": "healthy" | "degraded", "reasons": [...], "last_run", "last_success_at", "failing_tenants", "schedule", "alerts"}. Example: select jsonb_pretty(kpi.health_report());';


--
-- Name: history_change_row(kpi.kpi_history); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.history_change_row(h kpi.kpi_history) RETURNS kpi.history_change
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ROW((h).as_of, (h).aiv_pct, (h).ati_pct, (h).crs_pct, (h).elasticity_usd_per_point, (h).vli_integrity_pct, (h).vli_is_fallback, (h).hrp_pct, (h).updated_at, (h).revision)::kpi.history_change;


--
-- Name: hrp_pct(jsonb); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.hrp_pct(hrp jsonb) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN (jsonb_typeof(hrp) = 'number'::text) THEN CASE WHEN (((hrp)::numeric >= (0)::numeric) AND ((hrp)::numeric <= (1)::numeric)) THEN round(((hrp)::numeric * (100)::numeric), 2) ELSE NULL::numeric END ELSE NULL::numeric END;


--
-- Name: hrp_is_invalid(jsonb); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.hrp_is_invalid(hrp jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((COALESCE(jsonb_typeof(hrp), 'null'::text) <> 'null'::text) AND (kpi.hrp_pct(hrp) IS NULL));


--
-- Name: install_cron_secret(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.install_cron_secret(secret text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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


--
-- Name: FUNCTION install_cron_secret(secret text); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.install_cron_secret(secret text) IS 'Makes `secret` (32+ characters) the only active cron secret, whatever was active before.';


--
-- Name: keep_plan_source_horizon(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.keep_plan_source_horizon() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  update kpi.tenants t
  set sources_purged_before = greatest(t.sources_purged_before, now() - make_interval(days => o.source_retention_days))
  from old_plans o join new_plans n on n.plan = o.plan
  where t.plan = o.plan and t.source_retention_days is null
    and o.source_retention_days is not null
    and o.source_retention_days is distinct from n.source_retention_days;
  return null;
end
$$;


--
-- Name: keep_source_horizon(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.keep_source_horizon() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  old_days integer := kpi.source_retention_days(old.source_retention_days, old.plan);
begin
  if old_days is not null then
    new.sources_purged_before := greatest(old.sources_purged_before, now() - make_interval(days => old_days));
  end if;
  return new;
end
$$;


--
-- Name: keep_tenant_slugs(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.keep_tenant_slugs() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if tg_op = 'INSERT' then
    insert into kpi.tenant_slugs (slug, tenant_id) select n.slug, n.id from new_tenants n;
  elsif tg_op = 'UPDATE' then
    delete from kpi.tenant_slugs s
    using (select id, slug from old_tenants except select id, slug from new_tenants) o
    where s.tenant_id = o.id and s.slug = o.slug;
    insert into kpi.tenant_slugs (slug, tenant_id)
    select n.slug, n.id from (select id, slug from new_tenants except select id, slug from old_tenants) n;
  else
    delete from kpi.tenant_slugs s using old_tenants o where s.tenant_id = o.id;
  end if;
  return null;
end
$$;


--
-- Name: retention_state; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.retention_state (
    singleton boolean DEFAULT true NOT NULL,
    last_cleanup_as_of timestamp with time zone,
    CONSTRAINT retention_state_one_row CHECK (singleton)
);

ALTER TABLE ONLY kpi.retention_state FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE retention_state; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.retention_state IS 'When the last source cleanup started (one row): the fill''s horizon follows from it.';


--
-- Name: last_source_cleanup(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.last_source_cleanup() RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    RETURN (SELECT rs.last_cleanup_as_of FROM kpi.retention_state rs);


--
-- Name: log_changes(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.log_changes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  -- (PL/pgSQL plans each statement when it first runs it: each branch names only the transition
  -- table and row type its event has.)
  if tg_op = 'DELETE' then
    if tg_argv[0] = 'anomaly' then
      insert into kpi.kpi_changes (tenant_id, entity, op, as_of, kpi)
      select o.tenant_id, 'anomaly', 'delete', o.as_of, o.kpi from old_rows o order by o.tenant_id, o.as_of, o.kpi;
    else
      insert into kpi.kpi_changes (tenant_id, entity, op, as_of)
      select o.tenant_id, tg_argv[0], 'delete', o.as_of from old_rows o order by o.tenant_id, o.as_of;
    end if;
  elsif tg_argv[0] = 'history' then
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, history_row)
    select n.tenant_id, 'history', lower(tg_op), n.as_of, kpi.history_change_row(n)
    from new_rows n order by n.tenant_id, n.as_of;
  elsif tg_argv[0] = 'anomaly' then
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, kpi, data)
    select n.tenant_id, 'anomaly', lower(tg_op), n.as_of, n.kpi, kpi.anomaly_change_data(n)
    from new_rows n order by n.tenant_id, n.as_of, n.kpi;
  else
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, data)
    select n.tenant_id, 'custom_values', lower(tg_op), n.as_of, kpi.custom_values_change_data(n)
    from new_rows n order by n.tenant_id, n.as_of;
  end if;
  -- Delivered at commit (and once per transaction): wakes the stream's reader.
  perform pg_notify('kpi_changes', '');
  return null;
end
$$;


--
-- Name: no_avi_error(uuid, text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.no_avi_error(p_tenant_id uuid, p_slug text) RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN jsonb_build_object('tenant_id', p_tenant_id, 'tenant', p_slug, 'code', 'NO_AVI', 'message', format('tenant %s has no AVI report'::text, COALESCE(p_slug, (p_tenant_id)::text)), 'hint', 'Insert a row into kpi.avi_reports for this tenant first.');


--
-- Name: notify_alert_workers(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.notify_alert_workers() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if exists (select from new_alerts where status = 'pending') then
    perform pg_notify('kpi_alerts', '');
  end if;
  return null;
end
$$;


--
-- Name: preview_source_cleanup(text, integer); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.preview_source_cleanup(tenant text, source_retention_days integer DEFAULT NULL::integer) RETURNS TABLE(source text, rows_to_delete bigint, cutoff timestamp with time zone)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  tenant_id uuid := kpi.tenant_id_of(tenant);
  retention integer;
begin
  if source_retention_days is not null and source_retention_days < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'source_retention_days must be at least 1 (NULL: the tenant''s own)');
  end if;
  select coalesce(t.source_retention_days, preview_source_cleanup.source_retention_days, p.source_retention_days) into retention
  from kpi.tenants t join kpi.plans p on p.plan = t.plan where t.id = tenant_id;
  foreach source in array array['avi_reports', 'vli_audits', 'clarity_reports'] loop
    execute format('select count(*) from (%s) e', kpi.expired_sources_query(source))
      into rows_to_delete
      using now(), tenant_id, tenant_id, retention;
    cutoff := now() - make_interval(days => retention);
    return next;
  end loop;
end
$$;


--
-- Name: FUNCTION preview_source_cleanup(tenant text, source_retention_days integer); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.preview_source_cleanup(tenant text, source_retention_days integer) IS 'What the next source cleanup would delete of a tenant (slug or id), per source table, by the rule the cleanup runs: with its retention as it is, or with source_retention_days instead of its plan''s (its own override still wins). Deletes nothing; cutoff NULL: kept forever. Example: select * from kpi.preview_source_cleanup(''acme'', 90);';


--
-- Name: prune_change_log(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.prune_change_log() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  settings kpi.change_feed_settings;
  last_txid xid8;
  last_seq bigint;
  horizon xid8;
  deleted bigint;
begin
  select * into settings from kpi.change_feed_settings for update;
  horizon := kpi_api.change_log_horizon();
  select c.txid, c.seq into last_txid, last_seq
  from kpi.kpi_changes c
  where c.changed_at < now() - settings.keep and c.txid < horizon
  order by c.txid desc, c.seq desc
  limit 1;
  if last_txid is null then
    return 0;
  end if;
  delete from kpi.kpi_changes c where (c.txid, c.seq) <= (last_txid, last_seq);
  get diagnostics deleted = row_count;
  update kpi.change_feed_settings
  set pruned_txid = greatest(pruned_txid, last_txid),
      pruned_seq = case when last_txid > pruned_txid or (last_txid = pruned_txid and last_seq > pruned_seq) then last_seq else pruned_seq end;
  return deleted;
end
$$;


--
-- Name: FUNCTION prune_change_log(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.prune_change_log() IS 'Deletes the change feed''s entries older than change_feed_settings.keep (up to a settled position, without holes) and records where it stopped; readers with an older cursor get CURSOR_EXPIRED. Run daily by kpi.clean_up_run_history. Example: select kpi.prune_change_log();';


--
-- Name: raise_error(text, text, text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.raise_error(code text, message text, hint text DEFAULT NULL::text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  state char(5) := (select e.sqlstate from kpi.error_codes e where e.code = raise_error.code);
begin
  if state is null then
    raise exception 'kpi.raise_error: unknown error code %', code;
  end if;
  if hint is null then
    raise exception using errcode = state, message = message;
  end if;
  raise exception using errcode = state, message = message, hint = hint;
end
$$;


--
-- Name: raise_history_revision(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.raise_history_revision() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  new.revision := old.revision + 1;
  return new;
end
$$;


--
-- Name: refuse_non_admin(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.refuse_non_admin() RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' and not kpi_api.is_tenant_admin() then
    perform kpi_api.raise_request_error('FORBIDDEN', 'only an admin of the tenant (tenant_roles: "kpi_admin") may change its custom KPIs');
  end if;
end
$$;


--
-- Name: report_run_outcome(bigint); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.report_run_outcome(p_run_id bigint) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
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


--
-- Name: rescore_after_rule_change(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.rescore_after_rule_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  -- (PL/pgSQL plans each statement when it first runs it, so each branch may name only the
  -- transition tables its event has.)
  if tg_table_name = 'anomaly_rules' then
    if tg_op = 'UPDATE' and not exists (select * from changed_new except select * from changed_old) then
      return null;
    end if;
    if current_setting('kpi.rescore', true) = 'deferred' then
      raise notice 'kpi-history: anomaly rules changed; the anomalies follow the old rules until: call kpi.run_rescore_anomalies();';
      return null;
    end if;
    perform kpi.rescore_all_anomalies();
  elsif tg_op = 'INSERT' then
    perform kpi.rescore_tenants_anomalies(array(select distinct tenant_id from changed_new));
  elsif tg_op = 'DELETE' then
    perform kpi.rescore_tenants_anomalies(array(select distinct tenant_id from changed_old));
  else
    perform kpi.rescore_tenants_anomalies(array(
      select x.tenant_id from (select * from changed_new except select * from changed_old) x
      union
      select x.tenant_id from (select * from changed_old except select * from changed_new) x));
  end if;
  return null;
end
$$;


--
-- Name: rescore_all_anomalies(uuid); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.rescore_all_anomalies(p_tenant_id uuid DEFAULT NULL::uuid) RETURNS integer
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select kpi.rescore_tenants_anomalies(case when p_tenant_id is null then (select array_agg(t.id) from kpi.tenants t)
                                            else array[p_tenant_id] end)
$$;


--
-- Name: FUNCTION rescore_all_anomalies(p_tenant_id uuid); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.rescore_all_anomalies(p_tenant_id uuid) IS 'Re-scores every week of one tenant (or of all, in this one transaction): the detection from scratch. Returns how many anomalies it inserted or changed. Example: select kpi.rescore_all_anomalies();';


--
-- Name: rescore_anomalies(uuid[], date[], text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.rescore_anomalies(p_tenant_ids uuid[], p_weeks date[], p_kpis text DEFAULT 'built_in'::text) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    SET jit TO 'off'
    SET plan_cache_mode TO 'auto'
    AS $_$
declare
  changed integer;
  built_in constant boolean := p_kpis = 'built_in';
begin
  if p_kpis is null or p_kpis not in ('built_in', 'custom') then
    raise exception 'kpi.rescore_anomalies: p_kpis is built_in or custom, not %', p_kpis;
  end if;
  execute $score$
  -- ($1, $2: the (tenant, week) pairs; $3: true for the built-in KPIs, false for the custom ones.)
  with given as (
    select x.*, exists (select from kpi.tenant_anomaly_rules o where o.tenant_id = x.tenant_id) as overridden
    from (select g.tenant_id, min(g.as_of) as first_week, max(g.as_of) as last_week
          from unnest($1::uuid[], $2::date[]) as g (tenant_id, as_of)
          group by g.tenant_id) x
  ),
  -- The default rule's minimum differences, by the KPI's place in
  -- kpi.built_in_kpis() (and the custom KPIs' rule): what values of a tenant without rules of its
  -- own are ruled out by before anything else (kpi.anomaly_ruled_out), so that only the few that
  -- are not go further.
  default_rule as materialized (
    select array_agg(d.min_delta order by k.place) as min_delta,
           array_agg(d.min_delta_of_median order by k.place) as min_delta_of_median,
           (select c.min_delta from kpi.anomaly_rules c where c.kpi = 'custom') as custom_min_delta,
           (select c.min_delta_of_median from kpi.anomaly_rules c where c.kpi = 'custom') as custom_min_delta_of_median
    from unnest(kpi.built_in_kpis()) with ordinality as k (kpi, place)
    left join kpi.anomaly_rules d on d.kpi = k.kpi
  ),
  -- Per week and KPI: its value, and how many of the 12 weeks before have one, with the least and
  -- the greatest — nothing sorted or copied yet — kept only where the default rule does not rule
  -- the value out (every value, for a tenant with rules of its own): a few percent of them. The
  -- weeks to score by one index range scan per tenant, from its first week to 12 after its last;
  -- each week's 12 weeks before by a second one, summarized by a plain aggregate — the same form
  -- as the custom KPIs' below. (Laterals that cannot be flattened: without them the planner, which
  -- cannot know how many tenants it is given, hashes the whole table instead.)
  --
  -- Not a window over one scan from 12 weeks before the first week: a frame is aggregated again
  -- for every row of the scan (min and max cannot take a row back out), and the daily fill scores
  -- one week a tenant, so 12 of its 13 rows were summarized for nothing. Measured at 20,000
  -- tenants (the summary and the cheap rule, alone): the daily shape 0.94–1.38 s → 0.44–0.58 s, a
  -- first fill 0.14–0.20 s → 0.10–0.13 s, a backfill's 102,000 weeks of 2,000 tenants
  -- 1.02–1.29 s → 1.37–2.00 s (a probe a week where the window read each row once). Over numeric:
  -- a plain aggregate copies a value only when it is a new least or greatest (the window summed
  -- whole cents as bigint to spare the copies its restarts made). The rule is tested per KPI on each
  -- week, and a week becomes one row per KPI only where one passes (unpivoting every week first
  -- cost more than the test). Each OFFSET 0 keeps a subquery from being pulled up, which would
  -- evaluate its expressions again for every row that uses them.
  scored as materialized (
    select b.tenant_id, b.as_of, k.kpi, k.value, k.n, k.lo, k.hi
    from (
      select h.*, s.*,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.aiv_pct, s.aiv_lo, s.aiv_hi, f.min_delta[1], f.min_delta_of_median[1])) as aiv_in,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.ati_pct, s.ati_lo, s.ati_hi, f.min_delta[2], f.min_delta_of_median[2])) as ati_in,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.crs_pct, s.crs_lo, s.crs_hi, f.min_delta[3], f.min_delta_of_median[3])) as crs_in,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.elasticity_usd_per_point, s.elasticity_lo, s.elasticity_hi, f.min_delta[4], f.min_delta_of_median[4])) as elasticity_in,
             h.vli_integrity_pct is not null and s.vli_n >= 8
               and (g.overridden or not kpi.anomaly_ruled_out(h.vli_integrity_pct, s.vli_lo, s.vli_hi, f.min_delta[5], f.min_delta_of_median[5])) as vli_in,
             h.hrp_pct is not null and s.hrp_n >= 8
               and (g.overridden or not kpi.anomaly_ruled_out(h.hrp_pct, s.hrp_lo, s.hrp_hi, f.min_delta[6], f.min_delta_of_median[6])) as hrp_in
      from given g
      cross join lateral (
        -- (A fallback VLI is no measurement: neither scored nor in a baseline.)
        select h.tenant_id, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
               case when not h.vli_is_fallback then h.vli_integrity_pct end as vli_integrity_pct, h.hrp_pct
        from kpi.kpi_history h
        where $3 and h.tenant_id = g.tenant_id and h.as_of >= g.first_week and h.as_of <= g.last_week + 84
        offset 0
      ) h
      cross join lateral (
        -- (AIV, ATI, CRS and elasticity are never NULL in the history: one count serves the four.)
        select count(*) as weeks_n,
               min(b.aiv_pct) as aiv_lo, max(b.aiv_pct) as aiv_hi,
               min(b.ati_pct) as ati_lo, max(b.ati_pct) as ati_hi,
               min(b.crs_pct) as crs_lo, max(b.crs_pct) as crs_hi,
               min(b.elasticity_usd_per_point) as elasticity_lo, max(b.elasticity_usd_per_point) as elasticity_hi,
               count(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_n,
               min(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_lo,
               max(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_hi,
               count(b.hrp_pct) as hrp_n, min(b.hrp_pct) as hrp_lo, max(b.hrp_pct) as hrp_hi
        from kpi.kpi_history b
        where b.tenant_id = h.tenant_id and b.as_of >= h.as_of - 84 and b.as_of < h.as_of
      ) s
      cross join default_rule f
      offset 0
    ) b
    -- (Each KPI in its place in kpi.built_in_kpis(), the subscripts of the rule's arrays above.)
    cross join lateral (values
      ('aiv_pct', b.aiv_in, b.aiv_pct, b.weeks_n, b.aiv_lo, b.aiv_hi),
      ('ati_pct', b.ati_in, b.ati_pct, b.weeks_n, b.ati_lo, b.ati_hi),
      ('crs_pct', b.crs_in, b.crs_pct, b.weeks_n, b.crs_lo, b.crs_hi),
      ('elasticity_usd_per_point', b.elasticity_in, b.elasticity_usd_per_point, b.weeks_n, b.elasticity_lo, b.elasticity_hi),
      ('vli_integrity_pct', b.vli_in, b.vli_integrity_pct, b.vli_n, b.vli_lo, b.vli_hi),
      ('hrp_pct', b.hrp_in, b.hrp_pct, b.hrp_n, b.hrp_lo, b.hrp_hi)) as k (kpi, kept, value, n, lo, hi)
    where (b.aiv_in or b.ati_in or b.crs_in or b.elasticity_in or b.vli_in or b.hrp_in) and k.kept
    union all
    -- Custom KPIs: the keys in each week's values, and the same summary of the 12 weeks before
    -- from one index range scan per week for all its keys. Whether a key's definition is still
    -- active is asked in `candidates`, for the few values that get there: asked here, for every
    -- tenant given, it was the costliest step of a fill that scores nothing (a first fill: no
    -- baseline yet).
    select w.tenant_id, w.as_of, s.key, (w.kpi_values ->> s.key)::numeric, s.n, s.lo, s.hi
    from given g
    cross join lateral (
      select w.* from kpi.custom_kpi_weeks w
      where w.tenant_id = g.tenant_id and w.as_of >= g.first_week and w.as_of <= g.last_week + 84
      offset 0
    ) w
    cross join lateral (
      select e.key, count(e.v) as n, min(e.v) as lo, max(e.v) as hi
      from kpi.custom_kpi_weeks b
      cross join lateral (select x.key, (x.value #>> '{}')::numeric as v from jsonb_each(b.kpi_values) x) e
      where b.tenant_id = w.tenant_id and b.as_of >= w.as_of - 84 and b.as_of < w.as_of and w.kpi_values ? e.key
      group by e.key
    ) s
    cross join default_rule f
    where not $3 and (w.kpi_values ->> s.key) is not null and s.n >= 8
      and (g.overridden
           or not kpi.anomaly_ruled_out((w.kpi_values ->> s.key)::numeric, s.lo, s.hi, f.custom_min_delta, f.custom_min_delta_of_median))
  ),
  -- The rule in force (the tenant's own, else the default), and the cheap half of it again
  -- (kpi.anomaly_ruled_out) for the tenants with rules of their own. Materialized, so that what
  -- follows runs only for what passes.
  candidates as materialized (
    select x.tenant_id, x.as_of, x.kpi, x.value, r.threshold, r.min_delta, r.min_delta_of_median
    from scored x
    join kpi.anomaly_rules d on d.kpi = case when $3 then x.kpi else 'custom' end
    left join kpi.tenant_anomaly_rules o on o.tenant_id = x.tenant_id and o.kpi = d.kpi
    cross join lateral (
      select coalesce(o.enabled, true) as enabled, coalesce(o.threshold, d.threshold) as threshold,
             coalesce(o.min_delta, d.min_delta, 0) as min_delta,
             coalesce(o.min_delta_of_median, d.min_delta_of_median, 0) as min_delta_of_median
    ) r
    where r.enabled and not kpi.anomaly_ruled_out(x.value, x.lo, x.hi, r.min_delta, r.min_delta_of_median)
      -- (A custom key is scored while its definition is active: a week written while its
      -- definition was deleted or deactivated may still hold it.)
      and ($3 or exists (select from kpi.custom_kpis c where c.tenant_id = x.tenant_id and c.key = x.kpi and c.active))
  ),
  -- The candidates' baselines, sorted (a second index range scan, for the few that got here); the
  -- median is the middle value, or the mean of the two middle ones; the MAD the same of the
  -- absolute deviations from it. Materialized, and the baseline behind OFFSET 0: otherwise the
  -- planner pulls the baseline's subquery up into every expression that uses it and reads the
  -- baseline once for each — six reads a candidate (measured: 5 ms a candidate instead of 0.05
  -- before the CTE; re-scoring 2,000 tenants' whole histories 12.1 s → 6.0 s for the OFFSET).
  medians as materialized (
    select c.*, s.sorted, cardinality(s.sorted) as n,
           round((s.sorted[(cardinality(s.sorted) + 1) / 2] + s.sorted[(cardinality(s.sorted) + 2) / 2]) / 2, 4) as median
    from candidates c
    cross join lateral (select kpi.baseline_values(c.tenant_id, c.as_of, c.kpi) as sorted offset 0) s
  ),
  found as (
    select m.tenant_id, m.as_of, m.kpi, m.value, m.n, m.median, s.mad, m.threshold, z.score
    from medians m
    cross join lateral (
      select round((d.deviations[(m.n + 1) / 2] + d.deviations[(m.n + 2) / 2]) / 2, 4) as mad, d.mean_ad
      from (select array_agg(abs(v - m.median) order by abs(v - m.median)) as deviations, avg(abs(v - m.median)) as mean_ad
            from unnest(m.sorted) as v) d
    ) s
    -- Iglewicz & Hoaglin: 0.6745 (x − median) / MAD; with MAD 0, the mean absolute deviation
    -- scaled to match (1.253314); with no spread at all, any difference is infinite.
    cross join lateral (
      select case when s.mad > 0 then 0.6745 * (m.value - m.median) / s.mad
                  when s.mean_ad > 0 then (m.value - m.median) / (1.253314 * s.mean_ad)
                  when m.value > m.median then 'Infinity'::numeric
                  when m.value < m.median then '-Infinity'::numeric
                  else 0 end as score
    ) z
    where abs(m.value - m.median) >= greatest(m.min_delta, m.min_delta_of_median * abs(m.median))
      and abs(z.score) > m.threshold
  ),
  -- The anomalies there are for the re-scored weeks, of this kind of KPI.
  existing as materialized (
    select a.tenant_id, a.as_of, a.kpi
    from given g
    join kpi.kpi_anomalies a on a.tenant_id = g.tenant_id and a.as_of >= g.first_week and a.as_of <= g.last_week + 84
    where (a.kpi = any (kpi.built_in_kpis())) = $3
  ),
  -- Whether each anomaly found is news: new, or its value, baseline, score or direction moved. One
  -- that only met another threshold (a rule changed, the same anomaly still) is updated quietly:
  -- no new alert, and detected_at stays.
  judged as (
    select f.*, case when f.value > f.median then 'up' else 'down' end as direction,
           a.tenant_id is null
             or (a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction)
                is distinct from (f.value, f.median, f.mad, f.n, f.score::float8, case when f.value > f.median then 'up' else 'down' end)
             as news
    from found f
    left join kpi.kpi_anomalies a on a.tenant_id = f.tenant_id and a.as_of = f.as_of and a.kpi = f.kpi
  ),
  upserted as (
    insert into kpi.kpi_anomalies as a (tenant_id, as_of, kpi, value, baseline_median, baseline_mad, baseline_weeks,
                                        score, direction, threshold, run_id)
    select j.tenant_id, j.as_of, j.kpi, j.value, j.median, j.mad, j.n, j.score::float8, j.direction, j.threshold,
           (select max(r.id) from kpi.kpi_runs r where r.backend_pid = pg_backend_pid() and r.status = 'running')
    from judged j
    order by j.tenant_id, j.as_of, j.kpi
    on conflict (tenant_id, as_of, kpi) do update set
      value = excluded.value, baseline_median = excluded.baseline_median, baseline_mad = excluded.baseline_mad,
      baseline_weeks = excluded.baseline_weeks, score = excluded.score, direction = excluded.direction,
      threshold = excluded.threshold,
      detected_at = case when (a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction)
                              is distinct from (excluded.value, excluded.baseline_median, excluded.baseline_mad,
                                                excluded.baseline_weeks, excluded.score, excluded.direction)
                         then now() else a.detected_at end,
      run_id = excluded.run_id
    where (a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction, a.threshold)
          is distinct from
          (excluded.value, excluded.baseline_median, excluded.baseline_mad, excluded.baseline_weeks, excluded.score,
           excluded.direction, excluded.threshold)
    returning a.tenant_id, a.as_of, a.kpi, a.value, a.baseline_median, a.baseline_mad, a.score, a.direction,
              a.threshold, a.detected_at
  ),
  removed as (
    -- Anomalies of the re-scored weeks that a from-scratch detection would not find (their
    -- alerts go with them: a pending alert about something no longer true is never sent). A
    -- set difference: hashed, whatever the number of anomalies on either side.
    delete from kpi.kpi_anomalies a
    using (select tenant_id, as_of, kpi from existing except select tenant_id, as_of, kpi from judged) gone
    where a.tenant_id = gone.tenant_id and a.as_of = gone.as_of and a.kpi = gone.kpi
    returning 1
  ),
  alerted as (
    insert into kpi.alerts (tenant_id, as_of, kpi, payload, status, finished_at)
    select u.tenant_id, u.as_of, u.kpi,
           jsonb_build_object(
             'tenant', jsonb_build_object('id', u.tenant_id, 'slug', (select t.slug from kpi.tenants t where t.id = u.tenant_id)),
             'as_of', u.as_of, 'kpi', u.kpi, 'value', u.value, 'baseline_median', u.baseline_median,
             'baseline_mad', u.baseline_mad, 'score', u.score, 'threshold', u.threshold, 'direction', u.direction,
             'detected_at', kpi.utc_iso(u.detected_at)),
           case when u.as_of < (now() at time zone 'UTC')::date - s.max_alert_age then 'suppressed' else 'pending' end,
           case when u.as_of < (now() at time zone 'UTC')::date - s.max_alert_age then now() end
    from upserted u
    join judged j on j.tenant_id = u.tenant_id and j.as_of = u.as_of and j.kpi = u.kpi and j.news
    cross join kpi.alert_settings s
    order by u.tenant_id, u.as_of, u.kpi
    returning 1
  )
  -- (Every data-modifying part runs whether or not it is read.)
  select count(*) from upserted
  $score$
  into changed
  using p_tenant_ids, p_weeks, built_in;
  -- For the run result: how many anomalies this transaction's writes inserted or changed.
  perform set_config('kpi.anomalies_changed', (kpi.anomalies_changed() + changed)::text, true);
  return changed;
end
$_$;


--
-- Name: FUNCTION rescore_anomalies(p_tenant_ids uuid[], p_weeks date[], p_kpis text); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.rescore_anomalies(p_tenant_ids uuid[], p_weeks date[], p_kpis text) IS 'Re-scores the given (tenant, week) pairs and the 12 weeks after each, built-in KPIs (p_kpis => ''built_in'', the default) or custom ones (''custom''), so that kpi_anomalies equals a from-scratch detection for them; enqueues an alert per new or changed anomaly. Returns how many anomalies it inserted or changed. Example: select kpi.rescore_anomalies(array[''<tenant uuid>''::uuid], array[''2026-01-05''::date]);';


--
-- Name: rescore_tenants_anomalies(uuid[]); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.rescore_tenants_anomalies(p_tenant_ids uuid[]) RETURNS integer
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  -- Each tenant's first and last week: the rescoring covers every week between. No tenant with a
  -- history: nothing to run.
  select coalesce((
    select kpi.rescore_anomalies(x.tenant_ids, x.weeks, 'built_in') + kpi.rescore_anomalies(x.tenant_ids, x.weeks, 'custom')
    from (
      select array_agg(h.tenant_id) as tenant_ids, array_agg(w.as_of) as weeks
      from (select k.tenant_id, min(k.as_of) as first_week, max(k.as_of) as last_week from kpi.kpi_history k
            where k.tenant_id = any (p_tenant_ids) group by k.tenant_id) h
      cross join lateral (values (h.first_week), (h.last_week)) w (as_of)
    ) x
    where x.tenant_ids is not null), 0)
$$;


--
-- Name: retire_cron_secrets(integer); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.retire_cron_secrets(keep integer DEFAULT 1) RETURNS jsonb
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  with retired as (
    update kpi.cron_secrets set retired_at = clock_timestamp()
    where retired_at is null
      and id not in (select id from kpi.cron_secrets where retired_at is null order by id desc limit greatest(keep, 0))
    returning 1)
  select jsonb_build_object('retired', (select count(*) from retired),
    'active_secrets', (select count(*) from kpi.cron_secrets where retired_at is null) - (select count(*) from retired))
$$;


--
-- Name: FUNCTION retire_cron_secrets(keep integer); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.retire_cron_secrets(keep integer) IS 'Retires all active cron secrets but the newest `keep` (default 1): the last step of a rotation.';


--
-- Name: run_backfill(text, date, date, integer, uuid); Type: PROCEDURE; Schema: kpi; Owner: -
--

CREATE PROCEDURE kpi.run_backfill(IN tenant text DEFAULT NULL::text, IN "from" date DEFAULT NULL::date, IN "to" date DEFAULT NULL::date, IN batch_size integer DEFAULT 1000, IN resume_after uuid DEFAULT NULL::uuid)
    LANGUAGE plpgsql
    AS $$
declare
  run_id bigint;
  tenant_id uuid;
  result jsonb := '{}';
  batch jsonb;
  batches integer := 0;
  next_tenant uuid := resume_after;
  failed_sqlstate text;
  failed_message text;
begin
  commit;
  if "from" > "to" then
    perform kpi.raise_error('INVALID_INPUT', format('"from" (%s) is after "to" (%s)', "from", "to"));
  end if;
  if batch_size is null or batch_size < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'batch_size must be at least 1');
  end if;
  if tenant is not null then
    tenant_id := kpi.tenant_id_of(tenant);
  end if;
  run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
  update kpi.kpi_runs set details = jsonb_build_object('batches', 0, 'batch_size', batch_size, 'resumed_after', resume_after) where id = run_id;
  commit;
  raise notice 'backfill run %: started (kpi.kpi_runs id %)', run_id, run_id;
  loop
    perform pg_advisory_xact_lock(1263552840, 1);
    begin
      if tenant_id is not null then
        batch := kpi.execute_fill(run_id, 'range', array[tenant_id], "from", "to") || '{"next_tenant": null}';
      else
        batch := kpi.backfill_batch(run_id, next_tenant, batch_size, "from", "to");
      end if;
    exception when others then
      failed_sqlstate := sqlstate;
      failed_message := sqlerrm;
    end;
    if failed_sqlstate is not null then
      -- (A transaction cannot end inside a block with an exception handler: here, after it.)
      perform kpi.fail_run(run_id, failed_sqlstate, failed_message);
      commit;
      perform kpi.report_run_outcome(run_id);
    end if;
    batches := batches + 1;
    result := kpi.add_run_results(result, batch - 'next_tenant');
    next_tenant := (batch ->> 'next_tenant')::uuid;
    update kpi.kpi_runs r set ok_count = (result ->> 'ok')::int, total_count = (result ->> 'total')::int,
                              rows_written = (result ->> 'rows_written')::int, errors = coalesce(result -> 'errors', '[]'),
                              warnings = coalesce(result -> 'warnings', '[]'),
                              details = r.details || jsonb_build_object('batches', batches, 'next_tenant', next_tenant)
    where r.id = run_id;
    commit;
    raise notice 'backfill run %: batch % done, % tenants, % rows written so far', run_id, batches,
      coalesce(result ->> 'total', '0'), coalesce(result ->> 'rows_written', '0');
    exit when next_tenant is null;
  end loop;
  result := result || jsonb_build_object(
    'status', case when coalesce(result -> 'errors', '[]') = '[]'::jsonb then 'ok' else 'partial' end, 'run_id', run_id);
  perform kpi.finish_kpi_run(run_id, result ->> 'status', result);
  commit;
  perform kpi.report_run_outcome(run_id);
end
$$;


--
-- Name: PROCEDURE run_backfill(IN tenant text, IN "from" date, IN "to" date, IN batch_size integer, IN resume_after uuid); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON PROCEDURE kpi.run_backfill(IN tenant text, IN "from" date, IN "to" date, IN batch_size integer, IN resume_after uuid) IS 'Backfills [from, to] for every tenant (or one, by slug or id) in batches of batch_size tenants, each committed with the progress in kpi.kpi_runs and a NOTICE; a cancel keeps the finished batches, and resume_after => (details ->> ''next_tenant'') of that run goes on. Call it outside a transaction block. Example: call kpi.run_backfill("from" => ''2024-01-01'');';


--
-- Name: run_rescore_anomalies(text, integer, uuid); Type: PROCEDURE; Schema: kpi; Owner: -
--

CREATE PROCEDURE kpi.run_rescore_anomalies(IN tenant text DEFAULT NULL::text, IN batch_size integer DEFAULT 500, IN resume_after uuid DEFAULT NULL::uuid)
    LANGUAGE plpgsql
    AS $$
declare
  run_id bigint;
  only_tenant uuid;
  batch uuid[];
  total bigint;
  done bigint := 0;
  changed bigint := 0;
  batches integer := 0;
  next_tenant uuid := resume_after;
  failed_sqlstate text;
  failed_message text;
begin
  commit;
  if batch_size is null or batch_size < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'batch_size must be at least 1');
  end if;
  if tenant is not null then
    only_tenant := kpi.tenant_id_of(tenant);
  end if;
  run_id := kpi.start_kpi_run('rescore', only_tenant, null, null);
  select count(*) into total from kpi.tenants t
  where (only_tenant is null or t.id = only_tenant) and (resume_after is null or t.id > resume_after);
  update kpi.kpi_runs set total_count = total, ok_count = 0, rows_written = 0,
    details = jsonb_strip_nulls(jsonb_build_object('batch_size', batch_size, 'resumed_after', resume_after))
  where id = run_id;
  commit;
  raise notice 'rescore run %: started, % tenants', run_id, total;
  loop
    select array_agg(s.id order by s.id) into batch
    from (select t.id from kpi.tenants t
          where (only_tenant is null or t.id = only_tenant) and (next_tenant is null or t.id > next_tenant)
          order by t.id limit batch_size) s;
    exit when batch is null;
    begin
      changed := changed + kpi.rescore_tenants_anomalies(batch);
    exception when others then
      failed_sqlstate := sqlstate;
      failed_message := sqlerrm;
    end;
    if failed_sqlstate is not null then
      perform kpi.fail_run(run_id, failed_sqlstate, failed_message);
      update kpi.kpi_runs r set ok_count = done where r.id = run_id;
      commit;
      perform kpi.report_run_outcome(run_id);
    end if;
    done := done + cardinality(batch);
    batches := batches + 1;
    next_tenant := batch[cardinality(batch)];
    update kpi.kpi_runs r set ok_count = done,
      details = r.details || jsonb_build_object('batches', batches, 'next_tenant', next_tenant, 'anomalies_changed', changed)
    where r.id = run_id;
    commit;
    raise notice 'rescore run %: batch % done, % of % tenants, % anomalies changed so far', run_id, batches, done, total, changed;
  end loop;
  update kpi.kpi_runs r set status = 'ok', finished_at = clock_timestamp() where r.id = run_id;
  commit;
  perform kpi.report_run_outcome(run_id);
end
$$;


--
-- Name: PROCEDURE run_rescore_anomalies(IN tenant text, IN batch_size integer, IN resume_after uuid); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON PROCEDURE kpi.run_rescore_anomalies(IN tenant text, IN batch_size integer, IN resume_after uuid) IS 'Re-scores every tenant''s anomalies (or one tenant''s, by slug or id) in batches of batch_size tenants, each committed with its progress in kpi.kpi_runs (kind rescore) and a NOTICE; a cancel keeps the finished batches, and resume_after => (details ->> ''next_tenant'') of that run goes on. Call it outside a transaction block. Example: call kpi.run_rescore_anomalies();';


--
-- Name: run_result(jsonb); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.run_result(p_result jsonb) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    RETURN (((((((p_result - 'written'::text) - 'errors'::text) - 'warnings'::text) || jsonb_build_object('errors', (SELECT COALESCE(jsonb_agg(x.e), '[]'::jsonb) AS "coalesce" FROM (SELECT e.value AS e FROM jsonb_array_elements(COALESCE((run_result.p_result -> 'errors'::text), '[]'::jsonb)) e(value) LIMIT 100) x), 'warnings', (SELECT COALESCE(jsonb_agg(x.w), '[]'::jsonb) AS "coalesce" FROM (SELECT w.value AS w FROM jsonb_array_elements(COALESCE((run_result.p_result -> 'warnings'::text), '[]'::jsonb)) w(value) LIMIT 100) x))) || CASE WHEN (jsonb_array_length(COALESCE((p_result -> 'errors'::text), '[]'::jsonb)) > 0) THEN jsonb_build_object('error_counts', (SELECT jsonb_object_agg(c.code, c.n) AS jsonb_object_agg FROM (SELECT (e.value ->> 'code'::text) AS code, count(*) AS n FROM jsonb_array_elements((run_result.p_result -> 'errors'::text)) e(value) GROUP BY (e.value ->> 'code'::text)) c)) ELSE '{}'::jsonb END) || CASE WHEN (jsonb_array_length(COALESCE((p_result -> 'warnings'::text), '[]'::jsonb)) > 0) THEN jsonb_build_object('warning_counts', (SELECT jsonb_object_agg(c.code, c.n) AS jsonb_object_agg FROM (SELECT (w.value ->> 'code'::text) AS code, count(*) AS n FROM jsonb_array_elements((run_result.p_result -> 'warnings'::text)) w(value) GROUP BY (w.value ->> 'code'::text)) c)) ELSE '{}'::jsonb END) || CASE WHEN ((jsonb_array_length(COALESCE((p_result -> 'errors'::text), '[]'::jsonb)) > 100) OR (jsonb_array_length(COALESCE((p_result -> 'warnings'::text), '[]'::jsonb)) > 100)) THEN jsonb_build_object('complete_lists', format('select errors, warnings from kpi.kpi_runs where id = %s'::text, (p_result ->> 'run_id'::text))) ELSE '{}'::jsonb END);


--
-- Name: run_scheduled_kpi_fill(boolean); Type: PROCEDURE; Schema: kpi; Owner: -
--

CREATE PROCEDURE kpi.run_scheduled_kpi_fill(IN "full" boolean DEFAULT false)
    LANGUAGE plpgsql
    AS $$
declare
  run_id bigint;
  result jsonb;
begin
  commit;
  run_id := kpi.start_kpi_run('fill_all', null, null, null);
  commit;
  if not kpi.try_lock_all_tenants() then
    perform kpi.skipped_run('fill_all', null, null, run_id);
    commit;
  else
    result := kpi.execute_fill_all(run_id, coalesce(run_scheduled_kpi_fill.full, false));
    commit;
  end if;
  perform kpi.report_run_outcome(run_id);
end
$$;


--
-- Name: PROCEDURE run_scheduled_kpi_fill(IN "full" boolean); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON PROCEDURE kpi.run_scheduled_kpi_fill(IN "full" boolean) IS 'What pg_cron runs: daily the incremental fill, weekly (full => true) the reconciliation; the run logged as running first. Says its run id and outcome in a NOTICE; a failed run raises INTERNAL_ERROR (KH500) after its row is committed, so the job fails. Call it outside a transaction block (it commits as it goes). Example: call kpi.run_scheduled_kpi_fill();';


--
-- Name: run_source_cleanup(integer); Type: PROCEDURE; Schema: kpi; Owner: -
--

CREATE PROCEDURE kpi.run_source_cleanup(IN batch_size integer DEFAULT 1000)
    LANGUAGE plpgsql
    AS $$
declare
  run_id bigint;
  as_of timestamptz;
  source text;
  deleted bigint;
  from_tenant uuid;
  started timestamptz;
  batch_ms numeric;
  counts jsonb := '{"avi_reports": 0, "vli_audits": 0, "clarity_reports": 0}';
  batches integer := 0;
  longest_ms numeric := 0;
  total_ms numeric := 0;
begin
  commit;
  if batch_size is null or batch_size < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'batch_size must be at least 1');
  end if;
  run_id := kpi.start_kpi_run('cleanup', null, null, null);
  as_of := now();
  -- Committed before the first row goes: from now on no fill recomputes a week that may lose them.
  update kpi.retention_state set last_cleanup_as_of = as_of;
  commit;
  foreach source in array array['avi_reports', 'vli_audits', 'clarity_reports'] loop
    from_tenant := '00000000-0000-0000-0000-000000000000';
    while from_tenant is not null loop
      started := clock_timestamp();
      select d.deleted, d.next_tenant into deleted, from_tenant
      from kpi.delete_expired_sources(source, as_of, from_tenant, batch_size) d;
      batch_ms := round(extract(epoch from clock_timestamp() - started) * 1000, 3);
      batches := batches + 1;
      longest_ms := greatest(longest_ms, batch_ms);
      total_ms := total_ms + batch_ms;
      counts := jsonb_set(counts, array[source], to_jsonb((counts ->> source)::bigint + deleted));
      -- Progress, committed with the batch: the log shows how far a cleanup got.
      update kpi.kpi_runs r
      set details = jsonb_build_object('deleted', counts, 'rows_deleted', (select sum(value::bigint) from jsonb_each_text(counts)), 'batches', batches, 'longest_batch_ms', longest_ms,
                                       'total_batch_ms', total_ms, 'batch_size', batch_size, 'as_of', kpi.utc_iso(as_of)),
          -- A cleanup writes no history: what it deleted is in details.
          rows_written = 0
      where r.id = run_id;
      commit;
    end loop;
  end loop;
  update kpi.kpi_runs r set status = 'ok', finished_at = clock_timestamp() where r.id = run_id;
  commit;
end
$$;


--
-- Name: PROCEDURE run_source_cleanup(IN batch_size integer); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON PROCEDURE kpi.run_source_cleanup(IN batch_size integer) IS 'Deletes source reports older than each tenant''s retention (plan or override), in batches of batch_size rows, each its own transaction; never the rows the history still needs. Logged in kpi.kpi_runs (kind cleanup, details.deleted). Run daily by pg_cron. Example: call kpi.run_source_cleanup();';


--
-- Name: schedule_plan(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.schedule_plan() RETURNS TABLE(job text, cron text, command text)
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
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


--
-- Name: FUNCTION schedule_plan(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.schedule_plan() IS 'The pg_cron jobs kpi-history needs (name, schedule in GMT, command), created by the definitions where pg_cron is in this database, else by db/setup/schedule_in_database.sql.';


--
-- Name: scheduled_jobs(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.scheduled_jobs() RETURNS TABLE(job text, cron text, active boolean, last_status text, last_message text, last_start timestamp with time zone)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $_$
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
$_$;


--
-- Name: score_written_weeks(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.score_written_weeks() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if tg_op = 'DELETE' then
    delete from kpi.kpi_anomalies a using old_rows o
    where a.tenant_id = o.tenant_id and a.as_of = o.as_of and not a.kpi = any (kpi.built_in_kpis());
  else
    perform kpi.rescore_anomalies(array_agg(w.tenant_id), array_agg(w.as_of), tg_argv[0]) from new_rows w having count(*) > 0;
  end if;
  return null;
end
$$;


--
-- Name: skipped_run(text, date, date, bigint); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.skipped_run(p_kind text, p_from date, p_to date, p_run_id bigint DEFAULT NULL::bigint) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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


--
-- Name: source_horizon(integer, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.source_horizon(retention_days integer, purged_before timestamp with time zone, last_cleanup timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN GREATEST(COALESCE(purged_before, '-infinity'::timestamp with time zone), COALESCE((last_cleanup - make_interval(days => retention_days)), '-infinity'::timestamp with time zone));


--
-- Name: plans; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.plans (
    plan text NOT NULL,
    source_retention_days integer,
    description text NOT NULL,
    CONSTRAINT plans_name_format CHECK ((plan ~ '^[a-z][a-z0-9_-]{0,39}$'::text)),
    CONSTRAINT plans_source_retention_positive CHECK ((source_retention_days > 0))
);

ALTER TABLE ONLY kpi.plans FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE plans; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.plans IS 'Tenant plans and how long each keeps its source reports (NULL days: forever). Editable data.';


--
-- Name: source_retention_days(integer, text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.source_retention_days(tenant_override integer, plan text) RETURNS integer
    LANGUAGE sql STABLE
    SET search_path TO ''
    RETURN COALESCE(tenant_override, (SELECT p.source_retention_days FROM kpi.plans p WHERE (p.plan = source_retention_days.plan)));


--
-- Name: source_table_layout(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.source_table_layout(source text, OUT key_columns text, OUT before_cutoff text) RETURNS record
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $_$
  select l.key_columns, l.before_cutoff
  from (values ('avi_reports', 'week_start', $c$k.week_start <= (c.cutoff at time zone 'UTC')::date - 7$c$),
               ('vli_audits', 'audited_at, id', 'k.audited_at < c.cutoff'),
               ('clarity_reports', 'measured_at, id', 'k.measured_at < c.cutoff')) l (source, key_columns, before_cutoff)
  where l.source = source_table_layout.source
$_$;


--
-- Name: start_kpi_run(text, uuid, date, date, text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.start_kpi_run(p_kind text, p_tenant_id uuid, p_from date, p_to date, p_status text DEFAULT 'running'::text) RETURNS bigint
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  insert into kpi.kpi_runs (kind, tenant_id, range_from, range_to, trigger, application_name, status, finished_at)
  values (p_kind, p_tenant_id, p_from, p_to, kpi.current_trigger(), nullif(current_setting('application_name'), ''),
          p_status, case when p_status <> 'running' then clock_timestamp() end)
  returning id
$$;


--
-- Name: supabase_access_token_hook(jsonb); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.supabase_access_token_hook(event jsonb) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select jsonb_set(event, '{claims}', coalesce(event -> 'claims', '{}') || kpi.token_claims(kpi.uuid_or_null(event ->> 'user_id')))
$$;


--
-- Name: FUNCTION supabase_access_token_hook(event jsonb); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.supabase_access_token_hook(event jsonb) IS 'Supabase Auth custom access token hook (Authentication → Hooks): adds tenant_ids and tenant_roles (kpi.token_claims) to every access token. See docs/deploy.md.';


--
-- Name: tenant_id_of(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.tenant_id_of(tenant text) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  found uuid;
begin
  if tenant is null or btrim(tenant) = '' then
    perform kpi.raise_error('INVALID_INPUT', 'a tenant is required (its slug or its id)');
  end if;
  if kpi.uuid_or_null(tenant) is not null then
    select t.id into found from kpi.tenants t where t.id = kpi.uuid_or_null(tenant);
  else
    select s.tenant_id into found from kpi.tenant_slugs s where s.slug = lower(btrim(tenant));
  end if;
  if found is null then
    perform kpi.raise_error('UNKNOWN_TENANT', format('no tenant has the slug or id %s', left(tenant, 80)),
                            'select slug, id from kpi.tenants order by slug;');
  end if;
  return found;
end
$$;


--
-- Name: FUNCTION tenant_id_of(tenant text); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.tenant_id_of(tenant text) IS 'The id of the tenant with this slug or id; UNKNOWN_TENANT when there is none. Example: select kpi.tenant_id_of(''acme'');';


--
-- Name: tenants_failing(integer); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.tenants_failing(runs integer DEFAULT 3) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
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


--
-- Name: token_claims(uuid); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.token_claims(member uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select jsonb_build_object(
           'tenant_ids', coalesce(jsonb_agg(m.tenant_id order by m.tenant_id), '[]'),
           'tenant_roles', coalesce(jsonb_object_agg(m.tenant_id, m.role) filter (where m.role <> 'member'), '{}'))
  from kpi.tenant_members m
  where m.user_id = member
$$;


--
-- Name: FUNCTION token_claims(member uuid); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.token_claims(member uuid) IS 'The kpi-history claims of a user: {"tenant_ids": [...], "tenant_roles": {"<tenant id>": "kpi_admin"}}, from kpi.tenant_members.';


--
-- Name: track_source_changes(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.track_source_changes() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
declare
  week text := tg_argv[0];
  -- Old rows may belong to a tenant being deleted (a cascade): that one has no history left to
  -- bring up to date, and no record must outlive it.
  changed text := case tg_op when 'INSERT' then format('select tenant_id, %s as week from new_rows', week)
                             when 'DELETE' then format('select o.tenant_id, %s as week from old_rows o where exists (select from kpi.tenants t where t.id = o.tenant_id)', week)
                             else format('select tenant_id, %1$s as week from new_rows union all select o.tenant_id, %1$s from old_rows o where exists (select from kpi.tenants t where t.id = o.tenant_id)', week) end;
begin
  if not kpi.tracking_is_on() then
    return null;
  end if;
  execute format($q$
    insert into kpi.source_changes (tenant_ids, from_weeks)
    select array_agg(t.tenant_id), array_agg(t.week)
    from (select c.tenant_id, min(c.week) as week from (%s) c group by c.tenant_id) t
    having count(*) > 0$q$,
    changed);
  -- AVI reports also decide who has none (NO_AVI).
  if tg_table_name = 'avi_reports' then
    if tg_op in ('INSERT', 'UPDATE') then
      delete from kpi.tenants_without_avi w where w.tenant_id in (select n.tenant_id from new_rows n);
    end if;
    if tg_op in ('DELETE', 'UPDATE') then
      insert into kpi.tenants_without_avi (tenant_id)
      select distinct o.tenant_id from old_rows o
      where not exists (select from kpi.avi_reports r where r.tenant_id = o.tenant_id)
        and exists (select from kpi.tenants t where t.id = o.tenant_id)
      on conflict do nothing;
    end if;
  end if;
  return null;
end
$_$;


--
-- Name: track_tenants(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.track_tenants() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if tg_op = 'INSERT' then
    insert into kpi.tenants_without_avi (tenant_id)
    select n.id from new_tenants n where not exists (select from kpi.avi_reports r where r.tenant_id = n.id)
    on conflict do nothing;
    update kpi.tenant_count set tenants = tenants + (select count(*) from new_tenants);
  elsif tg_op = 'DELETE' then
    delete from kpi.tenants_without_avi w where w.tenant_id in (select o.id from old_tenants o);
    -- No foreign key: one checked per week written would cost the fill more than the week itself.
    delete from kpi.custom_kpi_weeks w using old_tenants o where w.tenant_id = o.id;
    update kpi.tenant_count set tenants = tenants - (select count(*) from old_tenants);
  else
    truncate kpi.tenants_without_avi, kpi.source_changes, kpi.custom_kpi_weeks;
    update kpi.tenant_count set tenants = 0;
  end if;
  return null;
end
$$;


--
-- Name: tracking_is_on(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.tracking_is_on() RETURNS boolean
    LANGUAGE sql STABLE
    RETURN (COALESCE(current_setting('kpi.tracking'::text, true), ''::text) <> 'off'::text);


--
-- Name: truncate_tenant_slugs(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.truncate_tenant_slugs() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  truncate kpi.tenant_slugs;
  return null;
end
$$;


--
-- Name: try_fill_kpi_history(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.try_fill_kpi_history(tenant text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  failed_sqlstate text;
  failed_message text;
  failed_hint text;
  known kpi.error_codes;
  run_id bigint;
  named uuid;
begin
  return kpi.fill_kpi_history(tenant);
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text, failed_hint = pg_exception_hint;
  begin
    named := kpi.tenant_id_of(tenant);
  exception when others then
    -- No such tenant: the log names what was asked for (an id as its tenant_id).
    named := kpi.uuid_or_null(tenant);
  end;
  select * into known from kpi.error_codes e where e.sqlstate = failed_sqlstate;
  if known.code is null then
    select * into known from kpi.error_codes e where e.code = 'INTERNAL_ERROR';
  end if;
  run_id := kpi.start_kpi_run('fill', named, null, null, 'failed');
  update kpi.kpi_runs r set total_count = 1, ok_count = 0, rows_written = 0,
    errors = jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
               'tenant_id', named, 'code', known.code, 'sqlstate', failed_sqlstate, 'message', failed_message,
               'hint', nullif(failed_hint, '')))),
    details = case when named is null then jsonb_build_object('tenant', left(tenant, 100)) end
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


--
-- Name: FUNCTION try_fill_kpi_history(tenant text); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.try_fill_kpi_history(tenant text) IS 'kpi.fill_kpi_history that logs a failure as a failed run and returns {"ok": false, "code", "http_status", "sqlstate", "message", "run_id"} instead of raising. Example: select kpi.try_fill_kpi_history(''acme'');';


--
-- Name: try_lock_all_tenants(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.try_lock_all_tenants() RETURNS boolean
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select pg_catalog.pg_try_advisory_xact_lock(1263552840, 1)
$$;


--
-- Name: utc_iso(timestamp with time zone); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.utc_iso(ts timestamp with time zone) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path TO ''
    RETURN ((to_json((ts AT TIME ZONE 'UTC'::text)) #>> '{}'::text[]) || '+00:00'::text);


--
-- Name: uuid_or_null(text); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.uuid_or_null(value text) RETURNS uuid
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $_$
  select case when btrim(value) ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then btrim(value)::uuid end
$_$;


--
-- Name: FUNCTION uuid_or_null(value text); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.uuid_or_null(value text) IS 'The uuid the text spells (any case, spaces around), else NULL. Example: select kpi.uuid_or_null(''acme'');';


--
-- Name: week_end(date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.week_end(week_start date) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (((week_start + 7))::timestamp without time zone AT TIME ZONE 'UTC'::text);


--
-- Name: write_custom_kpi_values(uuid[], date[]); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.write_custom_kpi_values(p_tenant_ids uuid[], p_weeks date[]) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    SET plan_cache_mode TO 'force_custom_plan'
    SET jit TO 'off'
    AS $$
declare
  stats jsonb;
begin
  with weeks as (
    select h.tenant_id, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point, h.vli_integrity_pct, h.hrp_pct,
           kpi.week_end(h.as_of - 7) as starts, kpi.week_end(h.as_of) as ends
    from unnest(p_tenant_ids, p_weeks) as w (tenant_id, as_of)
    cross join lateral (
      select h.* from kpi.kpi_history h where h.tenant_id = w.tenant_id and h.as_of = w.as_of
      offset 0 -- an index probe per week, never a hash of the whole history
    ) h
  ),
  computed as materialized (
    select w.tenant_id, w.as_of, m.kpi_values, m.problems
    from weeks w
    cross join lateral (
      -- Source KPIs: the aggregate over the week's rows (Monday 00:00 UTC to the next Monday).
      -- An AVI report is the week's own, one value. A clarity value counts when it is a JSON
      -- number; anything else but a missing key or null is counted as not a number (a warning).
      with sourced as (
        select d.key, d.valid_min, d.valid_max,
               case when d.source = 'avi' then
                      case when d.aggregate = 'count' then 1
                           else case d.field when 'aiv_pct' then w.aiv_pct when 'ati_pct' then w.ati_pct
                                             when 'crs_pct' then w.crs_pct else w.elasticity_usd_per_point end end
                    else a.value end as value,
               coalesce(a.not_numbers, 0) as not_numbers
        from kpi.custom_kpis d
        left join lateral (
          -- (latest: the greatest (time, id, value), arrays compared element by element: the value
          -- of the latest row, with no sort set up for every definition and week, as an ordered
          -- aggregate does; measured 5–10 % of this statement.)
          select case d.aggregate
                   when 'latest' then (max(array[extract(epoch from s.at), s.id, s.value]) filter (where s.value is not null))[3]
                   when 'avg' then avg(s.value)
                   when 'min' then min(s.value)
                   when 'max' then max(s.value)
                   when 'sum' then sum(s.value)
                   else count(s.value) end as value,
                 count(*) filter (where s.not_number) as not_numbers
          from (
            select c.measured_at as at, c.id,
                   case when jsonb_typeof(c.metrics #> d.path) = 'number' then (c.metrics #> d.path)::numeric end as value,
                   coalesce(jsonb_typeof(c.metrics #> d.path) not in ('number', 'null'), false) as not_number
            from kpi.clarity_reports c
            where d.source = 'clarity' and c.tenant_id = w.tenant_id and c.measured_at >= w.starts and c.measured_at < w.ends
            union all
            select v.audited_at, v.id, v.integrity_pct, false
            from kpi.vli_audits v
            where d.source = 'vli' and v.tenant_id = w.tenant_id and v.audited_at >= w.starts and v.audited_at < w.ends
          ) s
        ) a on d.source <> 'avi'
        where d.tenant_id = w.tenant_id and d.active and d.source is not null
      ),
      checked as (
        -- Outside its valid range, or beyond what is stored at all: NULL, with a warning.
        select s.key, s.not_numbers, s.value as computed,
               coalesce(s.value < s.valid_min or s.value > s.valid_max, false) or not kpi.custom_value_is_storable(s.value) as out_of_range
        from sourced s
      ),
      all_values as (
        select c.key, c.computed, c.out_of_range, c.not_numbers from checked c
        union all
        -- Combines: two weekly values, built-in (the history row) or custom (just computed,
        -- after its valid range).
        select d.key, x.value, x.out_of_range, 0
        from kpi.custom_kpis d
        cross join lateral (
          select case d.left_kpi when 'aiv_pct' then w.aiv_pct when 'ati_pct' then w.ati_pct when 'crs_pct' then w.crs_pct
                                 when 'elasticity_usd_per_point' then w.elasticity_usd_per_point
                                 when 'vli_integrity_pct' then w.vli_integrity_pct when 'hrp_pct' then w.hrp_pct
                                 else (select case when not c.out_of_range then c.computed end from checked c where c.key = d.left_kpi) end as left_value,
                 case d.right_kpi when 'aiv_pct' then w.aiv_pct when 'ati_pct' then w.ati_pct when 'crs_pct' then w.crs_pct
                                  when 'elasticity_usd_per_point' then w.elasticity_usd_per_point
                                  when 'vli_integrity_pct' then w.vli_integrity_pct when 'hrp_pct' then w.hrp_pct
                                  else (select case when not c.out_of_range then c.computed end from checked c where c.key = d.right_kpi) end as right_value
          -- (Kept apart: pulled up, each operand's expression was copied into every use of the
          -- value below, sixteen in all; measured on 19,600 weeks: 2.1 s → 1.4–2.0 s.)
          offset 0
        ) o
        cross join lateral (
          select r.value, coalesce(r.value < d.valid_min or r.value > d.valid_max, false) or not kpi.custom_value_is_storable(r.value) as out_of_range
          from (select case d.combine when 'difference' then o.left_value - o.right_value
                                      else o.left_value / nullif(o.right_value, 0) end as value) r
        ) x
        where d.tenant_id = w.tenant_id and d.active and d.combine is not null
      )
      select jsonb_object_agg(v.key, case when v.out_of_range then null else round(v.computed, 6) end) as kpi_values,
             jsonb_agg(jsonb_build_object('kpi', v.key, 'computed', v.computed, 'out_of_range', v.out_of_range, 'not_numbers', v.not_numbers))
               filter (where v.out_of_range or v.not_numbers > 0) as problems
      from all_values v
    ) m
    where m.kpi_values is not null
  ),
  written as (
    insert into kpi.custom_kpi_weeks as cw (tenant_id, as_of, kpi_values)
    select c.tenant_id, c.as_of, c.kpi_values
    from computed c
    -- The week there, by an index probe: unchanged values are neither written nor locked.
    left join lateral (
      select o.kpi_values from kpi.custom_kpi_weeks o where o.tenant_id = c.tenant_id and o.as_of = c.as_of limit 1
    ) existing on true
    where existing is null or existing.kpi_values is distinct from c.kpi_values
    order by c.tenant_id, c.as_of
    on conflict (tenant_id, as_of) do update set kpi_values = excluded.kpi_values, updated_at = now()
    where cw.kpi_values is distinct from excluded.kpi_values
    returning 1
  )
  select jsonb_build_object(
           'values', (select coalesce(sum((select count(*) from jsonb_object_keys(c.kpi_values))), 0) from computed c),
           'rows_written', (select count(*) from written),
           'warnings', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', c.tenant_id, 'as_of', c.as_of, 'code', 'INVALID_CUSTOM', 'kpi', p ->> 'kpi',
                      'message', case when (p ->> 'out_of_range')::boolean
                                      then format('custom KPI %s computed %s, outside its valid range, so it is NULL', p ->> 'kpi',
                                                  left(p ->> 'computed', 40))
                                      else format('custom KPI %s: %s clarity value(s) that week were not numbers and were left out',
                                                  p ->> 'kpi', p ->> 'not_numbers') end)
                    order by c.tenant_id, c.as_of, p ->> 'kpi')
             from computed c cross join lateral jsonb_array_elements(c.problems) p
             where c.problems is not null), '[]'::jsonb))
  into stats;
  return stats;
end
$$;


--
-- Name: FUNCTION write_custom_kpi_values(p_tenant_ids uuid[], p_weeks date[]); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.write_custom_kpi_values(p_tenant_ids uuid[], p_weeks date[]) IS 'Computes and writes the custom KPI values of the given (tenant, week) pairs that have a history row, every active KPI of the tenant, one kpi.custom_kpi_weeks row per week. Returns {values, rows_written (weeks), warnings}. Called by every fill; idempotent.';


--
-- Name: write_weeks(uuid[], date[]); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.write_weeks(p_tenant_ids uuid[], p_weeks date[]) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    SET plan_cache_mode TO 'auto'
    SET enable_memoize TO 'off'
    SET jit TO 'off'
    AS $_$
declare
  stats jsonb;
  custom jsonb;
begin
  execute $write$
  -- ($1, $2: the (tenant, week) pairs.)
  with computed as materialized (
    select w.tenant_id, w.as_of, a.aiv_pct, a.ati_pct, a.crs_pct, a.elasticity_usd_per_point,
           coalesce(vli.integrity_pct, 100) as vli_integrity_pct,
           vli.integrity_pct is null as vli_is_fallback,
           kpi.hrp_pct(clarity.hrp) as hrp_pct,
           kpi.hrp_is_invalid(clarity.hrp) as hrp_is_invalid,
           clarity.hrp,
           clarity.measured_at
    from unnest($1::uuid[], $2::date[]) as w (tenant_id, as_of)
    join lateral (
      -- (LIMIT 1 keeps this an index probe: flattened into a join, the planner would hash the table.)
      select r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
      from kpi.avi_reports r where r.tenant_id = w.tenant_id and r.week_start = w.as_of
      limit 1
    ) a on true
    left join lateral (
      select v.integrity_pct
      from kpi.vli_audits v
      where v.tenant_id = w.tenant_id and v.audited_at < kpi.week_end(w.as_of)
      order by v.audited_at desc, v.id desc
      limit 1
    ) vli on true
    left join lateral (
      select c.hrp, c.measured_at
      from kpi.clarity_reports c
      where c.tenant_id = w.tenant_id and c.measured_at < kpi.week_end(w.as_of)
      order by c.measured_at desc, c.id desc
      limit 1
    ) clarity on true
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
    returning h.tenant_id, h.as_of
  )
  select jsonb_build_object(
           'weeks', (select count(*) from computed),
           'rows_written', (select count(*) from written),
           'written', coalesce((
             select jsonb_agg(jsonb_build_object('tenant_id', w.tenant_id, 'as_of', w.as_of) order by w.tenant_id, w.as_of)
             from (select x.tenant_id, x.as_of from written x order by x.tenant_id, x.as_of limit 100) w), '[]'::jsonb),
           'warnings', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', c.tenant_id,
                      'as_of', c.as_of,
                      'code', 'INVALID_CLARITY',
                      'message', format('clarity report measured at %s has hrp %s; expected a number from 0 to 1, so hrp_pct is NULL',
                                        to_char(c.measured_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), left(c.hrp::text, 40)))
                    order by c.tenant_id, c.as_of)
             from computed c where c.hrp_is_invalid), '[]'::jsonb))
  $write$
  into stats
  using p_tenant_ids, p_weeks;
  -- The custom KPIs of the same weeks, when any tenant among them has one.
  if exists (select from kpi.custom_kpis d where d.active and d.tenant_id = any (p_tenant_ids)) then
    custom := kpi.write_custom_kpi_values(p_tenant_ids, p_weeks);
    stats := stats || jsonb_build_object('custom_weeks_written', (custom ->> 'rows_written')::bigint,
                                         'custom_values', (custom ->> 'values')::bigint,
                                         'warnings', (stats -> 'warnings') || (custom -> 'warnings'));
  end if;
  return stats;
end
$_$;


--
-- Name: FUNCTION write_weeks(p_tenant_ids uuid[], p_weeks date[]); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.write_weeks(p_tenant_ids uuid[], p_weeks date[]) IS 'Computes and writes the kpi_history rows (and custom KPI values) of the given (tenant, week) pairs from their sources; unchanged rows are not written. The one write behind every fill; idempotent.';


--
-- Name: write_weeks_contained(uuid[], date[]); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.write_weeks_contained(p_tenant_ids uuid[], p_weeks date[]) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  result jsonb;
  failed_sqlstate text;
  failed_message text;
  tenants uuid[];
  half uuid;
  first_half jsonb;
  second_half jsonb;
begin
  if cardinality(p_tenant_ids) = 0 then
    return jsonb_build_object('weeks', 0, 'rows_written', 0, 'written', '[]'::jsonb, 'warnings', '[]'::jsonb, 'failed', '[]'::jsonb);
  end if;
  begin
    return kpi.write_weeks(p_tenant_ids, p_weeks) || jsonb_build_object('failed', '[]'::jsonb);
  exception when others then
    get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text;
  end;
  select array_agg(distinct t order by t) into tenants from unnest(p_tenant_ids) t;
  if cardinality(tenants) = 1 then
    return jsonb_build_object('weeks', 0, 'rows_written', 0, 'written', '[]'::jsonb, 'warnings', '[]'::jsonb,
      'failed', jsonb_build_array(jsonb_build_object('tenant_id', tenants[1], 'sqlstate', failed_sqlstate,
                                                     'message', left(failed_message, 500))));
  end if;
  half := tenants[(cardinality(tenants) + 1) / 2];
  first_half := kpi.write_weeks_contained(
    array(select t from unnest(p_tenant_ids, p_weeks) x (t, w) where t <= half order by t, w),
    array(select w from unnest(p_tenant_ids, p_weeks) x (t, w) where t <= half order by t, w));
  second_half := kpi.write_weeks_contained(
    array(select t from unnest(p_tenant_ids, p_weeks) x (t, w) where t > half order by t, w),
    array(select w from unnest(p_tenant_ids, p_weeks) x (t, w) where t > half order by t, w));
  return kpi.add_fill_stats(first_half, second_half);
end
$$;


--
-- Name: change_log_head(uuid); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.change_log_head(of_tenant uuid) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select c.txid::text || '.' || c.seq from kpi.kpi_changes c
  where c.txid < kpi_api.change_log_horizon() and (of_tenant is null or c.tenant_id = of_tenant)
  order by c.txid desc, c.seq desc limit 1
$$;


--
-- Name: change_log_horizon(); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.change_log_horizon() RETURNS xid8
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select coalesce(
           (select min(running.xid)
            from pg_catalog.pg_snapshot_xip(s.snapshot) as running(xid)
            where not exists (select from pg_catalog.pg_stat_activity a
                              where a.backend_xid = running.xid::xid
                                and a.datid <> (select d.oid from pg_catalog.pg_database d where d.datname = current_database()))),
           pg_catalog.pg_snapshot_xmax(s.snapshot))
  from (select pg_catalog.pg_current_snapshot() as snapshot) s
$$;


--
-- Name: FUNCTION change_log_horizon(); Type: COMMENT; Schema: kpi_api; Owner: -
--

COMMENT ON FUNCTION kpi_api.change_log_horizon() IS 'The change feed''s settled horizon: entries with a smaller txid are complete and visible. The oldest transaction still running in this database (others cannot write the log), else the snapshot''s xmax.';


--
-- Name: changes_held_back(text, uuid); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.changes_held_back(after_cursor text, of_tenant uuid) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select exists (
    select from kpi.kpi_changes c, kpi_api.cursor_position(after_cursor) p
    where (c.txid, c.seq) > (p.txid, p.seq)
      and c.txid >= kpi_api.change_log_horizon()
      and (of_tenant is null or c.tenant_id = of_tenant))
$$;


--
-- Name: changes_page(text, integer); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.changes_page(cursor text, page_size integer) RETURNS json
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select json_build_object(
           'changes', coalesce(json_agg(json_build_object(
                        'cursor', p.cursor, 'entity', p.entity, 'op', p.op, 'as_of', p.as_of, 'kpi', p.kpi, 'data', p.data,
                        'changed_at', p.changed_at) order by p.txid, p.seq), '[]'),
           'next', coalesce((array_agg(p.cursor order by p.txid desc, p.seq desc))[1], nullif(btrim(changes_page.cursor), ''), '0.0'),
           'has_more', count(*) = changes_page.page_size)
  from kpi_api.read_changes(changes_page.cursor, (select kpi_api.current_tenant_id()), changes_page.page_size) p
$$;


--
-- Name: cron_secret_matches(text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.cron_secret_matches(candidate text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select exists (
    select from kpi.cron_secrets s
    where s.retired_at is null and s.secret_sha256 = kpi.cron_secret_hash(s.salt, candidate))
$$;


--
-- Name: csv_field(text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.csv_field(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN (value IS NULL) THEN ''::text WHEN (value ~ '[",\r\n]'::text) THEN (('"'::text || replace(value, '"'::text, '""'::text)) || '"'::text) ELSE value END;


--
-- Name: csv_header(regclass); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.csv_header(relation regclass) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT (string_agg(kpi_api.csv_field((a.attname)::text), ','::text ORDER BY a.attnum) || '
'::text) FROM pg_attribute a WHERE ((a.attrelid = (csv_header.relation)::oid) AND (a.attnum > 0) AND (NOT a.attisdropped)));


--
-- Name: current_tenant_id(); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.current_tenant_id() RETURNS uuid
    LANGUAGE plpgsql STABLE
    AS $_$
declare
  claims jsonb := kpi_api.request_claims();
  wanted text := lower(btrim(kpi_api.request_header('x-tenant')));
  -- The granted tenants as a JSON array of strings; anything else in the claims is ignored.
  granted jsonb := case when jsonb_typeof(claims -> 'tenant_ids') = 'array' then claims -> 'tenant_ids' else '[]' end
                   || case when jsonb_typeof(claims -> 'tenant_id') = 'string' then jsonb_build_array(claims -> 'tenant_id') else '[]' end;
  uuid_pattern constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
  only_one text;
  how_many integer;
begin
  if wanted is not null then
    -- `?` finds a string element of the array; the scan below forgives upper-case ids in tokens.
    if wanted ~ uuid_pattern
       and (granted ? wanted
            or exists (select from pg_catalog.jsonb_array_elements_text(granted) g where lower(g) = wanted)) then
      return wanted::uuid;
    end if;
    perform kpi_api.raise_http_error('FORBIDDEN', 'the x-tenant header names a tenant this token does not grant');
  end if;
  select min(lower(g)), count(distinct lower(g)) into only_one, how_many
  from pg_catalog.jsonb_array_elements(granted) e, lateral (select e #>> '{}' as g) s
  where jsonb_typeof(e) = 'string' and lower(g) ~ uuid_pattern;
  if how_many = 1 then
    return only_one::uuid;
  end if;
  if how_many > 1 then
    perform kpi_api.raise_http_error('TENANT_REQUIRED', 'this token grants several tenants: choose one with the x-tenant header');
  end if;
  perform kpi_api.raise_http_error('FORBIDDEN', 'this token grants no tenant');
  return null;
end
$_$;


--
-- Name: cursor_position(text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.cursor_position(cursor text, OUT txid xid8, OUT seq bigint) RETURNS record
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
begin
  if cursor is null or btrim(cursor) = '' then
    txid := '0';
    seq := 0;
    return;
  end if;
  if cursor !~ '^\s*\d{1,19}\.\d{1,18}\s*$' then
    perform kpi_api.raise_request_error('INVALID_INPUT',
      format('after must be a cursor from an earlier page ("<digits>.<digits>"), got %s', left(cursor, 40)));
  end if;
  txid := split_part(btrim(cursor), '.', 1)::xid8;
  seq := split_part(btrim(cursor), '.', 2)::bigint;
end
$_$;


--
-- Name: date_argument(text, text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.date_argument(name text, value text) RETURNS date
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
begin
  if value is null then
    return null;
  end if;
  if value !~ '^\s*\d{4}-\d{2}-\d{2}\s*$' then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('%s must be a date (YYYY-MM-DD), got %s', name, left(value, 40)));
  end if;
  return value::date;
exception when datetime_field_overflow or invalid_datetime_format then
  perform kpi_api.raise_http_error('INVALID_INPUT', format('%s is not a calendar date: %s', name, left(value, 40)));
  return null;
end
$_$;


--
-- Name: deny(text, text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.deny(endpoint text, reason text) RETURNS json
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: health(boolean); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.health(details boolean) RETURNS json
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: history_change_data(kpi.history_change); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.history_change_data(h kpi.history_change) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('as_of', (h).as_of, 'aiv_pct', (h).aiv_pct, 'ati_pct', (h).ati_pct, 'crs_pct', (h).crs_pct, 'elasticity_usd_per_point', (h).elasticity_usd_per_point, 'vli_integrity_pct', (h).vli_integrity_pct, 'vli_is_fallback', (h).vli_is_fallback, 'hrp_pct', (h).hrp_pct, 'updated_at', ((to_json(((h).updated_at AT TIME ZONE 'UTC'::text)) #>> '{}'::text[]) || '+00:00'::text), 'revision', (h).revision);


--
-- Name: integer_argument(text, text, integer, integer); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.integer_argument(name text, value text, minimum integer, maximum integer) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
begin
  if value is null then
    return null;
  end if;
  -- At most 9 digits, so the cast cannot overflow: anything longer is out of range anyway.
  if value !~ '^\s*[+-]?\d{1,9}\s*$' or value::integer not between minimum and maximum then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('%s must be a whole number from %s to %s, got %s',
                                                             name, minimum, maximum, left(value, 40)));
  end if;
  return value::integer;
end
$_$;


--
-- Name: is_tenant_admin(); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.is_tenant_admin() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select coalesce(r = '"kpi_admin"'::jsonb or (jsonb_typeof(r) = 'array' and r ? 'kpi_admin'), false)
  from (select kpi_api.request_claims() -> 'tenant_roles' -> (kpi_api.current_tenant_id()::text) as r) x
$$;


--
-- Name: FUNCTION is_tenant_admin(); Type: COMMENT; Schema: kpi_api; Owner: -
--

COMMENT ON FUNCTION kpi_api.is_tenant_admin() IS 'True when the request''s token makes it an admin (tenant_roles: "kpi_admin") of the active tenant.';


--
-- Name: raise_caught_error(text, text, text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.raise_caught_error(caught_sqlstate text, caught_message text, caught_detail text) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  known text := (select e.code from kpi.error_codes e where e.sqlstate = caught_sqlstate);
begin
  if caught_sqlstate = 'PGRST' then
    -- Already an HTTP answer (raise_http_error further down): pass it on unchanged.
    raise sqlstate 'PGRST' using message = caught_message, detail = caught_detail;
  end if;
  if caught_sqlstate in ('25006', '42501') then
    -- A write in a read-only (GET) request, a missing privilege: PostgREST's own answers (405, 401/403).
    raise exception using errcode = caught_sqlstate, message = caught_message;
  end if;
  if known is null then
    raise warning 'kpi-history api: unexpected error % (the client got INTERNAL_ERROR)', caught_sqlstate;
    perform kpi_api.raise_http_error('INTERNAL_ERROR', 'an unexpected error occurred; nothing was changed');
  end if;
  perform kpi_api.raise_http_error(known, caught_message);
end
$$;


--
-- Name: raise_http_error(text, text, text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.raise_http_error(code text, message text, hint text DEFAULT NULL::text) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  status smallint := (select e.http_status from kpi.error_codes e where e.code = raise_http_error.code);
begin
  if status is null then
    raise exception 'kpi_api.raise_http_error: unknown error code %', code;
  end if;
  raise sqlstate 'PGRST' using
    message = jsonb_build_object('code', code, 'message', message, 'details', null, 'hint', hint)::text,
    detail = jsonb_build_object('status', status, 'headers', '{}'::jsonb)::text;
end
$$;


--
-- Name: raise_request_error(text, text, text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.raise_request_error(code text, message text, hint text DEFAULT NULL::text) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' then
    perform kpi_api.raise_http_error(code, message, hint);
  end if;
  perform kpi.raise_error(code, message, hint);
end
$$;


--
-- Name: read_changes(text, uuid, integer); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.read_changes(after_cursor text, of_tenant uuid, page_size integer) RETURNS TABLE(tenant_id uuid, cursor text, txid xid8, seq bigint, entity text, op text, as_of date, kpi text, data jsonb, changed_at text)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  position record;
  settings kpi.change_feed_settings;
  horizon xid8 := kpi_api.change_log_horizon();
begin
  select * into position from kpi_api.cursor_position(after_cursor);
  select * into settings from kpi.change_feed_settings;
  if after_cursor is not null and btrim(after_cursor) <> ''
     and (position.txid, position.seq) < (settings.pruned_txid, settings.pruned_seq) then
    perform kpi_api.raise_request_error('CURSOR_EXPIRED',
      format('changes after %s have been pruned (the feed keeps %s)', btrim(after_cursor), settings.keep),
      'Re-read the current state (GET /kpi_history, /kpi_anomalies, /custom_kpi_values), then follow the feed without a cursor.');
  end if;
  return query
  select c.tenant_id, c.txid::text || '.' || c.seq, c.txid, c.seq, c.entity, c.op, c.as_of, c.kpi,
         coalesce(c.data, kpi_api.history_change_data(c.history_row)),
         -- ISO 8601 in UTC, as kpi.utc_iso writes it (which API roles may not call).
         (to_json(c.changed_at at time zone 'UTC') #>> '{}') || '+00:00'
  from kpi.kpi_changes c
  where (of_tenant is null or c.tenant_id = of_tenant)
    and (c.txid, c.seq) > (position.txid, position.seq)
    and c.txid < horizon
  order by c.txid, c.seq
  limit page_size;
end
$$;


--
-- Name: FUNCTION read_changes(after_cursor text, of_tenant uuid, page_size integer); Type: COMMENT; Schema: kpi_api; Owner: -
--

COMMENT ON FUNCTION kpi_api.read_changes(after_cursor text, of_tenant uuid, page_size integer) IS 'The change feed after a cursor, settled transactions only, in order: the one reader behind the API, the stream and the export. Raises INVALID_INPUT for a malformed cursor and CURSOR_EXPIRED for a pruned one.';


--
-- Name: request_claims(); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.request_claims() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
  select coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb, '{}'::jsonb)
$$;


--
-- Name: request_header(text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.request_header(name text) RETURNS text
    LANGUAGE sql STABLE
    AS $$
  select coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}'::jsonb) ->> lower(name)
$$;


--
-- Name: run_cron(jsonb, text); Type: FUNCTION; Schema: kpi_api; Owner: -
--

CREATE FUNCTION kpi_api.run_cron(body jsonb, secret text) RETURNS json
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: tenants; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenants (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    slug text NOT NULL,
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    plan text DEFAULT 'enterprise'::text NOT NULL,
    source_retention_days integer,
    sources_purged_before timestamp with time zone,
    CONSTRAINT tenants_name_not_blank CHECK ((btrim(name) <> ''::text)),
    CONSTRAINT tenants_slug_format CHECK ((slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'::text)),
    CONSTRAINT tenants_source_retention_positive CHECK ((source_retention_days > 0))
);

ALTER TABLE ONLY kpi.tenants FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE tenants; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenants IS 'Customers of the SaaS. The slug is URL- and filename-safe (used in CSV file names).';


--
-- Name: COLUMN tenants.plan; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.tenants.plan IS 'The tenant''s plan: how long its source reports are kept (kpi.plans).';


--
-- Name: COLUMN tenants.source_retention_days; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.tenants.source_retention_days IS 'Overrides the plan''s source retention for this tenant (days); NULL: the plan''s.';


--
-- Name: COLUMN tenants.sources_purged_before; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.tenants.sources_purged_before IS 'Sources older than this may have been deleted under an earlier, shorter retention: history weeks ending before it are never recomputed.';


--
-- Name: active_tenant; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.active_tenant WITH (security_invoker='true') AS
 SELECT t.id,
    t.slug,
    t.name
   FROM kpi.tenants t;


--
-- Name: VIEW active_tenant; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.active_tenant IS 'The tenant this request acts for (the x-tenant header, or the only tenant of the token): one row, or none when the token grants an id that is no tenant. Needs a JWT with role "authenticated" and "tenant_ids".
Example: GET /active_tenant?select=slug,name';


--
-- Name: custom_kpis; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.custom_kpis (
    tenant_id uuid NOT NULL,
    key text NOT NULL,
    label text NOT NULL,
    unit text,
    source text,
    path text[],
    field text,
    aggregate text,
    combine text,
    left_kpi text,
    right_kpi text,
    valid_min numeric,
    valid_max numeric,
    active boolean DEFAULT true NOT NULL,
    revision integer DEFAULT 1 NOT NULL,
    derived_revision integer,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT custom_kpis_aggregate CHECK ((aggregate = ANY (ARRAY['latest'::text, 'avg'::text, 'min'::text, 'max'::text, 'sum'::text, 'count'::text]))),
    CONSTRAINT custom_kpis_combine CHECK ((combine = ANY (ARRAY['difference'::text, 'ratio'::text]))),
    CONSTRAINT custom_kpis_key CHECK ((key ~ '^[a-z][a-z0-9_]{0,39}$'::text)),
    CONSTRAINT custom_kpis_label CHECK (((char_length(btrim(label)) >= 1) AND (char_length(btrim(label)) <= 100))),
    CONSTRAINT custom_kpis_path CHECK (((path IS NULL) OR (((cardinality(path) >= 1) AND (cardinality(path) <= 8)) AND (array_position(path, NULL::text) IS NULL) AND (array_position(path, ''::text) IS NULL)))),
    CONSTRAINT custom_kpis_shape CHECK ((((source IS NOT NULL) AND (aggregate IS NOT NULL) AND (combine IS NULL) AND (left_kpi IS NULL) AND (right_kpi IS NULL) AND
CASE source
    WHEN 'clarity'::text THEN ((path IS NOT NULL) AND (field IS NULL))
    WHEN 'avi'::text THEN ((path IS NULL) AND (field = ANY (ARRAY['aiv_pct'::text, 'ati_pct'::text, 'crs_pct'::text, 'elasticity_usd_per_point'::text])))
    ELSE ((path IS NULL) AND (field = 'integrity_pct'::text))
END) OR ((combine IS NOT NULL) AND (left_kpi IS NOT NULL) AND (right_kpi IS NOT NULL) AND (source IS NULL) AND (path IS NULL) AND (field IS NULL) AND (aggregate IS NULL)))),
    CONSTRAINT custom_kpis_source CHECK ((source = ANY (ARRAY['clarity'::text, 'avi'::text, 'vli'::text]))),
    CONSTRAINT custom_kpis_unit CHECK (((unit IS NULL) OR (char_length(unit) <= 20))),
    CONSTRAINT custom_kpis_valid_range CHECK (((valid_min IS NULL) OR (valid_max IS NULL) OR (valid_min <= valid_max)))
);

ALTER TABLE ONLY kpi.custom_kpis FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE custom_kpis; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.custom_kpis IS 'Custom KPI definitions per tenant: a source (clarity JSON path, avi or vli column) and a weekly aggregate, or a difference/ratio of two KPIs; values outside [valid_min, valid_max] are stored as NULL with an INVALID_CUSTOM warning. Managed by tenant admins through api.custom_kpis; computed by every fill into kpi.custom_kpi_values.';


--
-- Name: COLUMN custom_kpis.path; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.custom_kpis.path IS 'For source clarity: the keys leading to a number inside clarity_reports.metrics, e.g. {latency,p95_ms}.';


--
-- Name: COLUMN custom_kpis.field; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.custom_kpis.field IS 'For source avi: aiv_pct, ati_pct, crs_pct or elasticity_usd_per_point; for vli: integrity_pct.';


--
-- Name: custom_kpi_values; Type: VIEW; Schema: kpi; Owner: -
--

CREATE VIEW kpi.custom_kpi_values WITH (security_invoker='true') AS
 SELECT w.tenant_id,
    e.key,
    w.as_of,
    ((e.value #>> '{}'::text[]))::numeric AS value,
    w.updated_at
   FROM (kpi.custom_kpi_weeks w
     CROSS JOIN LATERAL jsonb_each(w.kpi_values) e(key, value))
  WHERE (EXISTS ( SELECT
           FROM kpi.custom_kpis d
          WHERE ((d.tenant_id = w.tenant_id) AND (d.key = e.key) AND d.active)));


--
-- Name: VIEW custom_kpi_values; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON VIEW kpi.custom_kpi_values IS 'One value per tenant, week of kpi_history and active custom KPI (NULL: no data that week, or outside the valid range), rounded to 6 decimal places.';


--
-- Name: custom_kpi_rollups; Type: VIEW; Schema: kpi; Owner: -
--

CREATE VIEW kpi.custom_kpi_rollups WITH (security_invoker='true') AS
 SELECT w.tenant_id,
    w.period,
    w.period_start,
    w.key,
    (count(*))::integer AS weeks,
    round(avg(w.value), 6) AS avg,
    min(w.value) AS min,
    max(w.value) AS max,
    (array_agg(w.value ORDER BY w.as_of DESC))[1] AS last,
    max(w.as_of) AS last_week
   FROM ( SELECT v.tenant_id,
            v.key,
            v.as_of,
            v.value,
            p.period,
            (date_trunc(p.period, ((v.as_of + 3))::timestamp without time zone))::date AS period_start
           FROM (kpi.custom_kpi_values v
             CROSS JOIN ( VALUES ('month'::text), ('quarter'::text)) p(period))) w
  GROUP BY w.tenant_id, w.period, w.period_start, w.key;


--
-- Name: VIEW custom_kpi_rollups; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON VIEW kpi.custom_kpi_rollups IS 'Monthly and quarterly rollups of kpi.custom_kpi_values, one row per tenant, period and key. Derived on read.';


--
-- Name: custom_kpi_rollups; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.custom_kpi_rollups WITH (security_invoker='true') AS
 SELECT r.period,
    r.period_start,
    r.key,
    r.weeks,
    r.avg,
    r.min,
    r.max,
    r.last
   FROM kpi.custom_kpi_rollups r;


--
-- Name: VIEW custom_kpi_rollups; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.custom_kpi_rollups IS 'Monthly and quarterly rollups of the active tenant''s custom KPIs: one row per period (month or quarter), period_start and key. A week counts in the month and quarter of its Thursday.
Example: GET /custom_kpi_rollups?period=eq.month&period_start=gte.2026-01-01&order=period_start,key';


--
-- Name: COLUMN custom_kpi_rollups.period; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_rollups.period IS 'month or quarter. Never NULL.';


--
-- Name: COLUMN custom_kpi_rollups.period_start; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_rollups.period_start IS 'First day of the month or quarter. Never NULL.';


--
-- Name: COLUMN custom_kpi_rollups.key; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_rollups.key IS 'Never NULL.';


--
-- Name: COLUMN custom_kpi_rollups.weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_rollups.weeks IS 'Weeks of the period with a row (a value or NULL). Never NULL.';


--
-- Name: COLUMN custom_kpi_rollups.avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_rollups.avg IS 'Mean of the weeks'' values (NULLs ignored), to 6 decimal places.';


--
-- Name: COLUMN custom_kpi_rollups.last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_rollups.last IS 'The latest week''s value.';


--
-- Name: custom_kpi_values; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.custom_kpi_values WITH (security_invoker='true') AS
 SELECT v.as_of,
    v.key,
    v.value
   FROM kpi.custom_kpi_values v;


--
-- Name: VIEW custom_kpi_values; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.custom_kpi_values IS 'The active tenant''s custom KPI values, one row per week (as_of, a Monday) and key. PostgREST filters apply.
Example: GET /custom_kpi_values?as_of=gte.2026-01-01&key=in.(p95_latency_ms,aiv_minus_ati)&order=as_of,key';


--
-- Name: COLUMN custom_kpi_values.as_of; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_values.as_of IS 'Monday of the week. Never NULL.';


--
-- Name: COLUMN custom_kpi_values.key; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_values.key IS 'The custom KPI (api.custom_kpis.key). Never NULL.';


--
-- Name: COLUMN custom_kpi_values.value; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpi_values.value IS 'NULL when the week had no data for it, or the value was outside its valid range.';


--
-- Name: custom_kpis; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.custom_kpis WITH (security_invoker='true') AS
 SELECT d.key,
    d.label,
    d.unit,
    d.source,
    d.path,
    d.field,
    d.aggregate,
    d.combine,
    d.left_kpi,
    d.right_kpi,
    d.valid_min,
    d.valid_max,
    d.active,
    d.created_at,
    d.updated_at
   FROM kpi.custom_kpis d;


--
-- Name: VIEW custom_kpis; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.custom_kpis IS 'The active tenant''s custom KPI definitions. Members read them; admins (token claim tenant_roles: {"<tenant id>": "kpi_admin"}) insert, update and delete through this view. A definition is a source with an aggregate, or a combine of two KPIs; invalid input is INVALID_INPUT 400 naming the field, a member''s write FORBIDDEN 403.
Example: POST /custom_kpis {"key": "p95_latency_ms", "label": "p95 latency", "unit": "ms", "source": "clarity", "path": ["latency", "p95_ms"], "aggregate": "avg"}';


--
-- Name: COLUMN custom_kpis.key; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.key IS 'Unique per tenant: 1 to 40 lower-case letters, digits or _, starting with a letter; not a built-in KPI name. Cannot be changed. Never NULL.';


--
-- Name: COLUMN custom_kpis.label; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.label IS 'Never NULL.';


--
-- Name: COLUMN custom_kpis.source; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.source IS 'clarity (a number at path inside the clarity report''s metrics), avi or vli (their column field); NULL for a combine.';


--
-- Name: COLUMN custom_kpis.path; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.path IS 'For source clarity: the keys leading to the number, e.g. ["latency", "p95_ms"].';


--
-- Name: COLUMN custom_kpis.field; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.field IS 'For source avi: aiv_pct, ati_pct, crs_pct or elasticity_usd_per_point; for vli: integrity_pct.';


--
-- Name: COLUMN custom_kpis.aggregate; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.aggregate IS 'Over the week (Monday 00:00 UTC to the next Monday): latest, avg, min, max, sum or count.';


--
-- Name: COLUMN custom_kpis.combine; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.combine IS 'difference (left_kpi - right_kpi) or ratio (left_kpi / right_kpi, NULL when dividing by zero) of two weekly KPIs: built-in, or custom with a source.';


--
-- Name: COLUMN custom_kpis.valid_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.valid_min IS 'A value below is stored as NULL, with an INVALID_CUSTOM warning in the run.';


--
-- Name: COLUMN custom_kpis.valid_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.valid_max IS 'A value above is stored as NULL, with an INVALID_CUSTOM warning in the run.';


--
-- Name: COLUMN custom_kpis.active; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.active IS 'Only active KPIs are computed (at most 20 per tenant by default); deactivating one removes its values. Never NULL.';


--
-- Name: COLUMN custom_kpis.created_at; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.created_at IS 'Never NULL.';


--
-- Name: COLUMN custom_kpis.updated_at; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.custom_kpis.updated_at IS 'Never NULL.';


--
-- Name: kpi_anomalies; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.kpi_anomalies WITH (security_invoker='true') AS
 SELECT a.as_of,
    a.kpi,
    a.value,
    a.baseline_median,
    a.baseline_mad,
    a.baseline_weeks,
    a.score,
    a.direction,
    a.threshold,
    a.detected_at
   FROM kpi.kpi_anomalies a;


--
-- Name: VIEW kpi_anomalies; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.kpi_anomalies IS 'Anomalies of the active tenant''s weekly KPIs (the x-tenant header, or the only tenant of the token): one row per week and KPI whose value is far from the previous 12 weeks (|modified z-score| above the threshold, and a minimum difference). PostgREST filters apply.
Example: GET /kpi_anomalies?as_of=gte.2026-01-01&order=as_of.desc,kpi';


--
-- Name: COLUMN kpi_anomalies.kpi; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.kpi IS 'One of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, hrp_pct, or a custom KPI''s key.';


--
-- Name: COLUMN kpi_anomalies.value; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.value IS 'The week''s value of the KPI.';


--
-- Name: COLUMN kpi_anomalies.baseline_median; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.baseline_median IS 'Median of the KPI over the previous 12 weeks (those with a value).';


--
-- Name: COLUMN kpi_anomalies.baseline_mad; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.baseline_mad IS 'Median absolute deviation from that median; 0 when at least half the weeks had the median itself.';


--
-- Name: COLUMN kpi_anomalies.baseline_weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.baseline_weeks IS 'How many of the previous 12 weeks had a value (8 to 12).';


--
-- Name: COLUMN kpi_anomalies.score; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.score IS 'Modified z-score 0.6745 (value - median) / MAD (Iglewicz & Hoaglin); with MAD 0, (value - median) / (1.253314 mean absolute deviation); "Infinity" or "-Infinity" when the baseline has no spread at all.';


--
-- Name: COLUMN kpi_anomalies.direction; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.direction IS 'up or down: above or below the median.';


--
-- Name: COLUMN kpi_anomalies.threshold; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_anomalies.threshold IS 'The |score| it exceeded (the rule in force).';


--
-- Name: kpi_history; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.kpi_history WITH (security_invoker='true') AS
 SELECT h.as_of,
    h.aiv_pct,
    h.ati_pct,
    h.crs_pct,
    h.elasticity_usd_per_point,
    h.vli_integrity_pct,
    h.vli_is_fallback,
    h.hrp_pct,
    h.updated_at
   FROM kpi.kpi_history h;


--
-- Name: VIEW kpi_history; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.kpi_history IS 'Weekly KPIs of the active tenant (the x-tenant header, or the only tenant of the token), one row per week (as_of, a Monday). Needs a JWT with role "authenticated" and "tenant_ids". PostgREST filters apply.
Example: GET /kpi_history?order=as_of.desc&limit=52 (also: as_of=gte.2024-01-01)';


--
-- Name: COLUMN kpi_history.as_of; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history.as_of IS 'Monday of the AVI week this row describes.';


--
-- Name: COLUMN kpi_history.vli_is_fallback; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history.vli_is_fallback IS 'True when no VLI audit preceded the end of the week and vli_integrity_pct is the fallback 100.';


--
-- Name: COLUMN kpi_history.hrp_pct; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history.hrp_pct IS 'Hallucination-risk probability in percent; NULL when the clarity report had none or an invalid one.';


--
-- Name: kpi_history_export; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.kpi_history_export WITH (security_invoker='true') AS
 SELECT t.slug AS tenant,
    h.as_of,
    h.aiv_pct,
    h.ati_pct,
    h.crs_pct,
    h.elasticity_usd_per_point,
    h.vli_integrity_pct,
    h.vli_is_fallback,
    h.hrp_pct,
    ((to_json((h.updated_at AT TIME ZONE 'UTC'::text)) #>> '{}'::text[]) || '+00:00'::text) AS updated_at
   FROM (kpi.kpi_history h
     JOIN kpi.tenants t ON ((t.id = h.tenant_id)));


--
-- Name: VIEW kpi_history_export; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.kpi_history_export IS 'The CSV export''s columns in order (updated_at as ISO 8601 text in UTC), for the active tenant (row-level security), or for every tenant in psql as the owner. Prefer GET /rpc/kpi_history_csv for a file.
Example: GET /kpi_history_export?order=as_of.desc&limit=10';


--
-- Name: kpi_history_rollups; Type: VIEW; Schema: kpi; Owner: -
--

CREATE VIEW kpi.kpi_history_rollups WITH (security_invoker='true') AS
 SELECT r.tenant_id,
    r.period,
    r.period_start,
    r.period_end,
    r.weeks,
    r.first_week,
    r.last_week,
    (r.period_end < ((now() AT TIME ZONE 'UTC'::text))::date) AS complete,
    r.aiv_pct_avg,
    r.aiv_pct_min,
    r.aiv_pct_max,
    l.aiv_pct AS aiv_pct_last,
    r.ati_pct_avg,
    r.ati_pct_min,
    r.ati_pct_max,
    l.ati_pct AS ati_pct_last,
    r.crs_pct_avg,
    r.crs_pct_min,
    r.crs_pct_max,
    l.crs_pct AS crs_pct_last,
    r.elasticity_usd_per_point_avg,
    r.elasticity_usd_per_point_min,
    r.elasticity_usd_per_point_max,
    l.elasticity_usd_per_point AS elasticity_usd_per_point_last,
    r.vli_integrity_pct_avg,
    r.vli_integrity_pct_min,
    r.vli_integrity_pct_max,
    l.vli_integrity_pct AS vli_integrity_pct_last,
    r.hrp_pct_avg,
    r.hrp_pct_min,
    r.hrp_pct_max,
    l.hrp_pct AS hrp_pct_last,
    r.vli_fallback_weeks,
    r.hrp_weeks
   FROM (( SELECT w.tenant_id,
            w.period,
            w.period_start,
            (((w.period_start + w.length))::date - 1) AS period_end,
            (count(*))::integer AS weeks,
            min(w.as_of) AS first_week,
            max(w.as_of) AS last_week,
            round(avg(w.aiv_pct), 2) AS aiv_pct_avg,
            min(w.aiv_pct) AS aiv_pct_min,
            max(w.aiv_pct) AS aiv_pct_max,
            round(avg(w.ati_pct), 2) AS ati_pct_avg,
            min(w.ati_pct) AS ati_pct_min,
            max(w.ati_pct) AS ati_pct_max,
            round(avg(w.crs_pct), 2) AS crs_pct_avg,
            min(w.crs_pct) AS crs_pct_min,
            max(w.crs_pct) AS crs_pct_max,
            round(avg(w.elasticity_usd_per_point), 2) AS elasticity_usd_per_point_avg,
            min(w.elasticity_usd_per_point) AS elasticity_usd_per_point_min,
            max(w.elasticity_usd_per_point) AS elasticity_usd_per_point_max,
            round(avg(w.vli_integrity_pct), 2) AS vli_integrity_pct_avg,
            min(w.vli_integrity_pct) AS vli_integrity_pct_min,
            max(w.vli_integrity_pct) AS vli_integrity_pct_max,
            round(avg(w.hrp_pct), 2) AS hrp_pct_avg,
            min(w.hrp_pct) AS hrp_pct_min,
            max(w.hrp_pct) AS hrp_pct_max,
            (count(*) FILTER (WHERE w.vli_is_fallback))::integer AS vli_fallback_weeks,
            (count(w.hrp_pct))::integer AS hrp_weeks
           FROM ( SELECT h.tenant_id,
                    h.as_of,
                    h.aiv_pct,
                    h.ati_pct,
                    h.crs_pct,
                    h.elasticity_usd_per_point,
                    h.vli_integrity_pct,
                    h.vli_is_fallback,
                    h.hrp_pct,
                    h.created_at,
                    h.updated_at,
                    h.revision,
                    p.period,
                    p.length,
                    (date_trunc(p.period, ((h.as_of + 3))::timestamp without time zone))::date AS period_start
                   FROM (kpi.kpi_history h
                     CROSS JOIN ( VALUES ('month'::text,'1 mon'::interval), ('quarter'::text,'3 mons'::interval)) p(period, length))) w
          GROUP BY w.tenant_id, w.period, w.period_start, w.length) r
     JOIN kpi.kpi_history l ON (((l.tenant_id = r.tenant_id) AND (l.as_of = r.last_week))));


--
-- Name: VIEW kpi_history_rollups; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON VIEW kpi.kpi_history_rollups IS 'Monthly and quarterly rollups of kpi.kpi_history for every tenant (as the owner in psql; the API views read it through row-level security). A week counts in the month and quarter of its Thursday (as_of + 3). Derived on read: always equal to the weekly rows.';


--
-- Name: kpi_history_monthly; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.kpi_history_monthly WITH (security_invoker='true') AS
 SELECT t.slug AS tenant,
    r.period_start,
    r.period_end,
    r.weeks,
    r.first_week,
    r.last_week,
    r.complete,
    r.aiv_pct_avg,
    r.aiv_pct_min,
    r.aiv_pct_max,
    r.aiv_pct_last,
    r.ati_pct_avg,
    r.ati_pct_min,
    r.ati_pct_max,
    r.ati_pct_last,
    r.crs_pct_avg,
    r.crs_pct_min,
    r.crs_pct_max,
    r.crs_pct_last,
    r.elasticity_usd_per_point_avg,
    r.elasticity_usd_per_point_min,
    r.elasticity_usd_per_point_max,
    r.elasticity_usd_per_point_last,
    r.vli_integrity_pct_avg,
    r.vli_integrity_pct_min,
    r.vli_integrity_pct_max,
    r.vli_integrity_pct_last,
    r.hrp_pct_avg,
    r.hrp_pct_min,
    r.hrp_pct_max,
    r.hrp_pct_last,
    r.vli_fallback_weeks,
    r.hrp_weeks
   FROM (kpi.kpi_history_rollups r
     JOIN kpi.tenants t ON ((t.id = r.tenant_id)))
  WHERE (r.period = 'month'::text);


--
-- Name: VIEW kpi_history_monthly; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.kpi_history_monthly IS 'Monthly rollups of the active tenant''s weekly KPIs (the x-tenant header, or the only tenant of the token), one row per month with history. A week counts in the month of its Thursday (as_of + 3, ISO 8601). As the owner in psql: every tenant. PostgREST filters apply.
Example: GET /kpi_history_monthly?period_start=gte.2026-01-01&order=period_start.desc';


--
-- Name: COLUMN kpi_history_monthly.tenant; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.tenant IS 'The tenant''s slug. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.period_start; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.period_start IS 'First day of the period. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.period_end; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.period_end IS 'Last day of the period. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.weeks IS 'Weekly rows in the period (weeks whose Thursday falls in it). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.first_week; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.first_week IS 'as_of (Monday) of the earliest week in the period. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.last_week; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.last_week IS 'as_of (Monday) of the latest week in the period; the *_last columns are its values. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.complete; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.complete IS 'True when the period has ended (UTC): no more weeks will join it. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.aiv_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.aiv_pct_avg IS 'Mean of the weeks'' aiv_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.aiv_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.aiv_pct_min IS 'Lowest aiv_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.aiv_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.aiv_pct_max IS 'Highest aiv_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.aiv_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.aiv_pct_last IS 'aiv_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.ati_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.ati_pct_avg IS 'Mean of the weeks'' ati_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.ati_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.ati_pct_min IS 'Lowest ati_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.ati_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.ati_pct_max IS 'Highest ati_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.ati_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.ati_pct_last IS 'ati_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.crs_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.crs_pct_avg IS 'Mean of the weeks'' crs_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.crs_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.crs_pct_min IS 'Lowest crs_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.crs_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.crs_pct_max IS 'Highest crs_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.crs_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.crs_pct_last IS 'crs_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.elasticity_usd_per_point_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.elasticity_usd_per_point_avg IS 'Mean of the weeks'' elasticity_usd_per_point, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.elasticity_usd_per_point_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.elasticity_usd_per_point_min IS 'Lowest elasticity_usd_per_point of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.elasticity_usd_per_point_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.elasticity_usd_per_point_max IS 'Highest elasticity_usd_per_point of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.elasticity_usd_per_point_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.elasticity_usd_per_point_last IS 'elasticity_usd_per_point of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.vli_integrity_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.vli_integrity_pct_avg IS 'Mean of the weeks'' vli_integrity_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.vli_integrity_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.vli_integrity_pct_min IS 'Lowest vli_integrity_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.vli_integrity_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.vli_integrity_pct_max IS 'Highest vli_integrity_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.vli_integrity_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.vli_integrity_pct_last IS 'vli_integrity_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.hrp_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.hrp_pct_avg IS 'Mean of the weeks'' hrp_pct, rounded to 2 decimals (NULLs ignored).';


--
-- Name: COLUMN kpi_history_monthly.hrp_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.hrp_pct_min IS 'Lowest hrp_pct of the weeks.';


--
-- Name: COLUMN kpi_history_monthly.hrp_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.hrp_pct_max IS 'Highest hrp_pct of the weeks.';


--
-- Name: COLUMN kpi_history_monthly.hrp_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.hrp_pct_last IS 'hrp_pct of the latest week (last_week); NULL when that week has none, even if earlier weeks do.';


--
-- Name: COLUMN kpi_history_monthly.vli_fallback_weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.vli_fallback_weeks IS 'Weeks whose vli_integrity_pct is the fallback 100 (no audit yet); they count in the VLI figures. Never NULL.';


--
-- Name: COLUMN kpi_history_monthly.hrp_weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_monthly.hrp_weeks IS 'Weeks with an HRP; the hrp_pct figures are over these weeks only. Never NULL.';


--
-- Name: kpi_history_quarterly; Type: VIEW; Schema: api; Owner: -
--

CREATE VIEW api.kpi_history_quarterly WITH (security_invoker='true') AS
 SELECT t.slug AS tenant,
    r.period_start,
    r.period_end,
    r.weeks,
    r.first_week,
    r.last_week,
    r.complete,
    r.aiv_pct_avg,
    r.aiv_pct_min,
    r.aiv_pct_max,
    r.aiv_pct_last,
    r.ati_pct_avg,
    r.ati_pct_min,
    r.ati_pct_max,
    r.ati_pct_last,
    r.crs_pct_avg,
    r.crs_pct_min,
    r.crs_pct_max,
    r.crs_pct_last,
    r.elasticity_usd_per_point_avg,
    r.elasticity_usd_per_point_min,
    r.elasticity_usd_per_point_max,
    r.elasticity_usd_per_point_last,
    r.vli_integrity_pct_avg,
    r.vli_integrity_pct_min,
    r.vli_integrity_pct_max,
    r.vli_integrity_pct_last,
    r.hrp_pct_avg,
    r.hrp_pct_min,
    r.hrp_pct_max,
    r.hrp_pct_last,
    r.vli_fallback_weeks,
    r.hrp_weeks
   FROM (kpi.kpi_history_rollups r
     JOIN kpi.tenants t ON ((t.id = r.tenant_id)))
  WHERE (r.period = 'quarter'::text);


--
-- Name: VIEW kpi_history_quarterly; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON VIEW api.kpi_history_quarterly IS 'Quarterly rollups of the active tenant''s weekly KPIs (the x-tenant header, or the only tenant of the token), one row per quarter with history. A week counts in the quarter of its Thursday (as_of + 3, ISO 8601). As the owner in psql: every tenant. PostgREST filters apply.
Example: GET /kpi_history_quarterly?order=period_start.desc&limit=4';


--
-- Name: COLUMN kpi_history_quarterly.tenant; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.tenant IS 'The tenant''s slug. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.period_start; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.period_start IS 'First day of the period. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.period_end; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.period_end IS 'Last day of the period. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.weeks IS 'Weekly rows in the period (weeks whose Thursday falls in it). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.first_week; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.first_week IS 'as_of (Monday) of the earliest week in the period. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.last_week; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.last_week IS 'as_of (Monday) of the latest week in the period; the *_last columns are its values. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.complete; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.complete IS 'True when the period has ended (UTC): no more weeks will join it. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.aiv_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.aiv_pct_avg IS 'Mean of the weeks'' aiv_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.aiv_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.aiv_pct_min IS 'Lowest aiv_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.aiv_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.aiv_pct_max IS 'Highest aiv_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.aiv_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.aiv_pct_last IS 'aiv_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.ati_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.ati_pct_avg IS 'Mean of the weeks'' ati_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.ati_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.ati_pct_min IS 'Lowest ati_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.ati_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.ati_pct_max IS 'Highest ati_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.ati_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.ati_pct_last IS 'ati_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.crs_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.crs_pct_avg IS 'Mean of the weeks'' crs_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.crs_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.crs_pct_min IS 'Lowest crs_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.crs_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.crs_pct_max IS 'Highest crs_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.crs_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.crs_pct_last IS 'crs_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.elasticity_usd_per_point_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.elasticity_usd_per_point_avg IS 'Mean of the weeks'' elasticity_usd_per_point, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.elasticity_usd_per_point_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.elasticity_usd_per_point_min IS 'Lowest elasticity_usd_per_point of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.elasticity_usd_per_point_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.elasticity_usd_per_point_max IS 'Highest elasticity_usd_per_point of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.elasticity_usd_per_point_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.elasticity_usd_per_point_last IS 'elasticity_usd_per_point of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.vli_integrity_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.vli_integrity_pct_avg IS 'Mean of the weeks'' vli_integrity_pct, rounded to 2 decimals (NULLs ignored). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.vli_integrity_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.vli_integrity_pct_min IS 'Lowest vli_integrity_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.vli_integrity_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.vli_integrity_pct_max IS 'Highest vli_integrity_pct of the weeks. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.vli_integrity_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.vli_integrity_pct_last IS 'vli_integrity_pct of the latest week (last_week). Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.hrp_pct_avg; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.hrp_pct_avg IS 'Mean of the weeks'' hrp_pct, rounded to 2 decimals (NULLs ignored).';


--
-- Name: COLUMN kpi_history_quarterly.hrp_pct_min; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.hrp_pct_min IS 'Lowest hrp_pct of the weeks.';


--
-- Name: COLUMN kpi_history_quarterly.hrp_pct_max; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.hrp_pct_max IS 'Highest hrp_pct of the weeks.';


--
-- Name: COLUMN kpi_history_quarterly.hrp_pct_last; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.hrp_pct_last IS 'hrp_pct of the latest week (last_week); NULL when that week has none, even if earlier weeks do.';


--
-- Name: COLUMN kpi_history_quarterly.vli_fallback_weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.vli_fallback_weeks IS 'Weeks whose vli_integrity_pct is the fallback 100 (no audit yet); they count in the VLI figures. Never NULL.';


--
-- Name: COLUMN kpi_history_quarterly.hrp_weeks; Type: COMMENT; Schema: api; Owner: -
--

COMMENT ON COLUMN api.kpi_history_quarterly.hrp_weeks IS 'Weeks with an HRP; the hrp_pct figures are over these weeks only. Never NULL.';


--
-- Name: alert_settings; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.alert_settings (
    singleton boolean DEFAULT true NOT NULL,
    max_alert_age interval DEFAULT '28 days'::interval NOT NULL,
    retry_window interval DEFAULT '24:00:00'::interval NOT NULL,
    CONSTRAINT alert_settings_positive CHECK (((max_alert_age >= '00:00:00'::interval) AND (retry_window > '00:00:00'::interval))),
    CONSTRAINT alert_settings_singleton CHECK (singleton)
);

ALTER TABLE ONLY kpi.alert_settings FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE alert_settings; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.alert_settings IS 'How alerts are enqueued, retried and kept (one row).';


--
-- Name: alert_webhooks; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.alert_webhooks (
    tenant_id uuid NOT NULL,
    url text NOT NULL,
    CONSTRAINT alert_webhooks_url CHECK ((url ~ '^https?://[^\s]+$'::text))
);

ALTER TABLE ONLY kpi.alert_webhooks FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE alert_webhooks; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.alert_webhooks IS 'A tenant''s own webhook URL for its alerts, instead of the worker''s KPI_ALERT_WEBHOOK_URL.';


--
-- Name: alerts; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.alerts (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    as_of date NOT NULL,
    kpi text NOT NULL,
    payload jsonb NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    claimed_by text,
    last_status integer,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    CONSTRAINT alerts_finished_when_not_pending CHECK (((status = 'pending'::text) = (finished_at IS NULL))),
    CONSTRAINT alerts_status CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'dead'::text, 'suppressed'::text])))
);

ALTER TABLE ONLY kpi.alerts FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE alerts; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.alerts IS 'One alert per new or changed anomaly, written in the same transaction; pending until a worker delivers it (at least once), dead after the retry window or a 4xx answer, suppressed when the week is older than alert_settings.max_alert_age.';


--
-- Name: alerts_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.alerts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.alerts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: anomaly_rules; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.anomaly_rules (
    kpi text NOT NULL,
    threshold numeric NOT NULL,
    min_delta numeric,
    min_delta_of_median numeric,
    CONSTRAINT anomaly_rules_kpi CHECK ((kpi = ANY (ARRAY['aiv_pct'::text, 'ati_pct'::text, 'crs_pct'::text, 'elasticity_usd_per_point'::text, 'vli_integrity_pct'::text, 'hrp_pct'::text, 'custom'::text]))),
    CONSTRAINT anomaly_rules_min_delta_not_negative CHECK (((min_delta >= (0)::numeric) AND (min_delta_of_median >= (0)::numeric))),
    CONSTRAINT anomaly_rules_some_min_delta CHECK (((min_delta IS NOT NULL) OR (min_delta_of_median IS NOT NULL))),
    CONSTRAINT anomaly_rules_threshold_positive CHECK ((threshold > (0)::numeric))
);

ALTER TABLE ONLY kpi.anomaly_rules FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE anomaly_rules; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.anomaly_rules IS 'Default anomaly rule per KPI: |modified z-score| > threshold and |value - median| >= greatest(min_delta, min_delta_of_median * |median|). Changing a row re-scores every tenant''s history.';


--
-- Name: api_denials; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.api_denials (
    id bigint NOT NULL,
    denied_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    endpoint text NOT NULL,
    reason text NOT NULL,
    db_role text DEFAULT CURRENT_USER NOT NULL,
    jwt_sub text,
    minute timestamp with time zone GENERATED ALWAYS AS (date_bin('00:01:00'::interval, denied_at, '2000-01-01 00:00:00+00'::timestamp with time zone)) STORED,
    denials integer DEFAULT 1 NOT NULL,
    last_denied_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT api_denials_denials_positive CHECK ((denials > 0))
);

ALTER TABLE ONLY kpi.api_denials FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE api_denials; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.api_denials IS 'Audit of refused API calls (missing or wrong cron secret…): one row per endpoint, reason, role, JWT subject and minute, with the number of denials. Holds no secret.';


--
-- Name: COLUMN api_denials.denied_at; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.api_denials.denied_at IS 'The first denial of this kind in the minute.';


--
-- Name: COLUMN api_denials.denials; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.api_denials.denials IS 'How many calls of this kind were denied in the minute.';


--
-- Name: api_denials_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.api_denials ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.api_denials_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: avi_reports; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.avi_reports (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    week_start date NOT NULL,
    aiv_pct numeric(5,2) NOT NULL,
    ati_pct numeric(5,2) NOT NULL,
    crs_pct numeric(5,2) NOT NULL,
    elasticity_usd_per_point numeric(10,2) NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT avi_reports_aiv_pct_range CHECK (((aiv_pct >= (0)::numeric) AND (aiv_pct <= (100)::numeric))),
    CONSTRAINT avi_reports_ati_pct_range CHECK (((ati_pct >= (0)::numeric) AND (ati_pct <= (100)::numeric))),
    CONSTRAINT avi_reports_crs_pct_range CHECK (((crs_pct >= (0)::numeric) AND (crs_pct <= (100)::numeric))),
    CONSTRAINT avi_reports_week_start_is_monday CHECK ((EXTRACT(isodow FROM week_start) = (1)::numeric))
);

ALTER TABLE ONLY kpi.avi_reports FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE avi_reports; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.avi_reports IS 'One AVI report per tenant per week; week_start is the Monday the week begins.';


--
-- Name: COLUMN avi_reports.elasticity_usd_per_point; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.avi_reports.elasticity_usd_per_point IS 'Revenue change in US dollars per percentage point of AIV.';


--
-- Name: avi_reports_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.avi_reports ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.avi_reports_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: change_feed_settings; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.change_feed_settings (
    singleton boolean DEFAULT true NOT NULL,
    keep interval DEFAULT '30 days'::interval NOT NULL,
    pruned_txid xid8 DEFAULT '0'::xid8 NOT NULL,
    pruned_seq bigint DEFAULT 0 NOT NULL,
    CONSTRAINT change_feed_settings_keep_positive CHECK ((keep > '00:00:00'::interval)),
    CONSTRAINT change_feed_settings_singleton CHECK (singleton)
);

ALTER TABLE ONLY kpi.change_feed_settings FORCE ROW LEVEL SECURITY;


--
-- Name: clarity_reports; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.clarity_reports (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    measured_at timestamp with time zone NOT NULL,
    metrics jsonb NOT NULL,
    hrp jsonb GENERATED ALWAYS AS ((metrics -> 'hrp'::text)) STORED,
    CONSTRAINT clarity_reports_metrics_is_object CHECK ((jsonb_typeof(metrics) = 'object'::text))
);

ALTER TABLE ONLY kpi.clarity_reports FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE clarity_reports; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.clarity_reports IS 'Clarity measurements; metrics->''hrp'' is the hallucination-risk probability (0 to 1).';


--
-- Name: clarity_reports_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.clarity_reports ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.clarity_reports_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: cron_secrets; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.cron_secrets (
    id bigint NOT NULL,
    salt bytea NOT NULL,
    secret_sha256 bytea NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    retired_at timestamp with time zone
);

ALTER TABLE ONLY kpi.cron_secrets FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE cron_secrets; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.cron_secrets IS 'Hashes of the secrets that authorize POST /rpc/kpi_history_cron; rows with retired_at NULL are active.';


--
-- Name: cron_secrets_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.cron_secrets ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.cron_secrets_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: custom_kpi_settings; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.custom_kpi_settings (
    singleton boolean DEFAULT true NOT NULL,
    max_active_per_tenant integer DEFAULT 20 NOT NULL,
    max_per_tenant integer DEFAULT 100 NOT NULL,
    CONSTRAINT custom_kpi_settings_max_active CHECK (((max_active_per_tenant >= 0) AND (max_active_per_tenant <= 1000))),
    CONSTRAINT custom_kpi_settings_max_total CHECK (((max_per_tenant >= max_active_per_tenant) AND (max_per_tenant <= 1000))),
    CONSTRAINT custom_kpi_settings_singleton CHECK (singleton)
);

ALTER TABLE ONLY kpi.custom_kpi_settings FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE custom_kpi_settings; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.custom_kpi_settings IS 'One row: how many custom KPIs a tenant may have, active (default 20) and in all (default 100).';


--
-- Name: definitions_state; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.definitions_state (
    singleton boolean DEFAULT true NOT NULL,
    checksum text NOT NULL,
    migration_version text,
    files jsonb NOT NULL,
    applied_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    applied_by text DEFAULT CURRENT_USER NOT NULL,
    CONSTRAINT definitions_state_one_row CHECK (singleton)
);

ALTER TABLE ONLY kpi.definitions_state FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE definitions_state; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.definitions_state IS 'The definitions (db/definitions/*.sql) last applied by scripts/migrate.sh: their checksum, the latest migration then, and when. One row.';


--
-- Name: error_codes; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.error_codes (
    code text NOT NULL,
    sqlstate character(5) NOT NULL,
    http_status smallint NOT NULL,
    description text NOT NULL,
    CONSTRAINT error_codes_code_format CHECK ((code ~ '^[A-Z][A-Z_]*$'::text)),
    CONSTRAINT error_codes_sqlstate_format CHECK ((sqlstate ~ '^KH[0-9]{3}$'::text))
);

ALTER TABLE ONLY kpi.error_codes FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE error_codes; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.error_codes IS 'Stable error codes: raised with SQLSTATE class KH, answered over HTTP as {"code": code}.';


--
-- Name: COLUMN error_codes.code; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.error_codes.code IS 'Also used as warning codes: INVALID_CLARITY (a clarity report whose hrp is not a number in 0..1).';


--
-- Name: kpi_changes; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.kpi_changes (
    tenant_id uuid NOT NULL,
    txid xid8 DEFAULT pg_current_xact_id() NOT NULL,
    seq bigint NOT NULL,
    entity text NOT NULL,
    op text NOT NULL,
    as_of date NOT NULL,
    kpi text,
    data jsonb,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    history_row kpi.history_change,
    CONSTRAINT kpi_changes_entity CHECK ((entity = ANY (ARRAY['history'::text, 'anomaly'::text, 'custom_values'::text]))),
    CONSTRAINT kpi_changes_op CHECK ((op = ANY (ARRAY['insert'::text, 'update'::text, 'delete'::text])))
);

ALTER TABLE ONLY kpi.kpi_changes FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE kpi_changes; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.kpi_changes IS 'The change feed: each insert, update and delete of kpi_history and kpi_anomalies, in the writing transaction. Read it with api.kpi_history_changes (or kpi_api.changes_page); pruned by kpi.clean_up_run_history after change_feed_settings.keep.';


--
-- Name: COLUMN kpi_changes.history_row; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_changes.history_row IS 'For a history insert or update: the row after the change (readers turn it into the API''s JSON); data is then NULL.';


--
-- Name: kpi_changes_seq_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_changes ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.kpi_changes_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: kpi_runs; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.kpi_runs (
    id bigint NOT NULL,
    kind text NOT NULL,
    tenant_id uuid,
    range_from date,
    range_to date,
    trigger text NOT NULL,
    db_user text DEFAULT CURRENT_USER NOT NULL,
    application_name text,
    backend_pid integer DEFAULT pg_backend_pid() NOT NULL,
    status text DEFAULT 'running'::text NOT NULL,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    finished_at timestamp with time zone,
    duration_ms numeric GENERATED ALWAYS AS (round((EXTRACT(epoch FROM (finished_at - started_at)) * (1000)::numeric), 3)) STORED,
    ok_count integer,
    total_count integer,
    rows_written integer,
    errors jsonb DEFAULT '[]'::jsonb NOT NULL,
    warnings jsonb DEFAULT '[]'::jsonb NOT NULL,
    lock_holder jsonb,
    details jsonb,
    mode text,
    CONSTRAINT kpi_runs_errors_is_array CHECK ((jsonb_typeof(errors) = 'array'::text)),
    CONSTRAINT kpi_runs_finished_when_not_running CHECK (((status = 'running'::text) = (finished_at IS NULL))),
    CONSTRAINT kpi_runs_kind CHECK ((kind = ANY (ARRAY['fill'::text, 'fill_all'::text, 'backfill'::text, 'cleanup'::text, 'rescore'::text]))),
    CONSTRAINT kpi_runs_mode CHECK ((mode = ANY (ARRAY['incremental'::text, 'full'::text]))),
    CONSTRAINT kpi_runs_status CHECK ((status = ANY (ARRAY['running'::text, 'ok'::text, 'partial'::text, 'failed'::text, 'skipped'::text]))),
    CONSTRAINT kpi_runs_trigger CHECK ((trigger = ANY (ARRAY['pg_cron'::text, 'api'::text, 'sql'::text]))),
    CONSTRAINT kpi_runs_warnings_is_array CHECK ((jsonb_typeof(warnings) = 'array'::text))
);

ALTER TABLE ONLY kpi.kpi_runs FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE kpi_runs; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.kpi_runs IS 'One row per aggregation run: trigger, status, counts, errors and warnings. Kept 90 days.';


--
-- Name: COLUMN kpi_runs.status; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_runs.status IS 'ok: every tenant done; partial: some tenants had errors; failed: the run stopped with an error (see errors; a batched run keeps the batches before it); skipped: another all-tenant run held the lock; running: not finished.';


--
-- Name: COLUMN kpi_runs.lock_holder; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_runs.lock_holder IS 'For a skipped run: the session that held the all-tenant lock, {"pid", "since", "run_id", "application_name"}.';


--
-- Name: COLUMN kpi_runs.details; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_runs.details IS 'What a run did beyond the counts: for a cleanup, the source rows deleted per table, the batches and the longest batch.';


--
-- Name: COLUMN kpi_runs.mode; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_runs.mode IS 'For an all-tenant fill: incremental (the recorded changes) or full (every tenant, reconciling).';


--
-- Name: kpi_runs_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_runs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.kpi_runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: source_changes; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.source_changes (
    id bigint NOT NULL,
    tenant_ids uuid[] NOT NULL,
    from_weeks date[] NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT source_changes_same_length CHECK ((cardinality(tenant_ids) = cardinality(from_weeks)))
);

ALTER TABLE ONLY kpi.source_changes FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE source_changes; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.source_changes IS 'What each write to the source tables made stale: its tenants and, for each, the earliest week whose history may have changed. Written by triggers; consumed by the incremental fill. kpi.stale_tenants shows it per tenant.';


--
-- Name: source_changes_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.source_changes ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.source_changes_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: stale_tenants; Type: VIEW; Schema: kpi; Owner: -
--

CREATE VIEW kpi.stale_tenants AS
 SELECT c.tenant_id,
    min(c.from_week) AS from_week,
    count(DISTINCT s.id) AS changes,
    min(s.recorded_at) AS since
   FROM (kpi.source_changes s
     CROSS JOIN LATERAL UNNEST(s.tenant_ids, s.from_weeks) c(tenant_id, from_week))
  WHERE (EXISTS ( SELECT
           FROM kpi.tenants t
          WHERE (t.id = c.tenant_id)))
  GROUP BY c.tenant_id;


--
-- Name: VIEW stale_tenants; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON VIEW kpi.stale_tenants IS 'The tenants whose history may be stale, and from which week: what the next incremental fill reads.';


--
-- Name: table_distribution; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.table_distribution (
    table_name text NOT NULL,
    placement text NOT NULL,
    distribution_column text,
    colocate_with text,
    why text NOT NULL,
    CONSTRAINT table_distribution_column_iff_distributed CHECK (((placement = 'distributed'::text) = (distribution_column IS NOT NULL))),
    CONSTRAINT table_distribution_placement CHECK ((placement = ANY (ARRAY['distributed'::text, 'reference'::text, 'local'::text])))
);

ALTER TABLE ONLY kpi.table_distribution FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE table_distribution; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.table_distribution IS 'Placement of every kpi table on a distributed (Citus) deployment: distributed by tenant and co-located, replicated reference tables, or local to the coordinator. kpi.citus_commands() turns it into the commands.';


--
-- Name: tenant_anomaly_rules; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenant_anomaly_rules (
    tenant_id uuid NOT NULL,
    kpi text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    threshold numeric,
    min_delta numeric,
    min_delta_of_median numeric,
    CONSTRAINT tenant_anomaly_rules_min_delta_not_negative CHECK (((min_delta >= (0)::numeric) AND (min_delta_of_median >= (0)::numeric))),
    CONSTRAINT tenant_anomaly_rules_threshold_positive CHECK ((threshold > (0)::numeric))
);

ALTER TABLE ONLY kpi.tenant_anomaly_rules FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE tenant_anomaly_rules; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenant_anomaly_rules IS 'Per-tenant overrides of kpi.anomaly_rules (NULL columns keep the default), or enabled = false to switch a KPI off. Changing a row re-scores that tenant''s history.';


--
-- Name: tenant_count; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenant_count (
    singleton boolean DEFAULT true NOT NULL,
    tenants bigint NOT NULL,
    CONSTRAINT tenant_count_not_negative CHECK ((tenants >= 0)),
    CONSTRAINT tenant_count_one_row CHECK (singleton)
);

ALTER TABLE ONLY kpi.tenant_count FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE tenant_count; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenant_count IS 'The number of tenants (one row), kept by triggers on kpi.tenants.';


--
-- Name: tenant_members; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenant_members (
    tenant_id uuid NOT NULL,
    user_id uuid NOT NULL,
    role text DEFAULT 'member'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenant_members_role CHECK ((role = ANY (ARRAY['member'::text, 'kpi_admin'::text])))
);

ALTER TABLE ONLY kpi.tenant_members FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE tenant_members; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenant_members IS 'Which users (the token''s sub) belong to which tenant, and as what: member, or kpi_admin (defines custom KPIs). Read when a token is issued.';


--
-- Name: tenant_slugs; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenant_slugs (
    slug text NOT NULL,
    tenant_id uuid NOT NULL
);

ALTER TABLE ONLY kpi.tenant_slugs FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE tenant_slugs; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenant_slugs IS 'Every tenant''s slug, unique across tenants: kept from kpi.tenants by triggers (on Citus, a reference table).';


--
-- Name: tenants_without_avi; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenants_without_avi (
    tenant_id uuid NOT NULL
);

ALTER TABLE ONLY kpi.tenants_without_avi FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE tenants_without_avi; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenants_without_avi IS 'Tenants that have no AVI report (NO_AVI), kept by triggers on kpi.tenants and kpi.avi_reports.';


--
-- Name: vli_audits; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.vli_audits (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    audited_at timestamp with time zone NOT NULL,
    integrity_pct numeric(5,2) NOT NULL,
    CONSTRAINT vli_audits_integrity_pct_range CHECK (((integrity_pct >= (0)::numeric) AND (integrity_pct <= (100)::numeric)))
);

ALTER TABLE ONLY kpi.vli_audits FORCE ROW LEVEL SECURITY;


--
-- Name: TABLE vli_audits; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.vli_audits IS 'VLI audits; the latest one before the end of a week gives that week''s integrity.';


--
-- Name: vli_audits_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.vli_audits ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.vli_audits_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version character varying(128) NOT NULL
);


--
-- Name: alert_settings alert_settings_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.alert_settings
    ADD CONSTRAINT alert_settings_pkey PRIMARY KEY (singleton);


--
-- Name: alert_webhooks alert_webhooks_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.alert_webhooks
    ADD CONSTRAINT alert_webhooks_pkey PRIMARY KEY (tenant_id);


--
-- Name: alerts alerts_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.alerts
    ADD CONSTRAINT alerts_pkey PRIMARY KEY (tenant_id, id);


--
-- Name: anomaly_rules anomaly_rules_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.anomaly_rules
    ADD CONSTRAINT anomaly_rules_pkey PRIMARY KEY (kpi);


--
-- Name: api_denials api_denials_one_row_per_kind_and_minute; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.api_denials
    ADD CONSTRAINT api_denials_one_row_per_kind_and_minute UNIQUE NULLS NOT DISTINCT (endpoint, reason, db_role, jwt_sub, minute);


--
-- Name: api_denials api_denials_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.api_denials
    ADD CONSTRAINT api_denials_pkey PRIMARY KEY (id);


--
-- Name: avi_reports avi_reports_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.avi_reports
    ADD CONSTRAINT avi_reports_pkey PRIMARY KEY (tenant_id, week_start) INCLUDE (aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point);


--
-- Name: change_feed_settings change_feed_settings_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.change_feed_settings
    ADD CONSTRAINT change_feed_settings_pkey PRIMARY KEY (singleton);


--
-- Name: clarity_reports clarity_reports_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.clarity_reports
    ADD CONSTRAINT clarity_reports_pkey PRIMARY KEY (tenant_id, measured_at, id) INCLUDE (hrp);


--
-- Name: cron_secrets cron_secrets_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.cron_secrets
    ADD CONSTRAINT cron_secrets_pkey PRIMARY KEY (id);


--
-- Name: custom_kpi_settings custom_kpi_settings_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.custom_kpi_settings
    ADD CONSTRAINT custom_kpi_settings_pkey PRIMARY KEY (singleton);


--
-- Name: custom_kpi_weeks custom_kpi_weeks_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.custom_kpi_weeks
    ADD CONSTRAINT custom_kpi_weeks_pkey PRIMARY KEY (tenant_id, as_of);


--
-- Name: custom_kpis custom_kpis_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.custom_kpis
    ADD CONSTRAINT custom_kpis_pkey PRIMARY KEY (tenant_id, key);


--
-- Name: definitions_state definitions_state_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.definitions_state
    ADD CONSTRAINT definitions_state_pkey PRIMARY KEY (singleton);


--
-- Name: error_codes error_codes_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.error_codes
    ADD CONSTRAINT error_codes_pkey PRIMARY KEY (code);


--
-- Name: error_codes error_codes_sqlstate_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.error_codes
    ADD CONSTRAINT error_codes_sqlstate_key UNIQUE (sqlstate);


--
-- Name: kpi_anomalies kpi_anomalies_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_anomalies
    ADD CONSTRAINT kpi_anomalies_pkey PRIMARY KEY (tenant_id, as_of, kpi);


--
-- Name: kpi_changes kpi_changes_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_changes
    ADD CONSTRAINT kpi_changes_pkey PRIMARY KEY (tenant_id, txid, seq);


--
-- Name: kpi_history kpi_history_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_pkey PRIMARY KEY (tenant_id, as_of);


--
-- Name: kpi_runs kpi_runs_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_runs
    ADD CONSTRAINT kpi_runs_pkey PRIMARY KEY (id);


--
-- Name: plans plans_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.plans
    ADD CONSTRAINT plans_pkey PRIMARY KEY (plan);


--
-- Name: retention_state retention_state_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.retention_state
    ADD CONSTRAINT retention_state_pkey PRIMARY KEY (singleton);


--
-- Name: source_changes source_changes_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.source_changes
    ADD CONSTRAINT source_changes_pkey PRIMARY KEY (id);


--
-- Name: table_distribution table_distribution_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.table_distribution
    ADD CONSTRAINT table_distribution_pkey PRIMARY KEY (table_name);


--
-- Name: tenant_anomaly_rules tenant_anomaly_rules_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_anomaly_rules
    ADD CONSTRAINT tenant_anomaly_rules_pkey PRIMARY KEY (tenant_id, kpi);


--
-- Name: tenant_count tenant_count_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_count
    ADD CONSTRAINT tenant_count_pkey PRIMARY KEY (singleton);


--
-- Name: tenant_members tenant_members_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_members
    ADD CONSTRAINT tenant_members_pkey PRIMARY KEY (tenant_id, user_id);


--
-- Name: tenant_slugs tenant_slugs_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_slugs
    ADD CONSTRAINT tenant_slugs_pkey PRIMARY KEY (slug);


--
-- Name: tenant_slugs tenant_slugs_tenant_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_slugs
    ADD CONSTRAINT tenant_slugs_tenant_key UNIQUE (tenant_id);


--
-- Name: tenants tenants_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenants
    ADD CONSTRAINT tenants_pkey PRIMARY KEY (id);


--
-- Name: tenants_without_avi tenants_without_avi_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenants_without_avi
    ADD CONSTRAINT tenants_without_avi_pkey PRIMARY KEY (tenant_id);


--
-- Name: vli_audits vli_audits_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.vli_audits
    ADD CONSTRAINT vli_audits_pkey PRIMARY KEY (tenant_id, audited_at, id) INCLUDE (integrity_pct);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: alerts_anomaly; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX alerts_anomaly ON kpi.alerts USING btree (tenant_id, as_of, kpi);


--
-- Name: alerts_dead; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX alerts_dead ON kpi.alerts USING btree (finished_at) WHERE (status = 'dead'::text);


--
-- Name: alerts_due; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX alerts_due ON kpi.alerts USING btree (next_attempt_at) WHERE (status = 'pending'::text);


--
-- Name: api_denials_denied_at_idx; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX api_denials_denied_at_idx ON kpi.api_denials USING btree (denied_at DESC);


--
-- Name: custom_kpis_pending; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX custom_kpis_pending ON kpi.custom_kpis USING btree (tenant_id) WHERE (derived_revision IS DISTINCT FROM revision);


--
-- Name: kpi_changes_position; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX kpi_changes_position ON kpi.kpi_changes USING btree (txid, seq);


--
-- Name: kpi_runs_running; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX kpi_runs_running ON kpi.kpi_runs USING btree (backend_pid) WHERE (status = 'running'::text);


--
-- Name: kpi_runs_started_at_idx; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX kpi_runs_started_at_idx ON kpi.kpi_runs USING btree (started_at DESC);


--
-- Name: tenant_members_by_user; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX tenant_members_by_user ON kpi.tenant_members USING btree (user_id);


--
-- Name: alerts alerts_notify; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER alerts_notify AFTER INSERT ON kpi.alerts REFERENCING NEW TABLE AS new_alerts FOR EACH STATEMENT EXECUTE FUNCTION kpi.notify_alert_workers();


--
-- Name: anomaly_rules anomaly_rules_rescore_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER anomaly_rules_rescore_insert AFTER INSERT ON kpi.anomaly_rules REFERENCING NEW TABLE AS changed_new FOR EACH STATEMENT EXECUTE FUNCTION kpi.rescore_after_rule_change();


--
-- Name: anomaly_rules anomaly_rules_rescore_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER anomaly_rules_rescore_update AFTER UPDATE ON kpi.anomaly_rules REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new FOR EACH STATEMENT EXECUTE FUNCTION kpi.rescore_after_rule_change();


--
-- Name: avi_reports avi_reports_track_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER avi_reports_track_delete AFTER DELETE ON kpi.avi_reports REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('week_start');


--
-- Name: avi_reports avi_reports_track_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER avi_reports_track_insert AFTER INSERT ON kpi.avi_reports REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('week_start');


--
-- Name: avi_reports avi_reports_track_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER avi_reports_track_update AFTER UPDATE ON kpi.avi_reports REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('week_start');


--
-- Name: clarity_reports clarity_reports_track_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER clarity_reports_track_delete AFTER DELETE ON kpi.clarity_reports REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('date_trunc(''week'', measured_at at time zone ''UTC'')::date');


--
-- Name: clarity_reports clarity_reports_track_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER clarity_reports_track_insert AFTER INSERT ON kpi.clarity_reports REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('date_trunc(''week'', measured_at at time zone ''UTC'')::date');


--
-- Name: clarity_reports clarity_reports_track_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER clarity_reports_track_update AFTER UPDATE ON kpi.clarity_reports REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('date_trunc(''week'', measured_at at time zone ''UTC'')::date');


--
-- Name: custom_kpi_weeks custom_kpi_weeks_logged_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpi_weeks_logged_delete AFTER DELETE ON kpi.custom_kpi_weeks REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('custom_values');


--
-- Name: custom_kpi_weeks custom_kpi_weeks_logged_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpi_weeks_logged_insert AFTER INSERT ON kpi.custom_kpi_weeks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('custom_values');


--
-- Name: custom_kpi_weeks custom_kpi_weeks_logged_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpi_weeks_logged_update AFTER UPDATE ON kpi.custom_kpi_weeks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('custom_values');


--
-- Name: custom_kpi_weeks custom_kpi_weeks_scored_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpi_weeks_scored_delete AFTER DELETE ON kpi.custom_kpi_weeks REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.score_written_weeks('custom');


--
-- Name: custom_kpi_weeks custom_kpi_weeks_scored_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpi_weeks_scored_insert AFTER INSERT ON kpi.custom_kpi_weeks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.score_written_weeks('custom');


--
-- Name: custom_kpi_weeks custom_kpi_weeks_scored_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpi_weeks_scored_update AFTER UPDATE ON kpi.custom_kpi_weeks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.score_written_weeks('custom');


--
-- Name: custom_kpis custom_kpis_apply_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpis_apply_delete AFTER DELETE ON kpi.custom_kpis REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.apply_custom_kpi_changes();


--
-- Name: custom_kpis custom_kpis_apply_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpis_apply_insert AFTER INSERT ON kpi.custom_kpis REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.apply_custom_kpi_changes();


--
-- Name: custom_kpis custom_kpis_apply_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpis_apply_update AFTER UPDATE ON kpi.custom_kpis REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.apply_custom_kpi_changes();


--
-- Name: custom_kpis custom_kpis_check_row; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpis_check_row BEFORE INSERT OR DELETE ON kpi.custom_kpis FOR EACH ROW EXECUTE FUNCTION kpi.check_custom_kpi_row();


--
-- Name: custom_kpis custom_kpis_check_row_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER custom_kpis_check_row_update BEFORE UPDATE ON kpi.custom_kpis FOR EACH ROW WHEN ((((((((((((((((old.tenant_id IS DISTINCT FROM new.tenant_id) OR (old.key IS DISTINCT FROM new.key)) OR (old.label IS DISTINCT FROM new.label)) OR (old.unit IS DISTINCT FROM new.unit)) OR (old.source IS DISTINCT FROM new.source)) OR (old.path IS DISTINCT FROM new.path)) OR (old.field IS DISTINCT FROM new.field)) OR (old.aggregate IS DISTINCT FROM new.aggregate)) OR (old.combine IS DISTINCT FROM new.combine)) OR (old.left_kpi IS DISTINCT FROM new.left_kpi)) OR (old.right_kpi IS DISTINCT FROM new.right_kpi)) OR (old.valid_min IS DISTINCT FROM new.valid_min)) OR (old.valid_max IS DISTINCT FROM new.valid_max)) OR (old.active IS DISTINCT FROM new.active)) OR (old.revision IS DISTINCT FROM new.revision))) EXECUTE FUNCTION kpi.check_custom_kpi_row();


--
-- Name: kpi_anomalies kpi_anomalies_logged_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_anomalies_logged_delete AFTER DELETE ON kpi.kpi_anomalies REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('anomaly');


--
-- Name: kpi_anomalies kpi_anomalies_logged_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_anomalies_logged_insert AFTER INSERT ON kpi.kpi_anomalies REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('anomaly');


--
-- Name: kpi_anomalies kpi_anomalies_logged_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_anomalies_logged_update AFTER UPDATE ON kpi.kpi_anomalies REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('anomaly');


--
-- Name: kpi_history kpi_history_logged_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_history_logged_delete AFTER DELETE ON kpi.kpi_history REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('history');


--
-- Name: kpi_history kpi_history_logged_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_history_logged_insert AFTER INSERT ON kpi.kpi_history REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('history');


--
-- Name: kpi_history kpi_history_logged_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_history_logged_update AFTER UPDATE ON kpi.kpi_history REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.log_changes('history');


--
-- Name: kpi_history kpi_history_revision; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_history_revision BEFORE UPDATE ON kpi.kpi_history FOR EACH ROW EXECUTE FUNCTION kpi.raise_history_revision();


--
-- Name: kpi_history kpi_history_scored_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_history_scored_insert AFTER INSERT ON kpi.kpi_history REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.score_written_weeks('built_in');


--
-- Name: kpi_history kpi_history_scored_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER kpi_history_scored_update AFTER UPDATE ON kpi.kpi_history REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.score_written_weeks('built_in');


--
-- Name: plans plans_keep_source_horizon; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER plans_keep_source_horizon AFTER UPDATE ON kpi.plans REFERENCING OLD TABLE AS old_plans NEW TABLE AS new_plans FOR EACH STATEMENT EXECUTE FUNCTION kpi.keep_plan_source_horizon();


--
-- Name: tenant_anomaly_rules tenant_anomaly_rules_rescore_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenant_anomaly_rules_rescore_delete AFTER DELETE ON kpi.tenant_anomaly_rules REFERENCING OLD TABLE AS changed_old FOR EACH STATEMENT EXECUTE FUNCTION kpi.rescore_after_rule_change();


--
-- Name: tenant_anomaly_rules tenant_anomaly_rules_rescore_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenant_anomaly_rules_rescore_insert AFTER INSERT ON kpi.tenant_anomaly_rules REFERENCING NEW TABLE AS changed_new FOR EACH STATEMENT EXECUTE FUNCTION kpi.rescore_after_rule_change();


--
-- Name: tenant_anomaly_rules tenant_anomaly_rules_rescore_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenant_anomaly_rules_rescore_update AFTER UPDATE ON kpi.tenant_anomaly_rules REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new FOR EACH STATEMENT EXECUTE FUNCTION kpi.rescore_after_rule_change();


--
-- Name: tenants tenants_keep_slugs_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_keep_slugs_delete AFTER DELETE ON kpi.tenants REFERENCING OLD TABLE AS old_tenants FOR EACH STATEMENT EXECUTE FUNCTION kpi.keep_tenant_slugs();


--
-- Name: tenants tenants_keep_slugs_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_keep_slugs_insert AFTER INSERT ON kpi.tenants REFERENCING NEW TABLE AS new_tenants FOR EACH STATEMENT EXECUTE FUNCTION kpi.keep_tenant_slugs();


--
-- Name: tenants tenants_keep_slugs_truncate; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_keep_slugs_truncate AFTER TRUNCATE ON kpi.tenants FOR EACH STATEMENT EXECUTE FUNCTION kpi.truncate_tenant_slugs();


--
-- Name: tenants tenants_keep_slugs_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_keep_slugs_update AFTER UPDATE ON kpi.tenants REFERENCING OLD TABLE AS old_tenants NEW TABLE AS new_tenants FOR EACH STATEMENT EXECUTE FUNCTION kpi.keep_tenant_slugs();


--
-- Name: tenants tenants_keep_source_horizon; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_keep_source_horizon BEFORE UPDATE OF plan, source_retention_days ON kpi.tenants FOR EACH ROW WHEN (((old.plan IS DISTINCT FROM new.plan) OR (old.source_retention_days IS DISTINCT FROM new.source_retention_days))) EXECUTE FUNCTION kpi.keep_source_horizon();


--
-- Name: tenants tenants_track_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_track_delete AFTER DELETE ON kpi.tenants REFERENCING OLD TABLE AS old_tenants FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_tenants();


--
-- Name: tenants tenants_track_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_track_insert AFTER INSERT ON kpi.tenants REFERENCING NEW TABLE AS new_tenants FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_tenants();


--
-- Name: tenants tenants_track_truncate; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER tenants_track_truncate AFTER TRUNCATE ON kpi.tenants FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_tenants();


--
-- Name: vli_audits vli_audits_track_delete; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER vli_audits_track_delete AFTER DELETE ON kpi.vli_audits REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('date_trunc(''week'', audited_at at time zone ''UTC'')::date');


--
-- Name: vli_audits vli_audits_track_insert; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER vli_audits_track_insert AFTER INSERT ON kpi.vli_audits REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('date_trunc(''week'', audited_at at time zone ''UTC'')::date');


--
-- Name: vli_audits vli_audits_track_update; Type: TRIGGER; Schema: kpi; Owner: -
--

CREATE TRIGGER vli_audits_track_update AFTER UPDATE ON kpi.vli_audits REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi.track_source_changes('date_trunc(''week'', audited_at at time zone ''UTC'')::date');


--
-- Name: alert_webhooks alert_webhooks_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.alert_webhooks
    ADD CONSTRAINT alert_webhooks_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: alerts alerts_tenant_id_as_of_kpi_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.alerts
    ADD CONSTRAINT alerts_tenant_id_as_of_kpi_fkey FOREIGN KEY (tenant_id, as_of, kpi) REFERENCES kpi.kpi_anomalies(tenant_id, as_of, kpi) ON DELETE CASCADE;


--
-- Name: avi_reports avi_reports_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.avi_reports
    ADD CONSTRAINT avi_reports_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: clarity_reports clarity_reports_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.clarity_reports
    ADD CONSTRAINT clarity_reports_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: custom_kpis custom_kpis_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.custom_kpis
    ADD CONSTRAINT custom_kpis_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: kpi_anomalies kpi_anomalies_tenant_id_as_of_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_anomalies
    ADD CONSTRAINT kpi_anomalies_tenant_id_as_of_fkey FOREIGN KEY (tenant_id, as_of) REFERENCES kpi.kpi_history(tenant_id, as_of) ON DELETE CASCADE;


--
-- Name: kpi_history kpi_history_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: tenant_anomaly_rules tenant_anomaly_rules_kpi_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_anomaly_rules
    ADD CONSTRAINT tenant_anomaly_rules_kpi_fkey FOREIGN KEY (kpi) REFERENCES kpi.anomaly_rules(kpi);


--
-- Name: tenant_anomaly_rules tenant_anomaly_rules_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_anomaly_rules
    ADD CONSTRAINT tenant_anomaly_rules_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: tenant_members tenant_members_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenant_members
    ADD CONSTRAINT tenant_members_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: tenants tenants_plan_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenants
    ADD CONSTRAINT tenants_plan_fkey FOREIGN KEY (plan) REFERENCES kpi.plans(plan) ON UPDATE CASCADE;


--
-- Name: vli_audits vli_audits_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.vli_audits
    ADD CONSTRAINT vli_audits_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: tenants A tenant is visible to its own members; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "A tenant is visible to its own members" ON kpi.tenants FOR SELECT TO authenticated USING ((id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)));


--
-- Name: custom_kpis Admins of the active tenant change custom KPIs; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "Admins of the active tenant change custom KPIs" ON kpi.custom_kpis FOR UPDATE TO authenticated USING ((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id))) WITH CHECK (((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)) AND ( SELECT kpi_api.is_tenant_admin() AS is_tenant_admin)));


--
-- Name: custom_kpis Admins of the active tenant define custom KPIs; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "Admins of the active tenant define custom KPIs" ON kpi.custom_kpis FOR INSERT TO authenticated WITH CHECK (((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)) AND ( SELECT kpi_api.is_tenant_admin() AS is_tenant_admin)));


--
-- Name: custom_kpis Admins of the active tenant delete custom KPIs; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "Admins of the active tenant delete custom KPIs" ON kpi.custom_kpis FOR DELETE TO authenticated USING ((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)));


--
-- Name: kpi_anomalies Anomalies are visible to members of the active tenant; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "Anomalies are visible to members of the active tenant" ON kpi.kpi_anomalies FOR SELECT TO authenticated USING ((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)));


--
-- Name: kpi_changes Changes are visible to members of the active tenant; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "Changes are visible to members of the active tenant" ON kpi.kpi_changes FOR SELECT TO authenticated USING ((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)));


--
-- Name: custom_kpi_weeks Custom KPI values are visible to members of the active tenant; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "Custom KPI values are visible to members of the active tenant" ON kpi.custom_kpi_weeks FOR SELECT TO authenticated USING ((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)));


--
-- Name: custom_kpis Custom KPIs are visible to members of the active tenant; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "Custom KPIs are visible to members of the active tenant" ON kpi.custom_kpis FOR SELECT TO authenticated USING ((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)));


--
-- Name: kpi_history KPI history is visible to members of the active tenant; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "KPI history is visible to members of the active tenant" ON kpi.kpi_history FOR SELECT TO authenticated USING ((tenant_id = ( SELECT kpi_api.current_tenant_id() AS current_tenant_id)));


--
-- Name: change_feed_settings The feed's watermark is readable by tenant members; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "The feed's watermark is readable by tenant members" ON kpi.change_feed_settings FOR SELECT TO authenticated USING (true);


--
-- Name: custom_kpi_settings The limits are readable by tenant members; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "The limits are readable by tenant members" ON kpi.custom_kpi_settings FOR SELECT TO authenticated USING (true);


--
-- Name: alert_settings; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.alert_settings ENABLE ROW LEVEL SECURITY;

--
-- Name: alert_webhooks; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.alert_webhooks ENABLE ROW LEVEL SECURITY;

--
-- Name: alerts; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.alerts ENABLE ROW LEVEL SECURITY;

--
-- Name: anomaly_rules; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.anomaly_rules ENABLE ROW LEVEL SECURITY;

--
-- Name: api_denials; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.api_denials ENABLE ROW LEVEL SECURITY;

--
-- Name: avi_reports; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.avi_reports ENABLE ROW LEVEL SECURITY;

--
-- Name: change_feed_settings; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.change_feed_settings ENABLE ROW LEVEL SECURITY;

--
-- Name: clarity_reports; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.clarity_reports ENABLE ROW LEVEL SECURITY;

--
-- Name: cron_secrets; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.cron_secrets ENABLE ROW LEVEL SECURITY;

--
-- Name: custom_kpi_settings; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.custom_kpi_settings ENABLE ROW LEVEL SECURITY;

--
-- Name: custom_kpi_weeks; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.custom_kpi_weeks ENABLE ROW LEVEL SECURITY;

--
-- Name: custom_kpis; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.custom_kpis ENABLE ROW LEVEL SECURITY;

--
-- Name: definitions_state; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.definitions_state ENABLE ROW LEVEL SECURITY;

--
-- Name: error_codes; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.error_codes ENABLE ROW LEVEL SECURITY;

--
-- Name: kpi_anomalies; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_anomalies ENABLE ROW LEVEL SECURITY;

--
-- Name: kpi_changes; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_changes ENABLE ROW LEVEL SECURITY;

--
-- Name: kpi_history; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_history ENABLE ROW LEVEL SECURITY;

--
-- Name: kpi_runs; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_runs ENABLE ROW LEVEL SECURITY;

--
-- Name: plans; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.plans ENABLE ROW LEVEL SECURITY;

--
-- Name: retention_state; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.retention_state ENABLE ROW LEVEL SECURITY;

--
-- Name: source_changes; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.source_changes ENABLE ROW LEVEL SECURITY;

--
-- Name: table_distribution; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.table_distribution ENABLE ROW LEVEL SECURITY;

--
-- Name: tenant_anomaly_rules; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.tenant_anomaly_rules ENABLE ROW LEVEL SECURITY;

--
-- Name: tenant_count; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.tenant_count ENABLE ROW LEVEL SECURITY;

--
-- Name: tenant_members; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.tenant_members ENABLE ROW LEVEL SECURITY;

--
-- Name: tenant_slugs; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.tenant_slugs ENABLE ROW LEVEL SECURITY;

--
-- Name: tenants; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.tenants ENABLE ROW LEVEL SECURITY;

--
-- Name: tenants_without_avi; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.tenants_without_avi ENABLE ROW LEVEL SECURITY;

--
-- Name: alert_settings the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.alert_settings TO postgres USING (true) WITH CHECK (true);


--
-- Name: alert_webhooks the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.alert_webhooks TO postgres USING (true) WITH CHECK (true);


--
-- Name: alerts the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.alerts TO postgres USING (true) WITH CHECK (true);


--
-- Name: anomaly_rules the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.anomaly_rules TO postgres USING (true) WITH CHECK (true);


--
-- Name: api_denials the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.api_denials TO postgres USING (true) WITH CHECK (true);


--
-- Name: avi_reports the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.avi_reports TO postgres USING (true) WITH CHECK (true);


--
-- Name: change_feed_settings the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.change_feed_settings TO postgres USING (true) WITH CHECK (true);


--
-- Name: clarity_reports the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.clarity_reports TO postgres USING (true) WITH CHECK (true);


--
-- Name: cron_secrets the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.cron_secrets TO postgres USING (true) WITH CHECK (true);


--
-- Name: custom_kpi_settings the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.custom_kpi_settings TO postgres USING (true) WITH CHECK (true);


--
-- Name: custom_kpi_weeks the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.custom_kpi_weeks TO postgres USING (true) WITH CHECK (true);


--
-- Name: custom_kpis the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.custom_kpis TO postgres USING (true) WITH CHECK (true);


--
-- Name: definitions_state the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.definitions_state TO postgres USING (true) WITH CHECK (true);


--
-- Name: error_codes the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.error_codes TO postgres USING (true) WITH CHECK (true);


--
-- Name: kpi_anomalies the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.kpi_anomalies TO postgres USING (true) WITH CHECK (true);


--
-- Name: kpi_changes the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.kpi_changes TO postgres USING (true) WITH CHECK (true);


--
-- Name: kpi_history the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.kpi_history TO postgres USING (true) WITH CHECK (true);


--
-- Name: kpi_runs the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.kpi_runs TO postgres USING (true) WITH CHECK (true);


--
-- Name: plans the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.plans TO postgres USING (true) WITH CHECK (true);


--
-- Name: retention_state the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.retention_state TO postgres USING (true) WITH CHECK (true);


--
-- Name: source_changes the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.source_changes TO postgres USING (true) WITH CHECK (true);


--
-- Name: table_distribution the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.table_distribution TO postgres USING (true) WITH CHECK (true);


--
-- Name: tenant_anomaly_rules the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.tenant_anomaly_rules TO postgres USING (true) WITH CHECK (true);


--
-- Name: tenant_count the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.tenant_count TO postgres USING (true) WITH CHECK (true);


--
-- Name: tenant_members the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.tenant_members TO postgres USING (true) WITH CHECK (true);


--
-- Name: tenant_slugs the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.tenant_slugs TO postgres USING (true) WITH CHECK (true);


--
-- Name: tenants the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.tenants TO postgres USING (true) WITH CHECK (true);


--
-- Name: tenants_without_avi the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.tenants_without_avi TO postgres USING (true) WITH CHECK (true);


--
-- Name: vli_audits the owner maintains it; Type: POLICY; Schema: kpi; Owner: -
--

CREATE POLICY "the owner maintains it" ON kpi.vli_audits TO postgres USING (true) WITH CHECK (true);


--
-- Name: vli_audits; Type: ROW SECURITY; Schema: kpi; Owner: -
--

ALTER TABLE kpi.vli_audits ENABLE ROW LEVEL SECURITY;

--
-- PostgreSQL database dump complete
--

\unrestrict kpi_history


--
-- Dbmate schema migrations
--

INSERT INTO public.schema_migrations (version) VALUES
    ('20261201000900'),
    ('20261203000100'),
    ('20261203000200'),
    ('20261203000300'),
    ('20261203000400'),
    ('20261203000500');
