-- migrate:up

-- The CSV export as PostgREST v16.2 really calls it.
--
-- PostgREST never passes a query key named `limit` (nor `select`, `columns`, `on_conflict`, or
-- any key ending in `order`, `limit`, `offset`, `and`, `or`) to a function: it applies it to the
-- function's result (src/library/PostgREST/ApiRequest/QueryParams.hs). The export's `limit`
-- therefore never arrived; it is `weeks` now.
--
-- GET arguments reach a function as `"name" := $1::<parameter type>`
-- (src/library/PostgREST/Query/QueryBuilder.hs, callPlanToQuery): a `date` parameter turns
-- `from=2026-02-30` into PostgreSQL's 22008 before the function runs, answered with PostgreSQL's
-- code. The parameters are text, parsed here, so that bad input is our INVALID_INPUT.

-- An argument given as text, as a date; INVALID_INPUT naming the argument when it is not one.
create function kpi_api.date_argument(name text, value text) returns date
language plpgsql immutable
set search_path = ''
as $$
begin
  if value is null then
    return null;
  end if;
  if value !~ '^\s*\d{4}-\d{2}-\d{2}\s*$' then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('%s must be a date (YYYY-MM-DD), got %s', name, left(value, 40)));
  end if;
  return value::date;
exception when datetime_field_overflow or invalid_datetime_format then
  perform kpi_api.raise_http_error('INVALID_INPUT', format('%s is not a calendar date: %s', name, value));
  return null;
end
$$;

-- An argument given as text, as an integer in [minimum, maximum]; NULL stays NULL.
create function kpi_api.integer_argument(name text, value text, minimum integer, maximum integer) returns integer
language plpgsql immutable
set search_path = ''
as $$
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
$$;

grant execute on function kpi_api.date_argument(text, text) to authenticated;
grant execute on function kpi_api.integer_argument(text, text, integer, integer) to authenticated;

drop function api.kpi_history_csv(integer, date, date);

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
  -- Through row-level security, like the rows: the active tenant or an error. A token may grant
  -- an id that is no tenant (deleted, or never created): no file is named after nobody.
  select t.slug into tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());
  if tenant_slug is null then
    perform kpi_api.raise_http_error('UNKNOWN_TENANT', 'the active tenant does not exist');
  end if;

  -- The header and the field order come from the export view, so the two cannot disagree.
  select string_agg(kpi_api.csv_field(a.attname), ',' order by a.attnum) || E'\r\n' into header
  from pg_catalog.pg_attribute a
  where a.attrelid = 'api.kpi_history_export'::regclass and a.attnum > 0 and not a.attisdropped;

  -- The latest `weeks` weeks in the range, oldest first.
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

-- Health answers our body even when something inside fails (a broken catalog, a missing table).
create or replace function api.kpi_history_health() returns json
language plpgsql stable
as $$
declare
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  return kpi_api.health();
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;

-- The active tenant, for naming things after it in a browser: a cross-origin app cannot read
-- Content-Disposition (PostgREST's CORS exposes a fixed list of headers without it, Cors.hs).
create view api.active_tenant with (security_invoker = true) as
select t.id, t.slug, t.name from kpi.tenants t;
comment on view api.active_tenant is
  $$The tenant this request acts for (the x-tenant header, or the only tenant of the token): one row, or none when the token grants an id that is no tenant. Needs a JWT with role "authenticated" and "tenant_ids".
Example: GET /active_tenant?select=slug,name$$;
grant select on api.active_tenant to authenticated;

notify pgrst, 'reload schema';

-- migrate:down
drop view api.active_tenant;
create or replace function api.kpi_history_health() returns json
language sql stable
as $$
  select kpi_api.health()
$$;
drop function api.kpi_history_csv(text, text, text);
drop function kpi_api.integer_argument(text, text, integer, integer);
drop function kpi_api.date_argument(text, text);
-- The previous export, parameter `limit` and all (see migrate:up for why it never worked over GET).
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
  select t.slug into tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());
  select string_agg(kpi_api.csv_field(a.attname), ',' order by a.attnum) || E'\r\n' into header
  from pg_catalog.pg_attribute a
  where a.attrelid = 'api.kpi_history_export'::regclass and a.attnum > 0 and not a.attisdropped;
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
grant execute on function api.kpi_history_csv(integer, date, date) to authenticated;
notify pgrst, 'reload schema';
