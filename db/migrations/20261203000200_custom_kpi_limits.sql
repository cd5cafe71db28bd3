-- migrate:up

-- Definitions were bounded only while active: a tenant admin could store any number of inactive
-- ones, and every fill of that tenant read them all. Now a tenant has at most max_per_tenant
-- definitions, active or not (checked per statement, db/definitions/05_custom_kpis.sql).
alter table kpi.custom_kpi_settings
  add column max_per_tenant integer not null default 100,
  add constraint custom_kpi_settings_max_total check (max_per_tenant between max_active_per_tenant and 1000);
comment on table kpi.custom_kpi_settings is
  'One row: how many custom KPIs a tenant may have, active (default 20) and in all (default 100).';

-- migrate:down
comment on table kpi.custom_kpi_settings is 'One row: how many active custom KPIs a tenant may have (default 20).';
alter table kpi.custom_kpi_settings drop constraint custom_kpi_settings_max_total, drop column max_per_tenant;
