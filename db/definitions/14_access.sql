-- Who may do what: every policy and grant, in one place. PostgREST connects as `authenticator`
-- and becomes `anon` (no token) or `authenticated` (a JWT) per request. The API roles may use
-- the api schema, the request helpers in kpi_api, and read a few kpi tables under row-level
-- security (their tenant's rows only); nothing else. No function is executable by PUBLIC (the
-- baseline's default privileges), so every one an API role calls is granted here.

-- ============================================================================================
-- Row-level security: enabled and forced on every kpi table
-- ============================================================================================

-- The owner — the role that runs the migrations, whatever its name, a superuser or not — maintains
-- every table. Row-level security is forced, so that it applies to the owner too (a function of the
-- owner's reading a table on a tenant's behalf still sees only what a policy lets it); each table
-- therefore has a policy for the owner, created before the forcing.
do $$
declare
  t regclass;
begin
  for t in select c.oid::regclass from pg_catalog.pg_class c where c.relnamespace = 'kpi'::regnamespace and c.relkind = 'r' loop
    execute format('drop policy if exists "the owner maintains it" on %s', t);
    execute format('create policy "the owner maintains it" on %s for all to %I using (true) with check (true)', t, current_user);
    execute format('alter table %s enable row level security', t);
    execute format('alter table %s force row level security', t);
  end loop;
end
$$;

-- A tenant's members read its rows (the active tenant: kpi_api.current_tenant_id(), evaluated
-- once per statement).
drop policy if exists "A tenant is visible to its own members" on kpi.tenants;
create policy "A tenant is visible to its own members" on kpi.tenants
  for select to authenticated using (id = (select kpi_api.current_tenant_id()));
drop policy if exists "KPI history is visible to members of the active tenant" on kpi.kpi_history;
create policy "KPI history is visible to members of the active tenant" on kpi.kpi_history
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
drop policy if exists "Anomalies are visible to members of the active tenant" on kpi.kpi_anomalies;
create policy "Anomalies are visible to members of the active tenant" on kpi.kpi_anomalies
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
drop policy if exists "Changes are visible to members of the active tenant" on kpi.kpi_changes;
create policy "Changes are visible to members of the active tenant" on kpi.kpi_changes
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
drop policy if exists "Custom KPI values are visible to members of the active tenant" on kpi.custom_kpi_weeks;
create policy "Custom KPI values are visible to members of the active tenant" on kpi.custom_kpi_weeks
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
-- One row each, holding no tenant data: readers compare their cursor with the feed's watermark,
-- and see the limit of custom KPIs.
drop policy if exists "The feed's watermark is readable by tenant members" on kpi.change_feed_settings;
create policy "The feed's watermark is readable by tenant members" on kpi.change_feed_settings
  for select to authenticated using (true);
drop policy if exists "The limits are readable by tenant members" on kpi.custom_kpi_settings;
create policy "The limits are readable by tenant members" on kpi.custom_kpi_settings
  for select to authenticated using (true);

