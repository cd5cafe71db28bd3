-- migrate:up

-- Monthly and quarterly rollups of the weekly history, computed when read.
--
-- A week belongs to the month (and quarter) of its Thursday, as_of + 3: the ISO 8601 rule, so a
-- week that straddles two months counts where most of its days are, and every week counts once.
--
-- Computed on read rather than kept in a table: a tenant's five years are 260 rows on one index
-- range, aggregated in well under a millisecond (`npm run bench`, reads.monthly), and a view
-- cannot disagree with the history it reads — no fill, backfill or retention path has to keep
-- it in step, and the row-level security of kpi.kpi_history applies as it is.

create view kpi.kpi_history_rollups with (security_invoker = true) as
select r.tenant_id, r.period, r.period_start, r.period_end, r.weeks, r.first_week, r.last_week,
       r.period_end < (now() at time zone 'UTC')::date as complete,
       r.aiv_pct_avg, r.aiv_pct_min, r.aiv_pct_max, l.aiv_pct as aiv_pct_last,
       r.ati_pct_avg, r.ati_pct_min, r.ati_pct_max, l.ati_pct as ati_pct_last,
       r.crs_pct_avg, r.crs_pct_min, r.crs_pct_max, l.crs_pct as crs_pct_last,
       r.elasticity_usd_per_point_avg, r.elasticity_usd_per_point_min, r.elasticity_usd_per_point_max,
       l.elasticity_usd_per_point as elasticity_usd_per_point_last,
       r.vli_integrity_pct_avg, r.vli_integrity_pct_min, r.vli_integrity_pct_max, l.vli_integrity_pct as vli_integrity_pct_last,
       r.hrp_pct_avg, r.hrp_pct_min, r.hrp_pct_max, l.hrp_pct as hrp_pct_last,
       r.vli_fallback_weeks, r.hrp_weeks
from (
  select w.tenant_id, w.period, w.period_start,
         (w.period_start + w.length)::date - 1 as period_end,
         count(*)::integer as weeks, min(w.as_of) as first_week, max(w.as_of) as last_week,
         round(avg(w.aiv_pct), 2) as aiv_pct_avg, min(w.aiv_pct) as aiv_pct_min, max(w.aiv_pct) as aiv_pct_max,
         round(avg(w.ati_pct), 2) as ati_pct_avg, min(w.ati_pct) as ati_pct_min, max(w.ati_pct) as ati_pct_max,
         round(avg(w.crs_pct), 2) as crs_pct_avg, min(w.crs_pct) as crs_pct_min, max(w.crs_pct) as crs_pct_max,
         round(avg(w.elasticity_usd_per_point), 2) as elasticity_usd_per_point_avg,
         min(w.elasticity_usd_per_point) as elasticity_usd_per_point_min,
         max(w.elasticity_usd_per_point) as elasticity_usd_per_point_max,
         round(avg(w.vli_integrity_pct), 2) as vli_integrity_pct_avg,
         min(w.vli_integrity_pct) as vli_integrity_pct_min, max(w.vli_integrity_pct) as vli_integrity_pct_max,
         round(avg(w.hrp_pct), 2) as hrp_pct_avg, min(w.hrp_pct) as hrp_pct_min, max(w.hrp_pct) as hrp_pct_max,
         count(*) filter (where w.vli_is_fallback)::integer as vli_fallback_weeks,
         count(w.hrp_pct)::integer as hrp_weeks
  from (
    -- Each week once per kind of period; a query for one kind keeps only its row of the VALUES
    -- before the join (measured: 17 % faster than computing both periods per week and dropping one).
    -- date_trunc on a timestamp without time zone: the same month whatever the session's TimeZone.
    select h.*, p.period, p.length, date_trunc(p.period, (h.as_of + 3)::timestamp)::date as period_start
    from kpi.kpi_history h
    cross join (values ('month', interval '1 month'), ('quarter', interval '3 months')) p(period, length)
  ) w
  group by w.tenant_id, w.period, w.period_start, w.length
) r
-- The latest week's values, joined back on the primary key: measured cheaper than an ordered
-- aggregate per KPI ((array_agg(… order by as_of desc))[1]).
join kpi.kpi_history l on l.tenant_id = r.tenant_id and l.as_of = r.last_week;
comment on view kpi.kpi_history_rollups is
  'Monthly and quarterly rollups of kpi.kpi_history for every tenant (as the owner in psql; the API views read it through row-level security). A week counts in the month and quarter of its Thursday (as_of + 3). Derived on read: always equal to the weekly rows.';

grant select on kpi.kpi_history_rollups to authenticated;

create view api.kpi_history_monthly with (security_invoker = true) as
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

create view api.kpi_history_quarterly with (security_invoker = true) as
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

grant select on api.kpi_history_monthly, api.kpi_history_quarterly to authenticated;

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

-- ============================================================================================
-- The CSV export by period
-- ============================================================================================

-- The header line of a view: its column names in order.
create function kpi_api.csv_header(relation regclass) returns text
language sql stable parallel safe
return (select string_agg(kpi_api.csv_field(a.attname), ',' order by a.attnum) || E'\r\n'
        from pg_catalog.pg_attribute a
        where a.attrelid = relation and a.attnum > 0 and not a.attisdropped);

grant execute on function kpi_api.csv_header(regclass) to authenticated;

drop function api.kpi_history_csv(text, text, text);

-- `period` is not among PostgREST's reserved query keys (select, columns, on_conflict, and keys
-- ending in order, limit, offset, and, or), so a GET passes it as the argument.
create function api.kpi_history_csv(weeks text default null, "from" text default null, "to" text default null,
                                    period text default null)
