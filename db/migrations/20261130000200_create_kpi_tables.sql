-- migrate:up

-- ============================================================================================
-- Tenants
-- ============================================================================================
create table kpi.tenants (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique
    constraint tenants_slug_format check (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  name text not null
    constraint tenants_name_not_blank check (btrim(name) <> ''),
  created_at timestamptz not null default now()
);
comment on table kpi.tenants is 'Customers of the SaaS. The slug is URL- and filename-safe (used in CSV file names).';

-- ============================================================================================
-- Source: weekly AVI reports (AIV, ATI, CRS percentages and revenue elasticity)
-- ============================================================================================
create table kpi.avi_reports (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  week_start date not null
    constraint avi_reports_week_start_is_monday check (extract(isodow from week_start) = 1),
  aiv_pct numeric(5, 2) not null constraint avi_reports_aiv_pct_range check (aiv_pct between 0 and 100),
  ati_pct numeric(5, 2) not null constraint avi_reports_ati_pct_range check (ati_pct between 0 and 100),
  crs_pct numeric(5, 2) not null constraint avi_reports_crs_pct_range check (crs_pct between 0 and 100),
  elasticity_usd_per_point numeric(10, 2) not null,
  computed_at timestamptz not null default now(),
  -- Also the index behind "latest report per tenant": a backward index-only scan, the values
  -- included so that the fill never visits the heap.
  constraint avi_reports_tenant_week_key unique (tenant_id, week_start)
    include (aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
);
comment on table kpi.avi_reports is 'One AVI report per tenant per week; week_start is the Monday the week begins.';
comment on column kpi.avi_reports.elasticity_usd_per_point is 'Revenue change in US dollars per percentage point of AIV.';

-- ============================================================================================
-- Source: VLI audits (integrity score)
-- ============================================================================================
create table kpi.vli_audits (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  audited_at timestamptz not null,
  integrity_pct numeric(5, 2) not null
    constraint vli_audits_integrity_pct_range check (integrity_pct between 0 and 100)
);
comment on table kpi.vli_audits is 'VLI audits; the latest one before the end of a week gives that week''s integrity.';
-- "Latest audit before a point in time" is one index-only probe; id breaks ties between audits
-- taken at the same instant, so the choice is deterministic.
create index vli_audits_tenant_latest_idx on kpi.vli_audits (tenant_id, audited_at desc, id desc) include (integrity_pct);

-- ============================================================================================
-- Source: clarity reports (JSON metrics; HRP = hallucination-risk probability, 0 to 1)
-- ============================================================================================
create table kpi.clarity_reports (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  measured_at timestamptz not null,
  -- The content of the metrics is the producer's business: a bad HRP inside it is reported by the
  -- aggregation as a warning, not refused here, so that the rest of the report is kept.
  metrics jsonb not null constraint clarity_reports_metrics_is_object check (jsonb_typeof(metrics) = 'object'),
  -- The one value the aggregation reads, kept beside the JSON so that its index can carry it.
  hrp jsonb generated always as (metrics -> 'hrp') stored
);
comment on table kpi.clarity_reports is 'Clarity measurements; metrics->''hrp'' is the hallucination-risk probability (0 to 1).';
-- "Latest report before a point in time" is one index-only probe, like the audits'.
create index clarity_reports_tenant_latest_idx on kpi.clarity_reports (tenant_id, measured_at desc, id desc) include (hrp);

-- ============================================================================================
-- The history: one row per tenant per week
-- ============================================================================================
create table kpi.kpi_history (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  as_of date not null constraint kpi_history_as_of_is_monday check (extract(isodow from as_of) = 1),
  aiv_pct numeric(5, 2) not null constraint kpi_history_aiv_pct_range check (aiv_pct between 0 and 100),
  ati_pct numeric(5, 2) not null constraint kpi_history_ati_pct_range check (ati_pct between 0 and 100),
  crs_pct numeric(5, 2) not null constraint kpi_history_crs_pct_range check (crs_pct between 0 and 100),
  elasticity_usd_per_point numeric(10, 2) not null,
  vli_integrity_pct numeric(5, 2) not null
    constraint kpi_history_vli_integrity_pct_range check (vli_integrity_pct between 0 and 100),
  vli_is_fallback boolean not null,
  hrp_pct numeric(5, 2) constraint kpi_history_hrp_pct_range check (hrp_pct between 0 and 100),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Also serves every read: a tenant's history, newest first, is a range scan of this index.
  constraint kpi_history_tenant_as_of_key unique (tenant_id, as_of)
);
comment on table kpi.kpi_history is 'Weekly KPIs per tenant, written only by the aggregation (kpi.fill_* functions).';
comment on column kpi.kpi_history.as_of is 'The Monday of the AVI week the row describes.';
comment on column kpi.kpi_history.vli_is_fallback is 'True when no VLI audit existed before the end of the week and vli_integrity_pct is the 100 fallback.';
comment on column kpi.kpi_history.hrp_pct is 'Hallucination-risk probability in percent (100 x clarity metrics->''hrp''); NULL when missing or invalid.';

-- migrate:down
drop table kpi.kpi_history;
drop table kpi.clarity_reports;
drop table kpi.vli_audits;
drop table kpi.avi_reports;
drop table kpi.tenants;
