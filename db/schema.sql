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
-- Name: assert_tenant_exists(uuid); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.assert_tenant_exists(p_tenant_id uuid) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  if p_tenant_id is null then
    perform kpi.raise_error('INVALID_INPUT', 'tenant_id is required');
  end if;
  if not exists (select from kpi.tenants where id = p_tenant_id) then
    perform kpi.raise_error('UNKNOWN_TENANT', format('no tenant has id %s', p_tenant_id));
  end if;
end
$$;


--
-- Name: backfill_kpi_history(uuid, date, date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.backfill_kpi_history(tenant_id uuid DEFAULT NULL::uuid, "from" date DEFAULT NULL::date, "to" date DEFAULT NULL::date) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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

  perform kpi.assert_tenant_exists(tenant_id);
  if not exists (select from kpi.avi_reports r where r.tenant_id = backfill_kpi_history.tenant_id) then
    perform kpi.raise_error('NO_AVI', format('tenant %s has no AVI report', tenant_id));
  end if;
  run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
  result := kpi.write_kpi_history(tenant_id, "from", "to", false) - 'as_of'
            || jsonb_build_object('total', 1, 'errors', '[]'::jsonb, 'status', 'ok', 'run_id', run_id);
  perform kpi.finish_kpi_run(run_id, 'ok', result);
  return result;
end
$$;


--
-- Name: FUNCTION backfill_kpi_history(tenant_id uuid, "from" date, "to" date); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.backfill_kpi_history(tenant_id uuid, "from" date, "to" date) IS 'Writes one kpi_history row per AVI week in [from, to] (NULL = unbounded) for one tenant or all (tenant_id NULL), with VLI and HRP as of the end of each week. Idempotent. Returns {"ok", "total", "weeks", "rows_written", "errors", "warnings", "status", "run_id"}. Example: select kpi.backfill_kpi_history("from" => ''2024-01-01'');';


--
-- Name: clean_up_run_history(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.clean_up_run_history() RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  runs_deleted bigint;
  job_details_deleted bigint := 0;
begin
  delete from kpi.kpi_runs where started_at < now() - interval '90 days';
  get diagnostics runs_deleted = row_count;
  -- cron.job_run_details exists only in the pg_cron database.
  if to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where start_time < now() - interval ''7 days''';
    get diagnostics job_details_deleted = row_count;
  end if;
  return jsonb_build_object('kpi_runs_deleted', runs_deleted, 'cron_job_run_details_deleted', job_details_deleted);
end
$$;


--
-- Name: FUNCTION clean_up_run_history(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.clean_up_run_history() IS 'Deletes kpi_runs rows older than 90 days and cron.job_run_details rows older than 7 days. Run daily by pg_cron.';


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
      or (select a.backend_type from pg_catalog.pg_stat_activity a where a.pid = pg_catalog.pg_backend_pid()) = 'pg_cron'
      then 'pg_cron'
    else 'sql'
  end
$$;


--
-- Name: execute_all_tenant_run(bigint, date, date, boolean); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.execute_all_tenant_run(p_run_id bigint, p_from date, p_to date, p_latest_only boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  result jsonb;
  failure_state text;
  failure_message text;
begin
  begin
    result := kpi.write_kpi_history(null, p_from, p_to, p_latest_only);
    if p_latest_only then
      -- Every tenant counts; those without any AVI report are the errors.
      select result || jsonb_build_object(
               'total', count(*),
               'errors', coalesce(jsonb_agg(jsonb_build_object(
                            'tenant_id', t.id,
                            'code', 'NO_AVI',
                            'message', format('tenant %s has no AVI report', t.slug))
                          order by t.id) filter (where not exists (
                            select from kpi.avi_reports r where r.tenant_id = t.id)), '[]'::jsonb))
      into result
      from kpi.tenants t;
    else
      result := result || jsonb_build_object('total', result -> 'ok', 'errors', '[]'::jsonb);
    end if;
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


--
-- Name: fill_all_kpi_history(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.fill_all_kpi_history() RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if not kpi.try_lock_all_tenants(false) then
    return kpi.skipped_run('fill_all', null, null);
  end if;
  return kpi.execute_all_tenant_run(kpi.start_kpi_run('fill_all', null, null, null), null, null, true);
end
$$;


--
-- Name: FUNCTION fill_all_kpi_history(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.fill_all_kpi_history() IS 'Writes every tenant''s latest AVI week into kpi_history in one set-based statement. Returns {"ok": n, "total": n, "rows_written": n, "errors": [{"tenant_id", "code": "NO_AVI", "message"}], "warnings": [...], "status", "run_id"}, or {"skipped": true, …} while another all-tenant run holds the lock. Example: select kpi.fill_all_kpi_history();';


--
-- Name: fill_kpi_history(uuid); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.fill_kpi_history(tenant_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  run_id bigint;
  result jsonb;
begin
  perform kpi.assert_tenant_exists(tenant_id);
  if not exists (select from kpi.avi_reports r where r.tenant_id = fill_kpi_history.tenant_id) then
    perform kpi.raise_error('NO_AVI', format('tenant %s has no AVI report', tenant_id),
                            'Insert a row into kpi.avi_reports for this tenant first.');
  end if;
  run_id := kpi.start_kpi_run('fill', tenant_id, null, null);
  result := kpi.write_kpi_history(tenant_id, null, null, true);
  perform kpi.finish_kpi_run(run_id, 'ok', result || '{"total": 1, "errors": []}');
  return jsonb_build_object('ok', true, 'as_of', result -> 'as_of', 'rows_written', result -> 'rows_written',
                            'warnings', result -> 'warnings', 'run_id', run_id);
end
$$;


--
-- Name: FUNCTION fill_kpi_history(tenant_id uuid); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON FUNCTION kpi.fill_kpi_history(tenant_id uuid) IS 'Writes the tenant''s latest AVI week into kpi_history. Returns {"ok": true, "as_of": "YYYY-MM-DD", …}. Raises UNKNOWN_TENANT (KH404) or NO_AVI (KH422). Example: select kpi.fill_kpi_history(''<tenant uuid>'');';


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
-- Name: run_scheduled_kpi_fill(); Type: PROCEDURE; Schema: kpi; Owner: -
--

CREATE PROCEDURE kpi.run_scheduled_kpi_fill()
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: PROCEDURE run_scheduled_kpi_fill(); Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON PROCEDURE kpi.run_scheduled_kpi_fill() IS 'What pg_cron runs daily: kpi.fill_all_kpi_history() with the run logged as running first. Example: call kpi.run_scheduled_kpi_fill();';


--
-- Name: skipped_run(text, date, date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.skipped_run(p_kind text, p_from date, p_to date) RETURNS jsonb
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select jsonb_build_object(
    'skipped', true, 'status', 'skipped',
    'message', 'another all-tenant run is in progress',
    'run_id', kpi.start_kpi_run(p_kind, null, p_from, p_to, 'skipped'))
$$;


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
-- Name: try_lock_all_tenants(boolean); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.try_lock_all_tenants(for_session boolean) RETURNS boolean
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select case when for_session then pg_catalog.pg_try_advisory_lock(1263552840, 1)
              else pg_catalog.pg_try_advisory_xact_lock(1263552840, 1) end
$$;


--
-- Name: unlock_all_tenants(); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.unlock_all_tenants() RETURNS boolean
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select pg_catalog.pg_advisory_unlock(1263552840, 1)
$$;


--
-- Name: week_end(date); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.week_end(week_start date) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (((week_start + 7))::timestamp without time zone AT TIME ZONE 'UTC'::text);


--
-- Name: write_kpi_history(uuid, date, date, boolean); Type: FUNCTION; Schema: kpi; Owner: -
--

CREATE FUNCTION kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
declare
  stats jsonb;
begin
  with avi as (
    select latest.*
    from kpi.tenants t
    cross join lateral (
      select r.tenant_id, r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
      from kpi.avi_reports r
      where r.tenant_id = t.id
      order by r.week_start desc
      limit 1
    ) latest
    where p_latest_only and (p_tenant_id is null or t.id = p_tenant_id)
    union all
    select r.tenant_id, r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
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
      select c.metrics -> 'hrp' as hrp, c.measured_at
      from kpi.clarity_reports c
      where c.tenant_id = a.tenant_id and c.measured_at < kpi.week_end(a.week_start)
      order by c.measured_at desc, c.id desc
      limit 1
    ) clarity on true
  ),
  written as (
    insert into kpi.kpi_history as h (
      tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point,
      vli_integrity_pct, vli_is_fallback, hrp_pct)
    select tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point,
           vli_integrity_pct, vli_is_fallback, hrp_pct
    from computed
    -- One order for every writer, so concurrent runs lock shared rows in the same order.
    order by tenant_id, as_of
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
           'ok', (select count(distinct tenant_id) from computed),
           'weeks', (select count(*) from computed),
           'rows_written', (select count(*) from written),
           'as_of', (select max(as_of) from computed),
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


SET default_tablespace = '';

SET default_table_access_method = heap;

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
-- Name: clarity_reports; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.clarity_reports (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    measured_at timestamp with time zone NOT NULL,
    metrics jsonb NOT NULL,
    CONSTRAINT clarity_reports_metrics_is_object CHECK ((jsonb_typeof(metrics) = 'object'::text))
);


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


--
-- Name: TABLE error_codes; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.error_codes IS 'Stable error codes: raised as SQLSTATE KH<http status>, answered over HTTP as {"code": code}.';


--
-- Name: COLUMN error_codes.code; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.error_codes.code IS 'Also used as warning codes: INVALID_CLARITY (a clarity report whose hrp is not a number in 0..1).';


--
-- Name: kpi_history; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.kpi_history (
    id bigint NOT NULL,
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
    CONSTRAINT kpi_history_aiv_pct_range CHECK (((aiv_pct >= (0)::numeric) AND (aiv_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_as_of_is_monday CHECK ((EXTRACT(isodow FROM as_of) = (1)::numeric)),
    CONSTRAINT kpi_history_ati_pct_range CHECK (((ati_pct >= (0)::numeric) AND (ati_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_crs_pct_range CHECK (((crs_pct >= (0)::numeric) AND (crs_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_hrp_pct_range CHECK (((hrp_pct >= (0)::numeric) AND (hrp_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_vli_integrity_pct_range CHECK (((vli_integrity_pct >= (0)::numeric) AND (vli_integrity_pct <= (100)::numeric)))
);


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
-- Name: kpi_history_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_history ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.kpi_history_id_seq
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
    status text DEFAULT 'running'::text NOT NULL,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    finished_at timestamp with time zone,
    duration_ms numeric GENERATED ALWAYS AS (round((EXTRACT(epoch FROM (finished_at - started_at)) * (1000)::numeric), 3)) STORED,
    ok_count integer,
    total_count integer,
    rows_written integer,
    errors jsonb DEFAULT '[]'::jsonb NOT NULL,
    warnings jsonb DEFAULT '[]'::jsonb NOT NULL,
    CONSTRAINT kpi_runs_errors_is_array CHECK ((jsonb_typeof(errors) = 'array'::text)),
    CONSTRAINT kpi_runs_finished_when_not_running CHECK (((status = 'running'::text) = (finished_at IS NULL))),
    CONSTRAINT kpi_runs_kind CHECK ((kind = ANY (ARRAY['fill'::text, 'fill_all'::text, 'backfill'::text]))),
    CONSTRAINT kpi_runs_status CHECK ((status = ANY (ARRAY['running'::text, 'ok'::text, 'partial'::text, 'failed'::text, 'skipped'::text]))),
    CONSTRAINT kpi_runs_trigger CHECK ((trigger = ANY (ARRAY['pg_cron'::text, 'api'::text, 'sql'::text]))),
    CONSTRAINT kpi_runs_warnings_is_array CHECK ((jsonb_typeof(warnings) = 'array'::text))
);


--
-- Name: TABLE kpi_runs; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.kpi_runs IS 'One row per aggregation run: trigger, status, counts, errors and warnings. Kept 90 days.';


--
-- Name: COLUMN kpi_runs.status; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_runs.status IS 'ok: every tenant written; partial: some tenants had errors; failed: nothing written (see errors); skipped: another all-tenant run held the lock; running: not finished.';


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
-- Name: tenants; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenants (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    slug text NOT NULL,
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenants_name_not_blank CHECK ((btrim(name) <> ''::text)),
    CONSTRAINT tenants_slug_format CHECK ((slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'::text))
);


--
-- Name: TABLE tenants; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenants IS 'Customers of the SaaS. The slug is URL- and filename-safe (used in CSV file names).';


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
-- Name: avi_reports avi_reports_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.avi_reports
    ADD CONSTRAINT avi_reports_pkey PRIMARY KEY (id);


--
-- Name: avi_reports avi_reports_tenant_week_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.avi_reports
    ADD CONSTRAINT avi_reports_tenant_week_key UNIQUE (tenant_id, week_start);


--
-- Name: clarity_reports clarity_reports_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.clarity_reports
    ADD CONSTRAINT clarity_reports_pkey PRIMARY KEY (id);


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
-- Name: kpi_history kpi_history_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_pkey PRIMARY KEY (id);


--
-- Name: kpi_history kpi_history_tenant_as_of_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_tenant_as_of_key UNIQUE (tenant_id, as_of);


--
-- Name: kpi_runs kpi_runs_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_runs
    ADD CONSTRAINT kpi_runs_pkey PRIMARY KEY (id);


--
-- Name: tenants tenants_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenants
    ADD CONSTRAINT tenants_pkey PRIMARY KEY (id);


--
-- Name: tenants tenants_slug_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenants
    ADD CONSTRAINT tenants_slug_key UNIQUE (slug);


--
-- Name: vli_audits vli_audits_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.vli_audits
    ADD CONSTRAINT vli_audits_pkey PRIMARY KEY (id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: clarity_reports_tenant_latest_idx; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX clarity_reports_tenant_latest_idx ON kpi.clarity_reports USING btree (tenant_id, measured_at DESC, id DESC);


--
-- Name: kpi_runs_started_at_idx; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX kpi_runs_started_at_idx ON kpi.kpi_runs USING btree (started_at DESC);


--
-- Name: vli_audits_tenant_latest_idx; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX vli_audits_tenant_latest_idx ON kpi.vli_audits USING btree (tenant_id, audited_at DESC, id DESC) INCLUDE (integrity_pct);


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
-- Name: kpi_history kpi_history_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: vli_audits vli_audits_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.vli_audits
    ADD CONSTRAINT vli_audits_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict kpi_history


--
-- Dbmate schema migrations
--

INSERT INTO public.schema_migrations (version) VALUES
    ('20261130000100'),
    ('20261130000200'),
    ('20261130000300'),
    ('20261130000400'),
    ('20261130000500');