returns api."text/csv"
language plpgsql stable
as $$
declare
  period_name text := coalesce(lower(btrim(period)), 'week');
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
  week_count := coalesce(kpi_api.integer_argument('weeks', weeks, 1, 1000), 52);
  from_date := kpi_api.date_argument('from', "from");
  to_date := kpi_api.date_argument('to', "to");
  if from_date > to_date then
    perform kpi_api.raise_http_error('INVALID_INPUT', '"from" is after "to"');
  end if;
  -- Through row-level security, like the rows: the active tenant or an error. A token may grant
  -- an id that is no tenant (deleted, or never created): no file is named after nobody.
  select t.slug into tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());
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
  select string_agg((select string_agg(kpi_api.csv_field(f.value), ',') from json_each_text(r.line) f) || E'\r\n', ''
                    order by r.n) into body
  from unnest(rows_json) with ordinality r(line, n);

  -- The weekly file keeps the name it always had, so links and scripts that expect it still work.
  perform set_config('response.headers', json_build_array(json_build_object(
    'Content-Disposition',
    format('attachment; filename="kpi-history-%s-%s%s.csv"', tenant_slug,
           case when period_name = 'week' then '' else period_name || '-' end,
           to_char(now() at time zone 'UTC', 'YYYY-MM-DD'))))::text, true);
  return kpi_api.csv_header(case period_name when 'week' then 'api.kpi_history_export'::regclass
                                             when 'month' then 'api.kpi_history_monthly'::regclass
                                             else 'api.kpi_history_quarterly'::regclass end)
         || coalesce(body, '');
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;
comment on function api.kpi_history_csv(text, text, text, text) is
  $$CSV (RFC 4180: header row, CRLF, quoted where needed) of the active tenant's history, oldest first. period=week (default): the latest `weeks` weeks (1..1000, default 52) with as_of in [from, to], columns of api.kpi_history_export, file kpi-history-<tenant>-<date>.csv. period=month|quarter: every period with period_start in [from, to] (YYYY-MM-DD), columns of api.kpi_history_monthly|quarterly, file kpi-history-<tenant>-<period>-<date>.csv. Sets Content-Disposition: attachment.
Errors: INVALID_INPUT 400 (weeks, from, to, period; weeks with a month or quarter), FORBIDDEN 403, TENANT_REQUIRED 400, UNKNOWN_TENANT 404.
Example: GET /rpc/kpi_history_csv?period=month&from=2026-01-01 with Accept: text/csv$$;
grant execute on function api.kpi_history_csv(text, text, text, text) to authenticated;

notify pgrst, 'reload schema';

-- migrate:down
drop function api.kpi_history_csv(text, text, text, text);
create function api.kpi_history_csv(weeks text default null, "from" text default null, "to" text default null)
returns api."text/csv"
language plpgsql stable
as $$
declare
  week_count integer;
  from_date date;
  to_date date;
  tenant_slug text;
  header text;
  body text;
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  week_count := coalesce(kpi_api.integer_argument('weeks', weeks, 1, 1000), 52);
  from_date := kpi_api.date_argument('from', "from");
  to_date := kpi_api.date_argument('to', "to");
  if from_date > to_date then
    perform kpi_api.raise_http_error('INVALID_INPUT', '"from" is after "to"');
  end if;
  select t.slug into tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());
  if tenant_slug is null then
    perform kpi_api.raise_http_error('UNKNOWN_TENANT', 'the active tenant does not exist');
  end if;
  select string_agg(kpi_api.csv_field(a.attname), ',' order by a.attnum) || E'\r\n' into header
  from pg_catalog.pg_attribute a
  where a.attrelid = 'api.kpi_history_export'::regclass and a.attnum > 0 and not a.attisdropped;
  select string_agg(line, '' order by as_of) into body
  from (
    select e.as_of,
           (select string_agg(kpi_api.csv_field(f.value), ',') from json_each_text(row_to_json(e)) f) || E'\r\n' as line
    from api.kpi_history_export e
    where (from_date is null or e.as_of >= from_date) and (to_date is null or e.as_of <= to_date)
    order by e.as_of desc
    limit week_count
  ) latest;
  perform set_config('response.headers', json_build_array(json_build_object(
    'Content-Disposition',
    format('attachment; filename="kpi-history-%s-%s.csv"', tenant_slug, to_char(now() at time zone 'UTC', 'YYYY-MM-DD'))))::text, true);
  return header || coalesce(body, '');
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;
comment on function api.kpi_history_csv(text, text, text) is
  $$CSV (RFC 4180: header row, CRLF, quoted where needed) of the active tenant's latest `weeks` weeks (1..1000, default 52) with as_of in [from, to] (YYYY-MM-DD), oldest first. Columns: those of api.kpi_history_export. Sets Content-Disposition: attachment; filename="kpi-history-<tenant>-<date>.csv".
Errors: INVALID_INPUT 400 (weeks, from, to), FORBIDDEN 403, TENANT_REQUIRED 400, UNKNOWN_TENANT 404.
Example: GET /rpc/kpi_history_csv?weeks=12&from=2024-01-01 with Accept: text/csv$$;
grant execute on function api.kpi_history_csv(text, text, text) to authenticated;
drop function kpi_api.csv_header(regclass);
drop view api.kpi_history_quarterly;
drop view api.kpi_history_monthly;
drop view kpi.kpi_history_rollups;
notify pgrst, 'reload schema';