-- Custom KPI definitions: members read them; admins of the tenant (tenant_roles: "kpi_admin")
-- write them. The delete policy leaves out the admin test on purpose: a member's delete reaches
-- the row trigger, which answers FORBIDDEN instead of "0 rows" (and the update policy refuses a
-- member's update).
drop policy if exists "Custom KPIs are visible to members of the active tenant" on kpi.custom_kpis;
create policy "Custom KPIs are visible to members of the active tenant" on kpi.custom_kpis
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
drop policy if exists "Admins of the active tenant define custom KPIs" on kpi.custom_kpis;
create policy "Admins of the active tenant define custom KPIs" on kpi.custom_kpis
  for insert to authenticated
  with check (tenant_id = (select kpi_api.current_tenant_id()) and (select kpi_api.is_tenant_admin()));
drop policy if exists "Admins of the active tenant change custom KPIs" on kpi.custom_kpis;
create policy "Admins of the active tenant change custom KPIs" on kpi.custom_kpis
  for update to authenticated
  using (tenant_id = (select kpi_api.current_tenant_id()))
  with check (tenant_id = (select kpi_api.current_tenant_id()) and (select kpi_api.is_tenant_admin()));
drop policy if exists "Admins of the active tenant delete custom KPIs" on kpi.custom_kpis;
create policy "Admins of the active tenant delete custom KPIs" on kpi.custom_kpis
  for delete to authenticated
  using (tenant_id = (select kpi_api.current_tenant_id()));

-- ============================================================================================
-- Grants
-- ============================================================================================

grant usage on schema api to anon, authenticated;
grant usage on schema kpi_api to anon, authenticated;
-- The API views read these kpi tables (row-level security above decides the rows).
grant usage on schema kpi to authenticated;
grant select on kpi.kpi_history, kpi.kpi_anomalies, kpi.kpi_changes, kpi.custom_kpi_weeks,
                kpi.change_feed_settings, kpi.custom_kpi_settings to authenticated;
grant select (id, slug, name) on kpi.tenants to authenticated;
grant select on kpi.kpi_history_rollups, kpi.custom_kpi_values, kpi.custom_kpi_rollups to authenticated;
grant select, delete on kpi.custom_kpis to authenticated;
grant insert (key, label, unit, source, path, field, aggregate, combine, left_kpi, right_kpi, valid_min, valid_max, active),
      update (label, unit, source, path, field, aggregate, combine, left_kpi, right_kpi, valid_min, valid_max, active)
  on kpi.custom_kpis to authenticated;

-- The API: reads for tenant members; the cron RPC and health for anyone (they check themselves).
grant select on api.kpi_history, api.kpi_history_export, api.active_tenant, api.kpi_history_monthly,
                api.kpi_history_quarterly, api.kpi_anomalies, api.custom_kpi_values, api.custom_kpi_rollups to authenticated;
grant select, insert, update, delete on api.custom_kpis to authenticated;
grant execute on function api.kpi_history_csv(text, text, text, text, text), api.kpi_history_changes(text) to authenticated;
grant execute on function api.kpi_history_cron(json), api.kpi_history_health() to anon, authenticated;

-- The request helpers the API's functions and policies call as the caller.
grant execute on function kpi_api.request_claims(), kpi_api.request_header(text), kpi_api.raise_http_error(text, text, text),
                          kpi_api.raise_request_error(text, text, text), kpi_api.raise_caught_error(text, text, text),
                          kpi_api.run_cron(jsonb, text), kpi_api.health(boolean), kpi_api.cron_secret_matches(text)
  to anon, authenticated;
grant execute on function kpi_api.current_tenant_id(), kpi_api.is_tenant_admin(), kpi_api.date_argument(text, text),
                          kpi_api.integer_argument(text, text, integer, integer), kpi_api.csv_field(text),
                          kpi_api.csv_header(regclass), kpi_api.cursor_position(text), kpi_api.read_changes(text, uuid, integer),
                          kpi_api.changes_page(text, integer), kpi_api.history_change_data(kpi.history_change),
                          kpi_api.change_log_horizon()
  to authenticated;

-- ============================================================================================
-- Bounded requests: a statement timeout for the API roles, set on the role itself (ALTER ROLE …
-- SET): PostgREST reads those settings (pg_roles.rolconfig) when it starts and applies them to
-- each request; it does not read ALTER ROLE … IN DATABASE settings, and PostgreSQL applies those
-- only at login, never on SET ROLE. Roles belong to the whole server, so a timeout already set
-- (Supabase sets its own on anon and authenticated) is kept. A function that must run longer says
-- so in its own SET clause, which PostgREST hoists (the cron RPC). Altering a role needs
-- CREATEROLE; without it the migration says what to run instead.
-- ============================================================================================
do $$
declare
  api_role text;
  timeout text;
begin
  for api_role, timeout in values ('anon', '5s'), ('authenticated', '15s') loop
    if not exists (select from pg_catalog.pg_roles r, unnest(r.rolconfig) setting
                   where r.rolname = api_role and setting like 'statement_timeout=%') then
      begin
        execute format('alter role %I set statement_timeout = %L', api_role, timeout);
      exception when insufficient_privilege then
        raise warning 'kpi-history: could not set % statement_timeout (needs CREATEROLE); as an administrator run: alter role % set statement_timeout = ''%'';',
          api_role, api_role, timeout;
      end;
    end if;
  end loop;
end
$$;

-- The owner may act as the API roles (set role anon | authenticated), as PostgREST's authenticator
-- does: psql's checks of what a tenant's user sees (scripts/test-kpi-history.sh, docs/operations.md)
-- run as the owner. A superuser may already; an owner with CREATEROLE grants it to itself.
do $$
begin
  if not (pg_catalog.pg_has_role(current_user, 'anon', 'MEMBER') and pg_catalog.pg_has_role(current_user, 'authenticated', 'MEMBER')) then
    execute format('grant anon, authenticated to %I', current_user);
  end if;
exception when insufficient_privilege then
  raise warning 'kpi-history: % cannot act as the API roles (needs CREATEROLE); psql checks as a tenant''s user will fail: as an administrator run: grant anon, authenticated to %;', current_user, current_user;
end
$$;

-- On Supabase, Auth calls the hook as supabase_auth_admin; elsewhere the role does not exist.
do $$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'supabase_auth_admin') then
    grant usage on schema kpi to supabase_auth_admin;
    grant execute on function kpi.supabase_access_token_hook(jsonb) to supabase_auth_admin;
  end if;
end
$$;
