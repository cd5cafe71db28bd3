-- Common ground: raising our error codes, writing times, the request PostgREST set up, parsing
-- the arguments people type. Everything else calls these.

-- ============================================================================================
-- Errors
-- ============================================================================================

-- Text that should name a tenant or a user by id: the uuid when it is one (any case, spaces
-- around), else NULL — for the places where a slug or junk may come instead, without an exception
-- to catch. The one test of "is this an id" (kpi.tenant_id_of, the cron body, the token hook).
create or replace function kpi.uuid_or_null(value text) returns uuid
language sql immutable
set search_path = ''
as $$
  select case when btrim(value) ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then btrim(value)::uuid end
$$;
comment on function kpi.uuid_or_null(text) is 'The uuid the text spells (any case, spaces around), else NULL. Example: select kpi.uuid_or_null(''acme'');';

-- Raises the named error (kpi.error_codes) with its SQLSTATE; an unknown name is a programming error.
create or replace function kpi.raise_error(code text, message text, hint text default null) returns void
language plpgsql stable
set search_path = ''
as $$
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

-- Answers the request with one of kpi.error_codes as PostgREST's error body
-- {"code", "message", "details", "hint"} and its HTTP status. Rolls the request back.
create or replace function kpi_api.raise_http_error(code text, message text, hint text default null) returns void
language plpgsql stable
security definer
set search_path = ''
as $$
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

-- An error for whoever called: inside an HTTP request, PostgREST's answer with our code and
-- status; in psql (or pg_cron, a script), the code's SQLSTATE with the same message and hint.
-- Security definer: the API roles call it without reading kpi.error_codes themselves.
create or replace function kpi_api.raise_request_error(code text, message text, hint text default null) returns void
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' then
    perform kpi_api.raise_http_error(code, message, hint);
  end if;
  perform kpi.raise_error(code, message, hint);
end
$$;

-- Turns an error caught in an api function into the HTTP answer: our KH codes keep their name
-- and status; a read-only violation or a missing privilege stays PostgREST's; anything else is INTERNAL_ERROR with a message that reveals nothing inside.
create or replace function kpi_api.raise_caught_error(caught_sqlstate text, caught_message text, caught_detail text) returns void
language plpgsql stable
security definer
set search_path = ''
as $$
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

-- ============================================================================================
-- Time
-- ============================================================================================

-- Timestamps as text in UTC, ISO 8601 as PostgreSQL writes them in JSON ("2024-02-01T06:30:00+00:00"),
-- whatever the session's TimeZone: what this project formats itself never depends on it.
create or replace function kpi.utc_iso(ts timestamptz) returns text
language sql stable parallel safe
set search_path = ''
return (pg_catalog.to_json(ts at time zone 'UTC') #>> '{}') || '+00:00';

-- A week runs Monday 00:00 UTC to the next Monday 00:00 UTC, whatever the session's TimeZone.
-- (No SET clause, here and in the other small functions the fill calls per row: only a function
-- without one is inlined.)
create or replace function kpi.week_end(week_start date) returns timestamptz
language sql immutable parallel safe
return (week_start + 7)::timestamp at time zone 'UTC';

-- ============================================================================================
-- The request PostgREST set up (request.jwt.claims, request.headers); {} / NULL outside it
-- ============================================================================================

-- The verified JWT claims of this request. After a request the session sees '' rather than NULL,
-- hence nullif. (No SET clause on these two: it would keep them from being inlined into the
-- row-level security check, which runs on every read.)
create or replace function kpi_api.request_claims() returns jsonb
language sql stable
as $$
  select coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb, '{}'::jsonb)
$$;

-- A request header (PostgREST lowercases their names), or NULL.
create or replace function kpi_api.request_header(name text) returns text
language sql stable
as $$
  select coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}'::jsonb) ->> lower(name)
$$;

-- The tenant this request acts for. The JWT lists the caller's tenants ("tenant_ids": [uuid, …],
-- or one "tenant_id"); the x-tenant header picks one of them, and must. Raises FORBIDDEN (403) for
-- a header naming any other tenant (or anything that is not a listed uuid), TENANT_REQUIRED (400)
-- when several are listed and no header picks one, FORBIDDEN when the token lists none.
-- Evaluated once per statement in the row-level security policies: (select kpi_api.current_tenant_id()).
create or replace function kpi_api.current_tenant_id() returns uuid
language plpgsql stable
as $$
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
$$;

-- Tenant admins: a token whose tenant_roles claim names the active tenant with "kpi_admin",
-- e.g. {"role": "authenticated", "tenant_ids": ["<id>"], "tenant_roles": {"<id>": "kpi_admin"}}
-- (or a list of roles holding it). Membership (tenant_ids) comes first: a role for a tenant the
-- token does not grant is no role.
create or replace function kpi_api.is_tenant_admin() returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce(r = '"kpi_admin"'::jsonb or (jsonb_typeof(r) = 'array' and r ? 'kpi_admin'), false)
  from (select kpi_api.request_claims() -> 'tenant_roles' -> (kpi_api.current_tenant_id()::text) as r) x
$$;
comment on function kpi_api.is_tenant_admin() is 'True when the request''s token makes it an admin (tenant_roles: "kpi_admin") of the active tenant.';

-- ============================================================================================
-- API arguments as people type them
-- ============================================================================================
-- GET arguments reach a function as `"name" := $1::<parameter type>` (PostgREST's
-- Query/QueryBuilder.hs): a date parameter would turn `from=2026-02-30` into PostgreSQL's 22008
-- before the function runs. The API's parameters are text, parsed here, so that bad input is our
-- INVALID_INPUT naming the argument.

create or replace function kpi_api.date_argument(name text, value text) returns date
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
  perform kpi_api.raise_http_error('INVALID_INPUT', format('%s is not a calendar date: %s', name, left(value, 40)));
  return null;
end
$$;

-- An integer in [minimum, maximum]; NULL stays NULL.
create or replace function kpi_api.integer_argument(name text, value text, minimum integer, maximum integer) returns integer
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

-- ============================================================================================
-- CSV (RFC 4180)
-- ============================================================================================

-- One field: quoted when it holds a quote, a comma or a line break; NULL is empty.
create or replace function kpi_api.csv_field(value text) returns text
language sql immutable parallel safe
return case when value is null then ''
            when value ~ '[",\r\n]' then '"' || replace(value, '"', '""') || '"'
            else value end;

-- The header line of a view: its column names in order.
create or replace function kpi_api.csv_header(relation regclass) returns text
language sql stable parallel safe
return (select string_agg(kpi_api.csv_field(a.attname), ',' order by a.attnum) || E'\r\n'
        from pg_catalog.pg_attribute a
        where a.attrelid = relation and a.attnum > 0 and not a.attisdropped);
