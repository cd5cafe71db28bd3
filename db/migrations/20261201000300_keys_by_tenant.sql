-- migrate:up

-- ============================================================================================
-- Every table holding tenant data is keyed by its tenant, so that it can be distributed by
-- tenant (Citus: every primary key and unique constraint of a distributed table includes the
-- distribution column). See docs/scale-out.md.
-- ============================================================================================

-- Sources: the index every read already used becomes the primary key, leading with the tenant,
-- and the separate key on the surrogate id goes — one index less per source table to write and
-- keep (the id stays, unique by construction, as the tie-breaker between equal times).
--   avi_reports: one report per tenant and week, (tenant_id, week_start), the values included;
--   vli_audits, clarity_reports: "the latest before a point in time", (tenant_id, time, id), the
--   value the fill reads included (scanned backward, as the descending index was forward).
alter table kpi.avi_reports drop constraint avi_reports_pkey, drop constraint avi_reports_tenant_week_key,
  add constraint avi_reports_pkey primary key (tenant_id, week_start) include (aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point);
alter table kpi.vli_audits drop constraint vli_audits_pkey,
  add constraint vli_audits_pkey primary key (tenant_id, audited_at, id) include (integrity_pct);
drop index kpi.vli_audits_tenant_latest_idx;
alter table kpi.clarity_reports drop constraint clarity_reports_pkey,
  add constraint clarity_reports_pkey primary key (tenant_id, measured_at, id) include (hrp);
drop index kpi.clarity_reports_tenant_latest_idx;

-- The history: its natural key, (tenant_id, as_of), becomes the primary key, and the surrogate id
-- goes (nothing refers to it): one index less to write on every fill.
alter table kpi.kpi_history drop column id;
alter table kpi.kpi_history drop constraint kpi_history_tenant_as_of_key,
  add constraint kpi_history_pkey primary key (tenant_id, as_of);

-- Tenants are keyed by id. A slug must stay unique across all tenants, which a table distributed
-- by id cannot enforce on its own: the slugs live in a small table of their own (a reference table
-- on Citus), kept by the triggers below.
create table kpi.tenant_slugs (
  slug text primary key,
  tenant_id uuid not null constraint tenant_slugs_tenant_key unique
);
comment on table kpi.tenant_slugs is
  'Every tenant''s slug, unique across tenants: kept from kpi.tenants by triggers (on Citus, a reference table).';
alter table kpi.tenant_slugs enable row level security;
alter table kpi.tenant_slugs force row level security;
do $$ begin
  execute format('create policy "tenant_slugs are maintained by their owner" on kpi.tenant_slugs for all to %I using (true) with check (true)', current_user);
end $$;
insert into kpi.tenant_slugs (slug, tenant_id) select slug, id from kpi.tenants;
alter table kpi.tenants drop constraint tenants_slug_key;

-- Statement-level, with transition tables: a bulk insert of tenants checks its slugs in one
-- statement. An update touches only the (id, slug) pairs it changed.
create function kpi.keep_tenant_slugs() returns trigger
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
create function kpi.truncate_tenant_slugs() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  truncate kpi.tenant_slugs;
  return null;
end
$$;
create trigger tenants_keep_slugs_truncate after truncate on kpi.tenants
  for each statement execute function kpi.truncate_tenant_slugs();
create trigger tenants_keep_slugs_insert after insert on kpi.tenants
  referencing new table as new_tenants for each statement execute function kpi.keep_tenant_slugs();
create trigger tenants_keep_slugs_update after update on kpi.tenants
  referencing old table as old_tenants new table as new_tenants for each statement execute function kpi.keep_tenant_slugs();
create trigger tenants_keep_slugs_delete after delete on kpi.tenants
  referencing old table as old_tenants for each statement execute function kpi.keep_tenant_slugs();

-- ============================================================================================
-- How each table is placed when the database is distributed (docs/scale-out.md): the plan the
-- scale-out commands are generated from, and the rules a test checks against the catalog.
-- ============================================================================================
create table kpi.table_distribution (
  table_name text primary key,
  placement text not null constraint table_distribution_placement check (placement in ('distributed', 'reference', 'local')),
  distribution_column text,
  colocate_with text,
  why text not null,
  constraint table_distribution_column_iff_distributed check ((placement = 'distributed') = (distribution_column is not null))
);
comment on table kpi.table_distribution is
  'Placement of every kpi table on a distributed (Citus) deployment: distributed by tenant and co-located, replicated reference tables, or local to the coordinator. kpi.citus_commands() turns it into the commands.';
