-- Tenants: their slugs kept unique across tenants, the counts the incremental fill reads instead
-- of every tenant, what goes with a deleted tenant, and finding a tenant by slug or id.

-- ============================================================================================
-- Slugs, unique across tenants (kpi.tenant_slugs), kept by statement-level triggers: a bulk insert
-- of tenants checks its slugs in one statement; an update touches only the (id, slug) pairs it
-- changed.
-- ============================================================================================
create or replace function kpi.keep_tenant_slugs() returns trigger
language plpgsql
set search_path = ''
as $$
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

-- TRUNCATE fires no delete trigger: it empties the slugs too.
create or replace function kpi.truncate_tenant_slugs() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  truncate kpi.tenant_slugs;
  return null;
end
$$;

create or replace trigger tenants_keep_slugs_truncate after truncate on kpi.tenants
  for each statement execute function kpi.truncate_tenant_slugs();
create or replace trigger tenants_keep_slugs_insert after insert on kpi.tenants
  referencing new table as new_tenants for each statement execute function kpi.keep_tenant_slugs();
create or replace trigger tenants_keep_slugs_update after update on kpi.tenants
  referencing old table as old_tenants new table as new_tenants for each statement execute function kpi.keep_tenant_slugs();
create or replace trigger tenants_keep_slugs_delete after delete on kpi.tenants
  referencing old table as old_tenants for each statement execute function kpi.keep_tenant_slugs();

-- ============================================================================================
-- What the incremental fill reads instead of every tenant: how many there are
-- (kpi.tenant_count) and which have no AVI report (kpi.tenants_without_avi; the AVI side is kept
-- by kpi.track_source_changes). A deleted tenant takes what has no foreign key along.
-- ============================================================================================
create or replace function kpi.track_tenants() returns trigger
language plpgsql
-- Definer: whoever deletes a tenant, its custom KPI weeks go too.
security definer
set search_path = ''
as $$
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

create or replace trigger tenants_track_insert after insert on kpi.tenants referencing new table as new_tenants
  for each statement execute function kpi.track_tenants();
create or replace trigger tenants_track_delete after delete on kpi.tenants referencing old table as old_tenants
  for each statement execute function kpi.track_tenants();
create or replace trigger tenants_track_truncate after truncate on kpi.tenants
  for each statement execute function kpi.track_tenants();

-- ============================================================================================
-- A tenant as an operator names it: its slug or its id
-- ============================================================================================
-- UNKNOWN_TENANT when neither names one; INVALID_INPUT when nothing is given.
create or replace function kpi.tenant_id_of(tenant text) returns uuid
language plpgsql stable
set search_path = ''
as $$
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
comment on function kpi.tenant_id_of(text) is
  'The id of the tenant with this slug or id; UNKNOWN_TENANT when there is none. Example: select kpi.tenant_id_of(''acme'');';

-- ============================================================================================
-- Token claims
-- ============================================================================================
-- The claims kpi-history reads from a token, for issuers that ask the database for them:
-- `tenant_ids` (the tenants a user belongs to) and `tenant_roles` (where the user is kpi_admin),
-- from kpi.tenant_members. Where another service mints the tokens, it writes the same claims.

create or replace function kpi.token_claims(member uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
           'tenant_ids', coalesce(jsonb_agg(m.tenant_id order by m.tenant_id), '[]'),
           'tenant_roles', coalesce(jsonb_object_agg(m.tenant_id, m.role) filter (where m.role <> 'member'), '{}'))
  from kpi.tenant_members m
  where m.user_id = member
$$;
comment on function kpi.token_claims(uuid) is
  'The kpi-history claims of a user: {"tenant_ids": [...], "tenant_roles": {"<tenant id>": "kpi_admin"}}, from kpi.tenant_members.';

-- Supabase Auth's custom access token hook: it receives the event ({"user_id", "claims", …}) and
-- answers it with the claims to sign, here the token's own plus kpi-history's. Security definer:
-- the hook's role (supabase_auth_admin) may execute it and nothing else of the schema. A user
-- id that is not a uuid adds no tenant, rather than failing every sign-in.
create or replace function kpi.supabase_access_token_hook(event jsonb) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select jsonb_set(event, '{claims}', coalesce(event -> 'claims', '{}') || kpi.token_claims(kpi.uuid_or_null(event ->> 'user_id')))
$$;
comment on function kpi.supabase_access_token_hook(jsonb) is
  'Supabase Auth custom access token hook (Authentication → Hooks): adds tenant_ids and tenant_roles (kpi.token_claims) to every access token. See docs/deploy.md.';
