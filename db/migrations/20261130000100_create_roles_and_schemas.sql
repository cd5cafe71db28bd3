-- migrate:up

-- ============================================================================================
-- Roles (cluster-wide, so created only when missing: several databases may share a cluster)
-- ============================================================================================
-- PostgREST connects as `authenticator` and switches to `anon` or `authenticated` per request.
-- NOINHERIT: authenticator itself holds no privileges, only the right to become the others.
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

grant anon, authenticated to authenticator;

-- ============================================================================================
-- Schemas: `kpi` holds the data and is never exposed; `api` holds only views and functions and is
-- the one schema PostgREST serves.
-- ============================================================================================
create schema kpi;
comment on schema kpi is 'Private: KPI source tables, history, run log and the aggregation. Not exposed over HTTP.';

create schema api;
comment on schema api is 'The HTTP API of kpi-history, served by PostgREST. Views and functions only.';

revoke all on schema kpi from public;
revoke all on schema api from public;
grant usage on schema api to anon, authenticated;

-- Functions are executable by PUBLIC by default; every function is granted explicitly instead.
alter default privileges revoke execute on functions from public;

-- migrate:down
drop schema api cascade;
drop schema kpi cascade;
alter default privileges grant execute on functions to public;
-- The roles stay: they are cluster-wide and other databases of the cluster may use them.