alter table kpi.table_distribution enable row level security;
alter table kpi.table_distribution force row level security;
do $$ begin
  execute format('create policy "table_distribution is maintained by its owner" on kpi.table_distribution for all to %I using (true) with check (true)', current_user);
end $$;
insert into kpi.table_distribution (table_name, placement, distribution_column, colocate_with, why) values
  ('tenants', 'distributed', 'id', null, 'one row per tenant: the co-location group every tenant table joins'),
  ('avi_reports', 'distributed', 'tenant_id', 'tenants', 'tenant data'),
  ('vli_audits', 'distributed', 'tenant_id', 'tenants', 'tenant data'),
  ('clarity_reports', 'distributed', 'tenant_id', 'tenants', 'tenant data'),
  ('kpi_history', 'distributed', 'tenant_id', 'tenants', 'tenant data: the fill writes it on the node of its sources'),
  ('tenant_slugs', 'reference', null, null, 'slugs unique across tenants, which a table distributed by id cannot check'),
  ('error_codes', 'reference', null, null, 'small lookup table read by functions on every node'),
  ('kpi_runs', 'local', null, null, 'the run log, written by the coordinator that starts each run'),
  ('cron_secrets', 'local', null, null, 'checked by the API on the coordinator'),
  ('api_denials', 'local', null, null, 'the API''s audit, written on the coordinator'),
  ('table_distribution', 'local', null, null, 'this plan');

-- The statements that distribute the schema, in order: reference tables, then the tenants table,
-- then each co-located table (create_distributed_table requires what a foreign key points at to
-- be distributed or a reference table first).
create function kpi.citus_commands() returns setof text
language sql stable
set search_path = ''
as $$
  select command from (
    select 1 as step, table_name,
           format('select create_reference_table(%L);', 'kpi.' || table_name) as command
    from kpi.table_distribution where placement = 'reference'
    union all
    select case when colocate_with is null then 2 else 3 end, table_name,
           case when colocate_with is null
                then format('select create_distributed_table(%L, %L);', 'kpi.' || table_name, distribution_column)
                else format('select create_distributed_table(%L, %L, colocate_with => %L);',
                            'kpi.' || table_name, distribution_column, 'kpi.' || colocate_with) end
    from kpi.table_distribution where placement = 'distributed'
  ) c
  order by step, table_name
$$;
comment on function kpi.citus_commands() is
  'The create_reference_table / create_distributed_table statements that distribute the kpi schema on Citus, in order. Example: select * from kpi.citus_commands();';

-- migrate:down
drop function kpi.citus_commands();
drop table kpi.table_distribution;
drop trigger tenants_keep_slugs_truncate on kpi.tenants;
drop function kpi.truncate_tenant_slugs();
drop trigger tenants_keep_slugs_delete on kpi.tenants;
drop trigger tenants_keep_slugs_update on kpi.tenants;
drop trigger tenants_keep_slugs_insert on kpi.tenants;
drop function kpi.keep_tenant_slugs();
alter table kpi.tenants add constraint tenants_slug_key unique (slug);
drop table kpi.tenant_slugs;
alter table kpi.kpi_history drop constraint kpi_history_pkey,
  add constraint kpi_history_tenant_as_of_key unique (tenant_id, as_of);
alter table kpi.kpi_history add column id bigint generated always as identity;
alter table kpi.kpi_history add constraint kpi_history_pkey primary key (id);
create index clarity_reports_tenant_latest_idx on kpi.clarity_reports (tenant_id, measured_at desc, id desc) include (hrp);
alter table kpi.clarity_reports drop constraint clarity_reports_pkey, add constraint clarity_reports_pkey primary key (id);
create index vli_audits_tenant_latest_idx on kpi.vli_audits (tenant_id, audited_at desc, id desc) include (integrity_pct);
alter table kpi.vli_audits drop constraint vli_audits_pkey, add constraint vli_audits_pkey primary key (id);
alter table kpi.avi_reports drop constraint avi_reports_pkey, add constraint avi_reports_pkey primary key (id),
  add constraint avi_reports_tenant_week_key unique (tenant_id, week_start) include (aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point);
