-- migrate:up

-- The baseline: every table of kpi-history as the seventeen migrations up to 20261201000900 left
-- it, in one file, with no function, view, trigger, policy or grant — those live in
-- db/definitions/, applied after the migrations by scripts/migrate.sh (docs/schema.md, "Where
-- things live").
--
-- It carries the version of the last migration it replaces: a database migrated through those
-- seventeen has this version recorded, so dbmate counts the baseline as applied and moves on to the
-- migrations after it; a new database gets the baseline instead of the seventeen. A database
-- migrated only part of the way is refused below: it upgrades with the release before the baseline
-- first (docs/schema.md, "Upgrading").

do $$
begin
  if to_regnamespace('kpi') is not null then
    raise exception 'kpi-history: this database has a kpi schema but not the migrations up to 20261201000900: migrate it with the release before the baseline first (git checkout 7a3aaf2 && npm run db:migrate), then with this one';
  end if;
end
$$;

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
-- Schemas: `kpi` holds the data and is never exposed; `kpi_api` what the api schema stands on;
-- `api` holds only views and functions and is the one schema PostgREST serves.
-- ============================================================================================
create schema kpi;
comment on schema kpi is 'Private: KPI source tables, history, run log and the aggregation. Not exposed over HTTP.';
create schema kpi_api;
comment on schema kpi_api is 'Private: request context and the owner-rights functions behind the api schema. Not exposed over HTTP.';
create schema api;
comment on schema api is 'The HTTP API of kpi-history, served by PostgREST. Views and functions only.';
revoke all on schema kpi from public;
revoke all on schema kpi_api from public;
revoke all on schema api from public;

-- Functions are executable by PUBLIC by default; every function is granted explicitly instead.
alter default privileges revoke execute on functions from public;

-- PostgREST's media type handler: a function returning this domain answers Accept: text/csv raw.
create domain api."text/csv" as text;
comment on domain api."text/csv" is 'Media type text/csv: functions returning it answer Accept: text/csv with their text as is.';

-- pg_cron lives in one database of the cluster (cron.database_name): the extension is created when
-- this is that database. Elsewhere (test clones, a server without it) nothing is scheduled here.
-- A non-superuser owner (managed PostgreSQL) may be refused both the setting (it needs
-- pg_read_all_settings) and the extension: the platform enables pg_cron itself (docs/deploy.md).
do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_cron')
     or not exists (select from pg_catalog.pg_available_extensions where name = 'pg_cron') then
    return;
  end if;
  if current_setting('cron.database_name', true) = current_database() then
    create extension if not exists pg_cron;
  end if;
exception when insufficient_privilege then
  raise notice 'kpi-history: pg_cron not set up here (%): enable it as your platform documents, then schedule with db/setup/schedule_in_database.sql (docs/deploy.md)', sqlerrm;
end
$$;

-- ============================================================================================
-- Error codes: the one list of the stable codes callers see
-- ============================================================================================
-- Functions raise them with their own SQLSTATE (class KH, digits near the HTTP status); the API
-- layer and the SDK translate the SQLSTATE into `code` and a status with this table.
create table kpi.error_codes (
  code text primary key constraint error_codes_code_format check (code ~ '^[A-Z][A-Z_]*$'),
  sqlstate char(5) not null unique constraint error_codes_sqlstate_format check (sqlstate ~ '^KH[0-9]{3}$'),
  http_status smallint not null,
  description text not null
);
comment on table kpi.error_codes is 'Stable error codes: raised with SQLSTATE class KH, answered over HTTP as {"code": code}.';
comment on column kpi.error_codes.code is 'Also used as warning codes: INVALID_CLARITY (a clarity report whose hrp is not a number in 0..1).';
insert into kpi.error_codes (code, sqlstate, http_status, description) values
  ('INVALID_INPUT', 'KH400', 400, 'A parameter or request body is malformed.'),
  ('TENANT_REQUIRED', 'KH401', 400, 'Several tenants are in the token; the x-tenant header must choose one.'),
  ('FORBIDDEN', 'KH403', 403, 'Missing or wrong credentials for this operation or tenant.'),
  ('UNKNOWN_TENANT', 'KH404', 404, 'No tenant has this id.'),
  ('CURSOR_EXPIRED', 'KH410', 410, 'The cursor is older than the oldest change kept: re-read the current state, then follow the feed from the cursor the re-read started at.'),
  ('NO_AVI', 'KH422', 422, 'The tenant has no AVI report, so there is no week to record.'),
  ('INVALID_CUSTOM', 'KH423', 422, 'A custom KPI''s value was outside its valid range or not a number: stored as NULL (a run warning, never an HTTP answer).'),
  ('INTERNAL_ERROR', 'KH500', 500, 'Something unexpected failed; the run log has the details.');

-- ============================================================================================
-- Tenants and their plans
-- ============================================================================================
-- KPI history is kept forever; the source reports behind it as long as the tenant's plan says.
create table kpi.plans (
  plan text primary key constraint plans_name_format check (plan ~ '^[a-z][a-z0-9_-]{0,39}$'),
  -- NULL: sources are kept forever.
  source_retention_days integer constraint plans_source_retention_positive check (source_retention_days > 0),
  description text not null
);
comment on table kpi.plans is 'Tenant plans and how long each keeps its source reports (NULL days: forever). Editable data.';
insert into kpi.plans (plan, source_retention_days, description) values
  ('free', 90, 'Source reports kept 90 days'),
  ('pro', 400, 'Source reports kept 400 days'),
  ('enterprise', null, 'Source reports kept forever');

create table kpi.tenants (
  id uuid primary key default gen_random_uuid(),
  slug text not null constraint tenants_slug_format check (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  name text not null constraint tenants_name_not_blank check (btrim(name) <> ''),
  created_at timestamptz not null default now(),
  -- New tenants start on `enterprise`: nothing is deleted until someone chooses a retention.
  plan text not null default 'enterprise' constraint tenants_plan_fkey references kpi.plans (plan) on update cascade,
  source_retention_days integer constraint tenants_source_retention_positive check (source_retention_days > 0),
  sources_purged_before timestamptz
);
comment on table kpi.tenants is 'Customers of the SaaS. The slug is URL- and filename-safe (used in CSV file names).';
comment on column kpi.tenants.plan is 'The tenant''s plan: how long its source reports are kept (kpi.plans).';
comment on column kpi.tenants.source_retention_days is 'Overrides the plan''s source retention for this tenant (days); NULL: the plan''s.';
comment on column kpi.tenants.sources_purged_before is
  'Sources older than this may have been deleted under an earlier, shorter retention: history weeks ending before it are never recomputed.';

-- A slug must stay unique across all tenants, which a table distributed by id cannot enforce on
-- its own: the slugs live in a small table of their own (a reference table on Citus), kept by
-- triggers on kpi.tenants.
create table kpi.tenant_slugs (
  slug text primary key,
  tenant_id uuid not null constraint tenant_slugs_tenant_key unique
);
comment on table kpi.tenant_slugs is
  'Every tenant''s slug, unique across tenants: kept from kpi.tenants by triggers (on Citus, a reference table).';

-- How many tenants there are, and which have no AVI report: an incremental run reports its
-- totals and its NO_AVI errors without reading every tenant.
create table kpi.tenant_count (
  singleton boolean primary key default true constraint tenant_count_one_row check (singleton),
  tenants bigint not null constraint tenant_count_not_negative check (tenants >= 0)
);
comment on table kpi.tenant_count is 'The number of tenants (one row), kept by triggers on kpi.tenants.';
insert into kpi.tenant_count (tenants) values (0);

create table kpi.tenants_without_avi (
  tenant_id uuid primary key
);
comment on table kpi.tenants_without_avi is 'Tenants that have no AVI report (NO_AVI), kept by triggers on kpi.tenants and kpi.avi_reports.';

-- ============================================================================================
-- Sources. Each is keyed by tenant first, the key being the index every read uses, with the
-- value the fill reads included (an index-only probe).
-- ============================================================================================
create table kpi.avi_reports (
  id bigint generated always as identity,
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  week_start date not null constraint avi_reports_week_start_is_monday check (extract(isodow from week_start) = 1),
  aiv_pct numeric(5, 2) not null constraint avi_reports_aiv_pct_range check (aiv_pct between 0 and 100),
  ati_pct numeric(5, 2) not null constraint avi_reports_ati_pct_range check (ati_pct between 0 and 100),
  crs_pct numeric(5, 2) not null constraint avi_reports_crs_pct_range check (crs_pct between 0 and 100),
  elasticity_usd_per_point numeric(10, 2) not null,
  computed_at timestamptz not null default now(),
  constraint avi_reports_pkey primary key (tenant_id, week_start) include (aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
);
comment on table kpi.avi_reports is 'One AVI report per tenant per week; week_start is the Monday the week begins.';
comment on column kpi.avi_reports.elasticity_usd_per_point is 'Revenue change in US dollars per percentage point of AIV.';

create table kpi.vli_audits (
  id bigint generated always as identity,
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  audited_at timestamptz not null,
  integrity_pct numeric(5, 2) not null constraint vli_audits_integrity_pct_range check (integrity_pct between 0 and 100),
  -- "The latest audit before a point in time" is one backward probe; id breaks ties.
  constraint vli_audits_pkey primary key (tenant_id, audited_at, id) include (integrity_pct)
);
comment on table kpi.vli_audits is 'VLI audits; the latest one before the end of a week gives that week''s integrity.';

create table kpi.clarity_reports (
  id bigint generated always as identity,
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  measured_at timestamptz not null,
  -- The content of the metrics is the producer's business: a bad HRP inside it is reported by the
  -- aggregation as a warning, not refused here, so that the rest of the report is kept.
  metrics jsonb not null constraint clarity_reports_metrics_is_object check (jsonb_typeof(metrics) = 'object'),
  -- The one value the fill reads, kept beside the JSON so that the key can carry it.
  hrp jsonb generated always as (metrics -> 'hrp') stored,
  constraint clarity_reports_pkey primary key (tenant_id, measured_at, id) include (hrp)
);
comment on table kpi.clarity_reports is 'Clarity measurements; metrics->''hrp'' is the hallucination-risk probability (0 to 1).';

-- What each write to the sources made stale: one row per writing statement (a row per tenant kept
-- by an upsert cost a bulk load 1.5×; this costs a few per cent).
create table kpi.source_changes (
  id bigint generated always as identity primary key,
  tenant_ids uuid[] not null,
  from_weeks date[] not null,
  recorded_at timestamptz not null default now(),
  constraint source_changes_same_length check (cardinality(tenant_ids) = cardinality(from_weeks))
);
comment on table kpi.source_changes is
  'What each write to the source tables made stale: its tenants and, for each, the earliest week whose history may have changed. Written by triggers; consumed by the incremental fill. kpi.stale_tenants shows it per tenant.';

-- When the last source cleanup started: what it deleted is older than this minus each tenant's
-- retention. Kept here, not in the run log, which is itself pruned.
create table kpi.retention_state (
  singleton boolean primary key default true constraint retention_state_one_row check (singleton),
  last_cleanup_as_of timestamptz
);
comment on table kpi.retention_state is 'When the last source cleanup started (one row): the fill''s horizon follows from it.';
insert into kpi.retention_state default values;

-- ============================================================================================
-- The history: one row per tenant per week
-- ============================================================================================
create table kpi.kpi_history (
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
  revision integer not null default 1,
  -- Also serves every read: a tenant's history, newest first, is a range scan of this key.
  constraint kpi_history_pkey primary key (tenant_id, as_of)
);
comment on table kpi.kpi_history is 'Weekly KPIs per tenant, written only by the aggregation (kpi.fill_* functions).';
comment on column kpi.kpi_history.as_of is 'The Monday of the AVI week the row describes.';
comment on column kpi.kpi_history.vli_is_fallback is 'True when no VLI audit existed before the end of the week and vli_integrity_pct is the 100 fallback.';
comment on column kpi.kpi_history.hrp_pct is 'Hallucination-risk probability in percent (100 x clarity metrics->''hrp''); NULL when missing or invalid.';
comment on column kpi.kpi_history.revision is 'Raised by every update of the row: orders its versions in the change feed.';

-- ============================================================================================
-- Runs: every fill, backfill, cleanup and skipped run, with who triggered it
-- ============================================================================================
create table kpi.kpi_runs (
  id bigint generated always as identity primary key,
  kind text not null constraint kpi_runs_kind check (kind in ('fill', 'fill_all', 'backfill', 'cleanup')),
  -- NULL: all tenants. No foreign key: the log outlives deleted tenants.
  tenant_id uuid,
  range_from date,
  range_to date,
  -- pg_cron, api (a PostgREST request) or sql (any other session: psql, an app, a script).
  trigger text not null constraint kpi_runs_trigger check (trigger in ('pg_cron', 'api', 'sql')),
  db_user text not null default current_user,
  application_name text,
  -- The session doing the run: a `running` run whose session is gone will never finish.
  backend_pid integer not null default pg_backend_pid(),
  status text not null default 'running'
    constraint kpi_runs_status check (status in ('running', 'ok', 'partial', 'failed', 'skipped')),
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz,
  duration_ms numeric generated always as (round(extract(epoch from finished_at - started_at) * 1000, 3)) stored,
  ok_count integer,
  total_count integer,
  rows_written integer,
  errors jsonb not null default '[]' constraint kpi_runs_errors_is_array check (jsonb_typeof(errors) = 'array'),
  warnings jsonb not null default '[]' constraint kpi_runs_warnings_is_array check (jsonb_typeof(warnings) = 'array'),
  lock_holder jsonb,
  details jsonb,
  mode text constraint kpi_runs_mode check (mode in ('incremental', 'full')),
  constraint kpi_runs_finished_when_not_running check ((status = 'running') = (finished_at is null))
);
comment on table kpi.kpi_runs is 'One row per aggregation run: trigger, status, counts, errors and warnings. Kept 90 days.';
comment on column kpi.kpi_runs.status is 'ok: every tenant written; partial: some tenants had errors; failed: nothing written (see errors); skipped: another all-tenant run held the lock; running: not finished.';
comment on column kpi.kpi_runs.lock_holder is
  'For a skipped run: the session that held the all-tenant lock, {"pid", "since", "run_id", "application_name"}.';
comment on column kpi.kpi_runs.details is
  'What a run did beyond the counts: for a cleanup, the source rows deleted per table, the batches and the longest batch.';
comment on column kpi.kpi_runs.mode is 'For an all-tenant fill: incremental (the recorded changes) or full (every tenant, reconciling).';
create index kpi_runs_started_at_idx on kpi.kpi_runs (started_at desc);
-- The detection looks up the running run of its backend, once per statement.
create index kpi_runs_running on kpi.kpi_runs (backend_pid) where status = 'running';

-- ============================================================================================
-- The cron secret (salted SHA-256 hashes only) and the audit of refused calls
-- ============================================================================================
-- Several secrets may be active at once: that is how rotation works.
create table kpi.cron_secrets (
  id bigint generated always as identity primary key,
  salt bytea not null,
  secret_sha256 bytea not null,
  created_at timestamptz not null default clock_timestamp(),
  retired_at timestamptz
);
comment on table kpi.cron_secrets is 'Hashes of the secrets that authorize POST /rpc/kpi_history_cron; rows with retired_at NULL are active.';

-- Repeated denials of one kind in one minute add to one row's count: the table is bounded by the
-- kinds of denial, not by the number of calls.
create table kpi.api_denials (
  id bigint generated always as identity primary key,
  denied_at timestamptz not null default clock_timestamp(),
  endpoint text not null,
  reason text not null,
  db_role text not null default current_user,
  jwt_sub text,
  minute timestamptz generated always as (date_bin('1 minute', denied_at, timestamptz '2000-01-01 00:00:00+00')) stored,
  denials integer not null default 1 constraint api_denials_denials_positive check (denials > 0),
  last_denied_at timestamptz not null default clock_timestamp(),
  constraint api_denials_one_row_per_kind_and_minute unique nulls not distinct (endpoint, reason, db_role, jwt_sub, minute)
);
comment on table kpi.api_denials is
  'Audit of refused API calls (missing or wrong cron secret…): one row per endpoint, reason, role, JWT subject and minute, with the number of denials. Holds no secret.';
comment on column kpi.api_denials.denied_at is 'The first denial of this kind in the minute.';
comment on column kpi.api_denials.denials is 'How many calls of this kind were denied in the minute.';
create index api_denials_denied_at_idx on kpi.api_denials (denied_at desc);

-- ============================================================================================
-- Anomalies and the alert outbox
-- ============================================================================================
create table kpi.anomaly_rules (
  kpi text primary key,
  threshold numeric not null,
  -- The least |value − median| that counts, in the KPI's unit …
  min_delta numeric,
  -- … or as a fraction of |median|; the larger one applies.
  min_delta_of_median numeric,
  constraint anomaly_rules_kpi
    check (kpi in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct', 'custom')),
  constraint anomaly_rules_threshold_positive check (threshold > 0),
  constraint anomaly_rules_min_delta_not_negative check (min_delta >= 0 and min_delta_of_median >= 0),
  constraint anomaly_rules_some_min_delta check (min_delta is not null or min_delta_of_median is not null)
);
comment on table kpi.anomaly_rules is
  'Default anomaly rule per KPI: |modified z-score| > threshold and |value - median| >= greatest(min_delta, min_delta_of_median * |median|). Changing a row re-scores every tenant''s history.';
insert into kpi.anomaly_rules (kpi, threshold, min_delta, min_delta_of_median) values
  ('aiv_pct', 3.5, 2.0, null),
  ('ati_pct', 3.5, 2.0, null),
  ('crs_pct', 3.5, 2.0, null),
  ('elasticity_usd_per_point', 3.5, null, 0.05),
  ('vli_integrity_pct', 3.5, 2.0, null),
  ('hrp_pct', 3.5, 2.0, null),
  ('custom', 3.5, null, 0.05);

create table kpi.tenant_anomaly_rules (
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  kpi text not null references kpi.anomaly_rules (kpi),
  -- false: this KPI is never scored for this tenant.
  enabled boolean not null default true,
  -- NULL keeps the default of kpi.anomaly_rules.
  threshold numeric,
  min_delta numeric,
  min_delta_of_median numeric,
  primary key (tenant_id, kpi),
  constraint tenant_anomaly_rules_threshold_positive check (threshold > 0),
  constraint tenant_anomaly_rules_min_delta_not_negative check (min_delta >= 0 and min_delta_of_median >= 0)
);
comment on table kpi.tenant_anomaly_rules is
  'Per-tenant overrides of kpi.anomaly_rules (NULL columns keep the default), or enabled = false to switch a KPI off. Changing a row re-scores that tenant''s history.';

-- `kpi` is a built-in KPI or a custom KPI's key (keys never take a built-in name, nor 'custom').
create table kpi.kpi_anomalies (
  tenant_id uuid not null,
  as_of date not null,
  kpi text not null,
  value numeric not null,
  baseline_median numeric not null,
  baseline_mad numeric not null,
  -- How many of the previous 12 weeks had a value (at least 8).
  baseline_weeks integer not null,
  -- The modified z-score; ±Infinity when the baseline has no spread at all.
  score double precision not null,
  direction text not null,
  threshold numeric not null,
  detected_at timestamptz not null default now(),
  -- The run that detected it (kpi.kpi_runs.id); NULL when a write outside a run did.
  run_id bigint,
  primary key (tenant_id, as_of, kpi),
  -- An anomaly describes a history row, and goes with it.
  foreign key (tenant_id, as_of) references kpi.kpi_history (tenant_id, as_of) on delete cascade,
  constraint kpi_anomalies_direction check (direction in ('up', 'down'))
);
comment on table kpi.kpi_anomalies is
  'KPI values far from the tenant''s previous 12 weeks, one row per tenant, week and KPI. Always equal to a from-scratch detection over kpi_history (kpi.rescore_anomalies), kept so by triggers on kpi_history and on the rules.';

-- An alert row is written by the statement that writes its anomaly, and a foreign key ties it to
-- that anomaly: no alert without its anomaly, no new or changed anomaly without an alert.
create table kpi.alert_settings (
  singleton boolean primary key default true,
  -- Anomalies of weeks older than this (a backfill over years, a rule change re-scoring the past)
  -- are recorded with a 'suppressed' alert: history, not news, and no flood of webhooks.
  max_alert_age interval not null default '28 days',
  -- How long a failing alert is retried before it is 'dead'.
  retry_window interval not null default '24 hours',
  constraint alert_settings_singleton check (singleton),
  constraint alert_settings_positive check (max_alert_age >= interval '0' and retry_window > interval '0')
);
comment on table kpi.alert_settings is 'How alerts are enqueued, retried and kept (one row).';
insert into kpi.alert_settings default values;

create table kpi.alert_webhooks (
  tenant_id uuid primary key references kpi.tenants (id) on delete cascade,
  url text not null,
  constraint alert_webhooks_url check (url ~ '^https?://[^\s]+$')
);
comment on table kpi.alert_webhooks is 'A tenant''s own webhook URL for its alerts, instead of the worker''s KPI_ALERT_WEBHOOK_URL.';

create table kpi.alerts (
  tenant_id uuid not null,
  id bigint generated always as identity,
  as_of date not null,
  kpi text not null,
  -- What is posted (with "id"): the anomaly as it was detected.
  payload jsonb not null,
  status text not null default 'pending',
  attempts integer not null default 0,
  -- When the alert is next due. A worker that claims it moves this past the end of its lease, so
  -- a worker that dies mid-delivery leaves the alert due again once the lease is over.
  next_attempt_at timestamptz not null default now(),
  claimed_by text,
  last_status integer,
  last_error text,
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  primary key (tenant_id, id),
  foreign key (tenant_id, as_of, kpi) references kpi.kpi_anomalies (tenant_id, as_of, kpi) on delete cascade,
  constraint alerts_status check (status in ('pending', 'delivered', 'dead', 'suppressed')),
  constraint alerts_finished_when_not_pending check ((status = 'pending') = (finished_at is null))
);
comment on table kpi.alerts is
  'One alert per new or changed anomaly, written in the same transaction; pending until a worker delivers it (at least once), dead after the retry window or a 4xx answer, suppressed when the week is older than alert_settings.max_alert_age.';
create index alerts_due on kpi.alerts (next_attempt_at) where status = 'pending';
create index alerts_dead on kpi.alerts (finished_at) where status = 'dead';
create index alerts_anomaly on kpi.alerts (tenant_id, as_of, kpi);

-- ============================================================================================
-- The change feed
-- ============================================================================================
-- The position is the writing transaction's id and a sequence number: readers return settled
-- transactions only (docs/change-feed.md), so nothing can appear behind a cursor later.
create table kpi.kpi_changes (
  tenant_id uuid not null,
  txid xid8 not null default pg_current_xact_id(),
  seq bigint generated always as identity,
  entity text not null,
  op text not null,
  as_of date not null,
  -- For anomalies: which KPI.
  kpi text,
  -- The row after the change, as the API shows it; NULL for a delete (the key is as_of and kpi).
  data jsonb,
  changed_at timestamptz not null default now(),
  primary key (tenant_id, txid, seq),
  constraint kpi_changes_entity check (entity in ('history', 'anomaly', 'custom_values')),
  constraint kpi_changes_op check (op in ('insert', 'update', 'delete'))
);
comment on table kpi.kpi_changes is
  'The change feed: each insert, update and delete of kpi_history and kpi_anomalies, in the writing transaction. Read it with api.kpi_history_changes (or kpi_api.changes_page); pruned by kpi.clean_up_run_history after change_feed_settings.keep.';
create index kpi_changes_position on kpi.kpi_changes (txid, seq);

create table kpi.change_feed_settings (
  singleton boolean primary key default true,
  -- Changes older than this are pruned by the daily log cleanup.
  keep interval not null default '30 days',
  -- The last position pruned: a cursor before it has missed changes (CURSOR_EXPIRED).
  pruned_txid xid8 not null default '0',
  pruned_seq bigint not null default 0,
  constraint change_feed_settings_singleton check (singleton),
  constraint change_feed_settings_keep_positive check (keep > interval '0')
);
insert into kpi.change_feed_settings default values;

-- ============================================================================================
-- Custom KPIs: definitions as data, and a week's values in one row
-- ============================================================================================
create table kpi.custom_kpi_settings (
  singleton boolean primary key default true,
  max_active_per_tenant integer not null default 20,
  constraint custom_kpi_settings_singleton check (singleton),
  constraint custom_kpi_settings_max_active check (max_active_per_tenant between 0 and 1000)
);
comment on table kpi.custom_kpi_settings is 'One row: how many active custom KPIs a tenant may have (default 20).';
insert into kpi.custom_kpi_settings default values;

create table kpi.custom_kpis (
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  key text not null,
  label text not null,
  unit text,
  -- Either a source and an aggregate ...
  source text,
  path text[],
  field text,
  aggregate text,
  -- ... or a combination of two KPIs of the tenant, built-in or custom (one level deep).
  combine text,
  left_kpi text,
  right_kpi text,
  valid_min numeric,
  valid_max numeric,
  active boolean not null default true,
  -- Raised by every change of what the KPI computes; the fill re-derives every week of a
  -- definition whose derived_revision differs (NULL: never derived).
  revision integer not null default 1,
  derived_revision integer,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, key),
  -- The vocabulary, as constraints (the validation trigger says the same with the field's name).
  constraint custom_kpis_key check (key ~ '^[a-z][a-z0-9_]{0,39}$'),
  constraint custom_kpis_label check (char_length(btrim(label)) between 1 and 100),
  constraint custom_kpis_unit check (unit is null or char_length(unit) <= 20),
  constraint custom_kpis_source check (source in ('clarity', 'avi', 'vli')),
  constraint custom_kpis_aggregate check (aggregate in ('latest', 'avg', 'min', 'max', 'sum', 'count')),
  constraint custom_kpis_combine check (combine in ('difference', 'ratio')),
  constraint custom_kpis_shape check (
    (source is not null and aggregate is not null and combine is null and left_kpi is null and right_kpi is null
     and case source when 'clarity' then path is not null and field is null
                     when 'avi' then path is null and field in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point')
                     else path is null and field = 'integrity_pct' end)
    or (combine is not null and left_kpi is not null and right_kpi is not null
        and source is null and path is null and field is null and aggregate is null)),
  constraint custom_kpis_path check (path is null or (cardinality(path) between 1 and 8 and array_position(path, null) is null
                                                      and array_position(path, '') is null)),
  constraint custom_kpis_valid_range check (valid_min is null or valid_max is null or valid_min <= valid_max)
);
comment on table kpi.custom_kpis is
  'Custom KPI definitions per tenant: a source (clarity JSON path, avi or vli column) and a weekly aggregate, or a difference/ratio of two KPIs; values outside [valid_min, valid_max] are stored as NULL with an INVALID_CUSTOM warning. Managed by tenant admins through api.custom_kpis; computed by every fill into kpi.custom_kpi_values.';
comment on column kpi.custom_kpis.path is 'For source clarity: the keys leading to a number inside clarity_reports.metrics, e.g. {latency,p95_ms}.';
comment on column kpi.custom_kpis.field is 'For source avi: aiv_pct, ati_pct, crs_pct or elasticity_usd_per_point; for vli: integrity_pct.';
-- The definitions a run still has to derive over every week (few, if any).
create index custom_kpis_pending on kpi.custom_kpis (tenant_id) where derived_revision is distinct from revision;

-- A tenant's week holds all its custom values in one row: a fill writes, logs and scores one row
-- per week whatever the number of KPIs (five rows a week made the full fill 4.1× as slow).
create table kpi.custom_kpi_weeks (
  tenant_id uuid not null,
  as_of date not null,
  -- {"<key>": value or null, …}: each active custom KPI of the tenant that week.
  kpi_values jsonb not null,
  updated_at timestamptz not null default now(),
  primary key (tenant_id, as_of),
  constraint custom_kpi_weeks_values_object check (jsonb_typeof(kpi_values) = 'object')
);
comment on table kpi.custom_kpi_weeks is
  'The custom KPI values of each tenant''s history week, {key: value}, written by the fill with the week''s history row. Read a value per row through kpi.custom_kpi_values.';

-- ============================================================================================
-- How each table is placed when the database is distributed by tenant (docs/scale-out.md)
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
  ('table_distribution', 'local', null, null, 'this plan'),
  ('plans', 'reference', null, null, 'small lookup table: every tenant row points at one'),
  ('retention_state', 'reference', null, null, 'one row every node''s fill reads'),
  ('tenant_count', 'local', null, null, 'one row the coordinator keeps as tenants come and go'),
  ('source_changes', 'local', null, null, 'the change log: one row per writing statement, many tenants; read by the coordinator''s fill'),
  ('tenants_without_avi', 'distributed', 'tenant_id', 'tenants', 'tenant data'),
  ('anomaly_rules', 'reference', null, null, 'small lookup table: the default rule of each KPI, read by every node''s detection'),
  ('tenant_anomaly_rules', 'distributed', 'tenant_id', 'tenants', 'tenant data: read with the tenant''s history'),
  ('kpi_anomalies', 'distributed', 'tenant_id', 'tenants', 'tenant data: written by the detection next to the history it describes'),
  ('alert_settings', 'reference', null, null, 'one row every node''s detection reads'),
  ('alert_webhooks', 'distributed', 'tenant_id', 'tenants', 'tenant data'),
  ('alerts', 'distributed', 'tenant_id', 'tenants', 'tenant data: the outbox row is written with its anomaly, on the same node'),
  ('kpi_changes', 'distributed', 'tenant_id', 'tenants', 'tenant data, written next to the rows it describes (positions are then per node: see docs/scale-out.md)'),
  ('change_feed_settings', 'reference', null, null, 'one row: how long the feed is kept, and where pruning stopped'),
  ('custom_kpis', 'distributed', 'tenant_id', 'tenants', 'tenant data: the definitions, read by the fill next to the sources'),
  ('custom_kpi_weeks', 'distributed', 'tenant_id', 'tenants', 'tenant data, written with the history row of its week'),
  ('custom_kpi_settings', 'reference', null, null, 'one row: the limit of active custom KPIs per tenant');

-- ============================================================================================
-- Row-level security on every kpi table: API roles see nothing without a policy. It is forced
-- (the owner subject to it too) by db/definitions/14_access.sql, once the owner has its policy:
-- forced here, a non-superuser owner could not write the data of the migrations that follow.
-- ============================================================================================
do $$
declare
  t regclass;
begin
  for t in select c.oid::regclass from pg_catalog.pg_class c
           where c.relnamespace = 'kpi'::regnamespace and c.relkind = 'r' loop
    execute format('alter table %s enable row level security', t);
  end loop;
end
$$;

-- migrate:down
-- A baseline is not rolled back: that would drop every table and its data. Restore a backup
-- taken before the upgrade instead (docs/schema.md, "Upgrading").
do $$
begin
  raise exception 'the baseline migration cannot be rolled back: restore a backup instead';
end
$$;
