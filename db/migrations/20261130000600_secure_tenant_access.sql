-- migrate:up

-- ============================================================================================
-- kpi_api: what the exposed api schema stands on. Not exposed itself. The API roles may execute
-- its functions (they read the caller's own request, or do a narrow job with owner rights) and
-- nothing in kpi.
-- ============================================================================================
create schema kpi_api;
comment on schema kpi_api is 'Private: request context and the owner-rights functions behind the api schema. Not exposed over HTTP.';
revoke all on schema kpi_api from public;
grant usage on schema kpi_api to anon, authenticated;

-- The verified JWT claims PostgREST set for this request ({} outside PostgREST). After a request
-- the session sees '' rather than NULL, hence nullif. (No SET clause on these two: it would keep
-- them from being inlined into the row-level security check, which runs on every read.)
create function kpi_api.request_claims() returns jsonb
language sql stable
as $$
  select coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb, '{}'::jsonb)
$$;

-- A request header (PostgREST lowercases their names), or NULL.
create function kpi_api.request_header(name text) returns text
language sql stable
as $$
  select coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}'::jsonb) ->> lower(name)
$$;

-- Answers the request with one of kpi.error_codes as PostgREST's error body
-- {"code", "message", "details", "hint"} and its HTTP status. Rolls the request back.
create function kpi_api.raise_http_error(code text, message text, hint text default null) returns void
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

-- Turns an error caught in an api function into the HTTP answer: our KH codes keep their name
-- and status; a read-only violation or missing privilege stays PostgREST's; anything else is
-- INTERNAL_ERROR with a message that reveals nothing inside.
create function kpi_api.raise_caught_error(caught_sqlstate text, caught_message text, caught_detail text) returns void
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

-- The tenant this request acts for. The JWT lists the caller's tenants ("tenant_ids": [uuid, …],
-- or one "tenant_id"); the x-tenant header picks one of them, and must. Raises FORBIDDEN (403) for
-- a header naming any other tenant (or anything that is not a listed uuid), TENANT_REQUIRED (400)
-- when several are listed and no header picks one, FORBIDDEN when the token lists none.
-- Evaluated once per statement in the row-level security policies: (select kpi_api.current_tenant_id()).
create function kpi_api.current_tenant_id() returns uuid
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

grant execute on function kpi_api.request_claims() to anon, authenticated;
grant execute on function kpi_api.request_header(text) to anon, authenticated;
grant execute on function kpi_api.raise_http_error(text, text, text) to anon, authenticated;
grant execute on function kpi_api.raise_caught_error(text, text, text) to anon, authenticated;
grant execute on function kpi_api.current_tenant_id() to authenticated;

-- ============================================================================================
-- Row-level security on every kpi table, enabled and forced
-- ============================================================================================
-- Forced, so that even a non-superuser owner is subject to it; the policies "… maintained by
-- their owner" let the role that ran these migrations (the owner of every function that writes)
-- keep working. Superusers bypass row-level security altogether.
do $$
declare
  t text;
begin
  foreach t in array array['tenants', 'avi_reports', 'vli_audits', 'clarity_reports', 'kpi_history',
                           'kpi_runs', 'error_codes'] loop
    execute format('alter table kpi.%I enable row level security', t);
    execute format('alter table kpi.%I force row level security', t);
    execute format('create policy %I on kpi.%I for all to %I using (true) with check (true)',
                   t || ' are maintained by their owner', t, current_user);
  end loop;
end
$$;

-- The API roles need the schema to reach the two tables the api views read; nothing else in kpi.
grant usage on schema kpi to authenticated;
grant select on kpi.kpi_history to authenticated;
grant select (id, slug, name) on kpi.tenants to authenticated;

create policy "KPI history is visible to members of the active tenant"
  on kpi.kpi_history for select to authenticated
  using (tenant_id = (select kpi_api.current_tenant_id()));

create policy "A tenant is visible to its own members while active"
  on kpi.tenants for select to authenticated
  using (id = (select kpi_api.current_tenant_id()));

-- What the API roles may see changed: PostgREST reloads its schema cache on this notification.
notify pgrst, 'reload schema';

-- migrate:down
drop policy "A tenant is visible to its own members while active" on kpi.tenants;
drop policy "KPI history is visible to members of the active tenant" on kpi.kpi_history;
revoke select (id, slug, name) on kpi.tenants from authenticated;
revoke select on kpi.kpi_history from authenticated;
revoke usage on schema kpi from authenticated;
do $$
declare
  t text;
begin
  foreach t in array array['tenants', 'avi_reports', 'vli_audits', 'clarity_reports', 'kpi_history',
                           'kpi_runs', 'error_codes'] loop
    execute format('drop policy %I on kpi.%I', t || ' are maintained by their owner', t);
    execute format('alter table kpi.%I no force row level security', t);
    execute format('alter table kpi.%I disable row level security', t);
  end loop;
end
$$;
drop schema kpi_api cascade;
notify pgrst, 'reload schema';
