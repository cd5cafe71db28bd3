-- migrate:up

-- Anomaly detection on every written history row, and a transactional outbox of alerts.
--
-- Detection runs in the writing transaction, from statement-level triggers on kpi.kpi_history:
-- whatever writes a week (the daily fill, a single-tenant fill, a backfill, a hand-made UPDATE)
-- gets it scored, set-based, with the rows the statement wrote. Each KPI of a week is scored
-- against the tenant's previous 12 weeks of that KPI with the modified z-score of Iglewicz and
-- Hoaglin, a score robust to the outliers it is looking for.

-- ============================================================================================
-- Rules
-- ============================================================================================

create table kpi.anomaly_rules (
  kpi text primary key,
  threshold numeric not null,
  -- The least |value − median| that counts, in the KPI's unit …
  min_delta numeric,
  -- … or as a fraction of |median| (elasticity: 5 % of the usual level); the larger one applies.
  min_delta_of_median numeric,
  constraint anomaly_rules_kpi check (kpi in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct')),
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
  ('hrp_pct', 3.5, 2.0, null);

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

-- ============================================================================================
-- Anomalies
-- ============================================================================================

create table kpi.kpi_anomalies (
  tenant_id uuid not null,
  as_of date not null,
  kpi text not null references kpi.anomaly_rules (kpi),
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

alter table kpi.kpi_anomalies enable row level security;
alter table kpi.kpi_anomalies force row level security;
create policy "kpi_anomalies are maintained by their owner" on kpi.kpi_anomalies to postgres using (true) with check (true);
create policy "Anomalies are visible to members of the active tenant" on kpi.kpi_anomalies
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
grant select on kpi.kpi_anomalies to authenticated;

alter table kpi.anomaly_rules enable row level security;
alter table kpi.anomaly_rules force row level security;
create policy "anomaly_rules are maintained by their owner" on kpi.anomaly_rules to postgres using (true) with check (true);
alter table kpi.tenant_anomaly_rules enable row level security;
alter table kpi.tenant_anomaly_rules force row level security;
create policy "tenant_anomaly_rules are maintained by their owner" on kpi.tenant_anomaly_rules to postgres using (true) with check (true);

-- ============================================================================================
-- Alerts: a transactional outbox
-- ============================================================================================
-- An alert row is written by the same statement that writes its anomaly, and a foreign key ties
-- it to that anomaly: no alert without its anomaly, no new or changed anomaly without an alert.
-- Workers (npm run worker) claim due alerts with FOR UPDATE SKIP LOCKED and post them.

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
insert into kpi.alert_settings default values;
comment on table kpi.alert_settings is 'How alerts are enqueued, retried and kept (one row).';

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

alter table kpi.alert_settings enable row level security;
alter table kpi.alert_settings force row level security;
create policy "alert_settings are maintained by their owner" on kpi.alert_settings to postgres using (true) with check (true);
alter table kpi.alert_webhooks enable row level security;
alter table kpi.alert_webhooks force row level security;
create policy "alert_webhooks are maintained by their owner" on kpi.alert_webhooks to postgres using (true) with check (true);
alter table kpi.alerts enable row level security;
alter table kpi.alerts force row level security;
create policy "alerts are maintained by their owner" on kpi.alerts to postgres using (true) with check (true);

-- Wakes the workers as soon as alerts are enqueued (they also poll).
create function kpi.notify_alert_workers() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select from new_alerts where status = 'pending') then
    perform pg_notify('kpi_alerts', '');
  end if;
  return null;
end
$$;
create trigger alerts_notify after insert on kpi.alerts
  referencing new table as new_alerts for each statement execute function kpi.notify_alert_workers();

insert into kpi.table_distribution (table_name, placement, distribution_column, colocate_with, why) values
  ('anomaly_rules', 'reference', null, null, 'small lookup table: the default rule of each KPI, read by every node''s detection'),
  ('tenant_anomaly_rules', 'distributed', 'tenant_id', 'tenants', 'tenant data: read with the tenant''s history'),
  ('kpi_anomalies', 'distributed', 'tenant_id', 'tenants', 'tenant data: written by the detection next to the history it describes'),
  ('alert_settings', 'reference', null, null, 'one row every node''s detection reads'),
  ('alert_webhooks', 'distributed', 'tenant_id', 'tenants', 'tenant data'),
  ('alerts', 'distributed', 'tenant_id', 'tenants', 'tenant data: the outbox row is written with its anomaly, on the same node');

-- ============================================================================================
-- Detection
-- ============================================================================================

-- Re-scores the given weeks of the given tenants and the 12 weeks after each (their baselines
-- include it): per tenant, every history week from its earliest given week to 12 weeks after its
-- latest. Inserts, updates and deletes anomalies (and enqueues an alert per new or changed one)
-- so that, for those weeks, kpi_anomalies equals a from-scratch detection. Returns the number of
-- anomalies inserted or changed.
create function kpi.rescore_anomalies(p_tenant_ids uuid[], p_weeks date[]) returns integer
language plpgsql
set search_path = ''
-- As for the fill: compiling the statement costs more than running it (measured 70 ms of 450).
set jit = off
as $$
declare
  changed integer;
begin
  with given as (
    select g.tenant_id, min(g.as_of) as first_week, max(g.as_of) as last_week
    from unnest(p_tenant_ids, p_weeks) as g (tenant_id, as_of)
    group by g.tenant_id
  ),
  -- (Laterals that cannot be flattened, here and below: one index range scan per tenant and week.
  -- Without them the planner, which cannot know how many weeks it is given, hashes the whole
  -- history instead: measured 40 ms of 100 at 2,000 tenants, growing with the table.)
  targets as materialized (
    select h.tenant_id, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
           h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct
    from given g
    cross join lateral (
      select h.* from kpi.kpi_history h
      where h.tenant_id = g.tenant_id and h.as_of >= g.first_week and h.as_of <= g.last_week + 84
      offset 0 -- keeps the subquery from being flattened into a join the planner may hash
    ) h
  ),
  -- Per week and KPI: its value, and how many of the 12 calendar weeks before have one, with the
  -- least and the greatest — one index range scan per week, nothing sorted or copied yet. A
  -- fallback VLI (100 for want of an audit) is no measurement: neither scored nor in a baseline.
  baselines as (
    select t.tenant_id, t.as_of, k.kpi, k.value, k.lo, k.hi
    from targets t
    cross join lateral (
      select count(b.aiv_pct) as aiv_pct_n, min(b.aiv_pct) as aiv_pct_lo, max(b.aiv_pct) as aiv_pct_hi,
             count(b.ati_pct) as ati_pct_n, min(b.ati_pct) as ati_pct_lo, max(b.ati_pct) as ati_pct_hi,
             count(b.crs_pct) as crs_pct_n, min(b.crs_pct) as crs_pct_lo, max(b.crs_pct) as crs_pct_hi,
             count(b.elasticity_usd_per_point) as elasticity_usd_per_point_n, min(b.elasticity_usd_per_point) as elasticity_usd_per_point_lo, max(b.elasticity_usd_per_point) as elasticity_usd_per_point_hi,
             count(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_integrity_pct_n, min(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_integrity_pct_lo, max(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_integrity_pct_hi,
             count(b.hrp_pct) as hrp_pct_n, min(b.hrp_pct) as hrp_pct_lo, max(b.hrp_pct) as hrp_pct_hi
      from kpi.kpi_history b
      where b.tenant_id = t.tenant_id and b.as_of >= t.as_of - 84 and b.as_of < t.as_of
    ) b
    cross join lateral (values
      ('aiv_pct', t.aiv_pct, b.aiv_pct_n, b.aiv_pct_lo, b.aiv_pct_hi),
      ('ati_pct', t.ati_pct, b.ati_pct_n, b.ati_pct_lo, b.ati_pct_hi),
      ('crs_pct', t.crs_pct, b.crs_pct_n, b.crs_pct_lo, b.crs_pct_hi),
      ('elasticity_usd_per_point', t.elasticity_usd_per_point, b.elasticity_usd_per_point_n,
       b.elasticity_usd_per_point_lo, b.elasticity_usd_per_point_hi),
      ('vli_integrity_pct', case when not t.vli_is_fallback then t.vli_integrity_pct end, b.vli_integrity_pct_n,
       b.vli_integrity_pct_lo, b.vli_integrity_pct_hi),
      ('hrp_pct', t.hrp_pct, b.hrp_pct_n, b.hrp_pct_lo, b.hrp_pct_hi)) as k (kpi, value, n, lo, hi)
    where k.value is not null and k.n >= 8
  ),
  -- The rule in force, and the cheap half of it first. An anomaly needs |value − median| ≥ the
  -- minimum difference, and the median lies between the least and the greatest baseline value: a
  -- value closer than that difference to both ends can be no anomaly, so most values are settled
  -- here without sorting anything. (For the part relative to the median, |median| is at least
  -- the smaller of |least| and |greatest| when both have one sign.) Materialized, so that what
  -- follows runs only for what passes.
  candidates as materialized (
    select x.tenant_id, x.as_of, x.kpi, x.value, r.threshold, r.min_delta, r.min_delta_of_median
    from baselines x
    join kpi.anomaly_rules d on d.kpi = x.kpi
    left join kpi.tenant_anomaly_rules o on o.tenant_id = x.tenant_id and o.kpi = x.kpi
    cross join lateral (
      select coalesce(o.enabled, true) as enabled, coalesce(o.threshold, d.threshold) as threshold,
             coalesce(o.min_delta, d.min_delta, 0) as min_delta,
             coalesce(o.min_delta_of_median, d.min_delta_of_median, 0) as min_delta_of_median
    ) r
    cross join lateral (
      select greatest(r.min_delta, case when sign(x.lo) = sign(x.hi) then r.min_delta_of_median * least(abs(x.lo), abs(x.hi)) else 0 end)
             as least_delta
    ) q
    where r.enabled and not (x.hi - q.least_delta < x.value and x.value < x.lo + q.least_delta)
  ),
  medians as (
    -- The candidates' baselines, sorted (a second index range scan, for the few that got here);
    -- the median is the middle value, or the mean of the two middle ones.
    select c.tenant_id, c.as_of, c.kpi, c.value, c.threshold, s.sorted, cardinality(s.sorted) as n,
           round((s.sorted[(cardinality(s.sorted) + 1) / 2] + s.sorted[(cardinality(s.sorted) + 2) / 2]) / 2, 4) as median,
           c.min_delta, c.min_delta_of_median
    from candidates c
    cross join lateral (
      select array_agg(v.value order by v.value) as sorted
      from kpi.kpi_history b
      cross join lateral (select case c.kpi when 'aiv_pct' then b.aiv_pct
                                            when 'ati_pct' then b.ati_pct
                                            when 'crs_pct' then b.crs_pct
                                            when 'elasticity_usd_per_point' then b.elasticity_usd_per_point
                                            when 'vli_integrity_pct' then case when not b.vli_is_fallback then b.vli_integrity_pct end
                                            when 'hrp_pct' then b.hrp_pct end as value) v
      where b.tenant_id = c.tenant_id and b.as_of >= c.as_of - 84 and b.as_of < c.as_of and v.value is not null
    ) s
  ),
  found as (
    select m.tenant_id, m.as_of, m.kpi, m.value, m.n, m.median, s.mad, m.threshold, z.score
    from medians m
    cross join lateral (
      select round((percentile_cont(0.5) within group (order by abs(v - m.median)::float8))::numeric, 4) as mad,
             avg(abs(v - m.median)) as mean_ad
      from unnest(m.sorted) as v
    ) s
    -- Iglewicz & Hoaglin: 0.6745 (x − median) / MAD; with MAD 0, the mean absolute deviation
    -- scaled to match (1.253314); with no spread at all, any difference is infinite.
    cross join lateral (
      select case when s.mad > 0 then 0.6745 * (m.value - m.median)::float8 / s.mad::float8
                  when s.mean_ad > 0 then (m.value - m.median)::float8 / (1.253314 * s.mean_ad::float8)
                  when m.value > m.median then 'Infinity'::float8
                  when m.value < m.median then '-Infinity'::float8
                  else 0 end as score
    ) z
    where abs(m.value - m.median) >= greatest(m.min_delta, m.min_delta_of_median * abs(m.median))
      and abs(z.score) > m.threshold
  ),
  upserted as (
    insert into kpi.kpi_anomalies as a (tenant_id, as_of, kpi, value, baseline_median, baseline_mad, baseline_weeks,
                                        score, direction, threshold, run_id)
    select f.tenant_id, f.as_of, f.kpi, f.value, f.median, f.mad, f.n, f.score,
           case when f.value > f.median then 'up' else 'down' end, f.threshold,
           (select max(r.id) from kpi.kpi_runs r where r.backend_pid = pg_backend_pid() and r.status = 'running')
    from found f
    order by f.tenant_id, f.as_of, f.kpi
    on conflict (tenant_id, as_of, kpi) do update set
      value = excluded.value, baseline_median = excluded.baseline_median, baseline_mad = excluded.baseline_mad,
      baseline_weeks = excluded.baseline_weeks, score = excluded.score, direction = excluded.direction,
      threshold = excluded.threshold, detected_at = now(), run_id = excluded.run_id
    where (a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction, a.threshold)
          is distinct from
          (excluded.value, excluded.baseline_median, excluded.baseline_mad, excluded.baseline_weeks, excluded.score,
           excluded.direction, excluded.threshold)
    returning a.tenant_id, a.as_of, a.kpi, a.value, a.baseline_median, a.baseline_mad, a.score, a.direction,
              a.threshold, a.detected_at
  ),
  removed as (
    -- Anomalies of the re-scored weeks that a from-scratch detection would not find (their
    -- alerts go with them: a pending alert about something no longer true is never sent).
    delete from kpi.kpi_anomalies a
    using targets t
    where a.tenant_id = t.tenant_id and a.as_of = t.as_of
      and not exists (select from found f where f.tenant_id = a.tenant_id and f.as_of = a.as_of and f.kpi = a.kpi)
    returning 1
  ),
  alerted as (
    insert into kpi.alerts (tenant_id, as_of, kpi, payload, status, finished_at)
    select u.tenant_id, u.as_of, u.kpi,
           jsonb_build_object(
             'tenant', jsonb_build_object('id', u.tenant_id, 'slug', (select t.slug from kpi.tenants t where t.id = u.tenant_id)),
             'as_of', u.as_of, 'kpi', u.kpi, 'value', u.value, 'baseline_median', u.baseline_median,
             'baseline_mad', u.baseline_mad, 'score', u.score, 'threshold', u.threshold, 'direction', u.direction,
             'detected_at', kpi.utc_iso(u.detected_at)),
           case when u.as_of < (now() at time zone 'UTC')::date - s.max_alert_age then 'suppressed' else 'pending' end,
           case when u.as_of < (now() at time zone 'UTC')::date - s.max_alert_age then now() end
    from upserted u
    cross join kpi.alert_settings s
    order by u.tenant_id, u.as_of, u.kpi
    returning 1
  )
  -- (Every data-modifying part runs whether or not it is read.)
  select count(*) from upserted into changed;
  -- For the run result: how many anomalies this transaction's writes inserted or changed.
  perform set_config('kpi.anomalies_changed', (kpi.anomalies_changed() + changed)::text, true);
  return changed;
end
$$;
comment on function kpi.rescore_anomalies(uuid[], date[]) is
  'Re-scores the given (tenant, week) pairs and the 12 weeks after each, so that kpi_anomalies equals a from-scratch detection for them; enqueues an alert per new or changed anomaly. Returns how many anomalies it inserted or changed. Example: select kpi.rescore_anomalies(array[''<tenant uuid>''::uuid], array[''2026-01-05''::date]);';

-- Anomalies inserted or changed so far by this transaction's writes (the runs report the difference).
create function kpi.anomalies_changed() returns integer
language sql stable
set search_path = ''
return coalesce(nullif(current_setting('kpi.anomalies_changed', true), ''), '0')::integer;

-- Every tenant's whole history (or one tenant's): what the rule triggers run, and a from-scratch
-- detection on demand.
create function kpi.rescore_all_anomalies(p_tenant_id uuid default null) returns integer
language sql
set search_path = ''
as $$
  -- Each tenant's first and last week: rescore_anomalies covers every week between.
  select kpi.rescore_anomalies(array_agg(h.tenant_id), array_agg(w.as_of))
  from (select k.tenant_id, min(k.as_of) as first_week, max(k.as_of) as last_week from kpi.kpi_history k
        where p_tenant_id is null or k.tenant_id = p_tenant_id group by k.tenant_id) h
  cross join lateral (values (h.first_week), (h.last_week)) w (as_of)
$$;
comment on function kpi.rescore_all_anomalies(uuid) is
  'Re-scores every week of one tenant (or of all): the detection from scratch. Returns how many anomalies it inserted or changed. Example: select kpi.rescore_all_anomalies();';

-- Written history rows, scored in the writing statement's transaction.
create function kpi.score_written_weeks() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform kpi.rescore_anomalies(array_agg(w.tenant_id), array_agg(w.as_of)) from written_weeks w having count(*) > 0;
  return null;
end
$$;
create trigger kpi_history_inserted_scored after insert on kpi.kpi_history
  referencing new table as written_weeks for each statement execute function kpi.score_written_weeks();
create trigger kpi_history_updated_scored after update on kpi.kpi_history
  referencing new table as written_weeks for each statement execute function kpi.score_written_weeks();

-- A rule changed: re-score the tenants it applies to, so the anomalies stay what the rules say.
create function kpi.rescore_after_rule_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- (PL/pgSQL plans each statement when it first runs it, so each branch may name only the
  -- transition tables its event has.)
  if tg_table_name = 'anomaly_rules' then
    perform kpi.rescore_all_anomalies();
  elsif tg_op = 'INSERT' then
    perform kpi.rescore_all_anomalies(t.tenant_id) from (select distinct tenant_id from changed_new) t;
  elsif tg_op = 'DELETE' then
    perform kpi.rescore_all_anomalies(t.tenant_id) from (select distinct tenant_id from changed_old) t;
  else
    perform kpi.rescore_all_anomalies(t.tenant_id)
    from (select tenant_id from changed_old union select tenant_id from changed_new) t;
  end if;
  return null;
end
$$;
create trigger anomaly_rules_rescore_insert after insert on kpi.anomaly_rules
  referencing new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create trigger anomaly_rules_rescore_update after update on kpi.anomaly_rules
  referencing old table as changed_old new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create trigger tenant_anomaly_rules_rescore_insert after insert on kpi.tenant_anomaly_rules
  referencing new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create trigger tenant_anomaly_rules_rescore_update after update on kpi.tenant_anomaly_rules
  referencing old table as changed_old new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create trigger tenant_anomaly_rules_rescore_delete after delete on kpi.tenant_anomaly_rules
  referencing old table as changed_old for each statement execute function kpi.rescore_after_rule_change();

-- ============================================================================================
-- API
-- ============================================================================================

create view api.kpi_anomalies with (security_invoker = true) as
select a.as_of, a.kpi, a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction,
       a.threshold, a.detected_at
from kpi.kpi_anomalies a;
comment on view api.kpi_anomalies is
  $$Anomalies of the active tenant's weekly KPIs (the x-tenant header, or the only tenant of the token): one row per week and KPI whose value is far from the previous 12 weeks (|modified z-score| above the threshold, and a minimum difference). PostgREST filters apply.
Example: GET /kpi_anomalies?as_of=gte.2026-01-01&order=as_of.desc,kpi$$;
comment on column api.kpi_anomalies.kpi is 'One of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, hrp_pct.';
comment on column api.kpi_anomalies.value is 'The week''s value of the KPI.';
comment on column api.kpi_anomalies.baseline_median is 'Median of the KPI over the previous 12 weeks (those with a value).';
comment on column api.kpi_anomalies.baseline_mad is 'Median absolute deviation from that median; 0 when at least half the weeks had the median itself.';
comment on column api.kpi_anomalies.baseline_weeks is 'How many of the previous 12 weeks had a value (8 to 12).';
comment on column api.kpi_anomalies.score is 'Modified z-score 0.6745 (value - median) / MAD (Iglewicz & Hoaglin); with MAD 0, (value - median) / (1.253314 mean absolute deviation); "Infinity" or "-Infinity" when the baseline has no spread at all.';
comment on column api.kpi_anomalies.direction is 'up or down: above or below the median.';
comment on column api.kpi_anomalies.threshold is 'The |score| it exceeded (the rule in force).';
grant select on api.kpi_anomalies to authenticated;


-- ============================================================================================
-- The runs report the anomalies their writes found; health reports the alerts
-- ============================================================================================

-- The detection looks up the running run of its backend, once per statement.
create index kpi_runs_running on kpi.kpi_runs (backend_pid) where status = 'running';

CREATE OR REPLACE FUNCTION kpi.fill_kpi_history(tenant_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  run_id bigint;
  result jsonb;
  anomalies_before integer := kpi.anomalies_changed();
begin
  perform kpi.assert_tenant_can_fill(tenant_id);
  run_id := kpi.start_kpi_run('fill', tenant_id, null, null);
  result := kpi.write_kpi_history(tenant_id, null, null, true);
  result := result || jsonb_build_object('anomalies', kpi.anomalies_changed() - anomalies_before);
  perform kpi.finish_kpi_run(run_id, 'ok', result || '{"total": 1, "errors": []}');
  return jsonb_build_object('ok', true, 'as_of', result -> 'as_of', 'rows_written', result -> 'rows_written',
                            'warnings', result -> 'warnings', 'anomalies', result -> 'anomalies',
                            'run_id', run_id);
end
$$;

CREATE OR REPLACE FUNCTION kpi.execute_fill_all(p_run_id bigint, p_full boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  incremental jsonb;
  reconciled jsonb;
  result jsonb;
  corrected integer := 0;
  failure_state text;
  failure_message text;
  anomalies_before integer := kpi.anomalies_changed();
begin
  update kpi.kpi_runs set mode = case when p_full then 'full' else 'incremental' end where id = p_run_id;
  begin
    incremental := kpi.write_kpi_history(null, null, null, false, true);
    result := incremental;
    if p_full then
      reconciled := kpi.write_kpi_history(null, null, null, true, false);
      corrected := (reconciled ->> 'rows_written')::integer;
      result := reconciled || jsonb_build_object(
        'rows_written', corrected + (incremental ->> 'rows_written')::integer,
        'warnings', coalesce((
          select jsonb_agg(distinct w) from jsonb_array_elements((incremental -> 'warnings') || (reconciled -> 'warnings')) w), '[]'::jsonb)
          || coalesce((
          select jsonb_agg(jsonb_build_object(
                   'tenant_id', w ->> 'tenant_id', 'as_of', w ->> 'as_of', 'code', 'UNTRACKED_CHANGE',
                   'message', 'the full run corrected this row: no change record covered it'))
          from jsonb_array_elements(reconciled -> 'written_sample') w), '[]'::jsonb));
    end if;
    result := result - 'no_avi' - 'written_sample' - 'as_of' - 'records_consumed'
      || jsonb_build_object(
           'mode', case when p_full then 'full' else 'incremental' end,
           'tenants_considered', case when p_full then (reconciled -> 'tenants_considered') else (incremental -> 'tenants_considered') end,
           'corrected', case when p_full then corrected end,
           'errors', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', missing ->> 'tenant_id',
                      'code', 'NO_AVI',
                      'message', format('tenant %s has no AVI report', missing ->> 'slug')))
             from jsonb_array_elements(result -> 'no_avi') missing), '[]'::jsonb));
  exception when others or query_canceled then
    get stacked diagnostics failure_state = returned_sqlstate, failure_message = message_text;
    result := jsonb_build_object(
      'ok', 0, 'total', null, 'rows_written', 0, 'warnings', '[]'::jsonb,
      'mode', case when p_full then 'full' else 'incremental' end,
      'errors', jsonb_build_array(jsonb_build_object(
        'code', 'INTERNAL_ERROR', 'sqlstate', failure_state, 'message', failure_message)));
    perform kpi.finish_kpi_run(p_run_id, 'failed', result);
    return result || jsonb_build_object('status', 'failed', 'run_id', p_run_id);
  end;
  result := jsonb_strip_nulls(result) || jsonb_build_object(
    -- Anomalies the run's writes inserted or changed (the history triggers score what is written).
    'anomalies', kpi.anomalies_changed() - anomalies_before,
    'status', case when result -> 'errors' = '[]'::jsonb then 'ok' else 'partial' end,
    'run_id', p_run_id);
  perform kpi.finish_kpi_run(p_run_id, result ->> 'status', result);
  update kpi.kpi_runs set details = jsonb_build_object(
      'tenants_considered', result -> 'tenants_considered', 'corrected', result -> 'corrected')
  where id = p_run_id;
  return result;
end
$$;

CREATE OR REPLACE FUNCTION kpi.execute_all_tenant_run(p_run_id bigint, p_from date, p_to date, p_latest_only boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  result jsonb;
  failure_state text;
  failure_message text;
  anomalies_before integer := kpi.anomalies_changed();
begin
  begin
    result := kpi.write_kpi_history(null, p_from, p_to, p_latest_only);
    -- Tenants without any AVI report (found by the same pass) are the errors.
    result := result - 'no_avi' || jsonb_build_object('errors', coalesce((
      select jsonb_agg(jsonb_build_object(
               'tenant_id', missing ->> 'tenant_id',
               'code', 'NO_AVI',
               'message', format('tenant %s has no AVI report', missing ->> 'slug')))
      from jsonb_array_elements(result -> 'no_avi') missing), '[]'::jsonb));
  exception when others or query_canceled then
    get stacked diagnostics failure_state = returned_sqlstate, failure_message = message_text;
    result := jsonb_build_object(
      'ok', 0, 'total', null, 'rows_written', 0, 'warnings', '[]'::jsonb,
      'errors', jsonb_build_array(jsonb_build_object(
        'code', 'INTERNAL_ERROR', 'sqlstate', failure_state, 'message', failure_message)));
    perform kpi.finish_kpi_run(p_run_id, 'failed', result);
    return result || jsonb_build_object('status', 'failed', 'run_id', p_run_id);
  end;
  result := result - 'as_of' || jsonb_build_object(
    'anomalies', kpi.anomalies_changed() - anomalies_before,
    'status', case when result -> 'errors' = '[]'::jsonb then 'ok' else 'partial' end,
    'run_id', p_run_id);
  perform kpi.finish_kpi_run(p_run_id, result ->> 'status', result);
  return result;
end
$$;

CREATE OR REPLACE FUNCTION kpi_api.health() RETURNS json
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  last_run kpi.kpi_runs;
  last_full kpi.kpi_runs;
  last_success timestamptz;
  schedule jsonb;
  holder jsonb := kpi.all_tenant_lock_holder();
  alerts jsonb;
  reasons text[] := '{}';
begin
  select * into last_run from kpi.kpi_runs
  where kind = 'fill_all' and status <> 'skipped' order by started_at desc, id desc limit 1;
  select max(finished_at) into last_success from kpi.kpi_runs
  where kind = 'fill_all' and status in ('ok', 'partial');
  select * into last_full from kpi.kpi_runs
  where kind = 'fill_all' and mode = 'full' and status in ('ok', 'partial') order by started_at desc, id desc limit 1;

  if last_run.status = 'failed' then
    reasons := reasons || 'the last run failed'::text;
  elsif last_run.status = 'running'
        and not exists (select from pg_catalog.pg_stat_activity a where a.pid = last_run.backend_pid) then
    reasons := reasons || 'the last run never finished'::text;
  end if;
  if last_success is null or last_success < now() - interval '26 hours' then
    reasons := reasons || 'no successful run in the last 26 hours'::text;
  end if;
  if (holder ->> 'since')::timestamptz < now() - interval '1 hour' then
    reasons := reasons || format('the all-tenant lock has been held since %s by pid %s (longer than a run takes)',
                                 holder ->> 'since', holder ->> 'pid');
  end if;
  if (last_full.details ->> 'corrected')::integer > 0 then
    reasons := reasons || format('the last full run corrected %s rows the change tracking missed (run %s)',
                                 last_full.details ->> 'corrected', last_full.id);
  end if;

  -- Alerts: how many wait, how many were given up on (the partial indexes keep these cheap).
  select jsonb_build_object(
           'pending', (select count(*) from kpi.alerts a where a.status = 'pending'),
           'overdue', (select count(*) from kpi.alerts a where a.status = 'pending' and a.next_attempt_at < now() - interval '1 hour'),
           'dead', (select count(*) from kpi.alerts a where a.status = 'dead'))
  into alerts;
  if (alerts ->> 'dead')::integer > 0 then
    reasons := reasons || format('%s alerts are dead (not delivered within the retry window, or refused): see kpi.alerts',
                                 alerts ->> 'dead');
  end if;
  if (alerts ->> 'overdue')::integer > 0 then
    reasons := reasons || format('%s alerts have waited over an hour: is a worker running (npm run worker)?', alerts ->> 'overdue');
  end if;

  if to_regclass('cron.job') is not null then
    execute $q$select jsonb_build_object('job', jobname, 'cron', schedule, 'timezone', 'UTC', 'active', active)
               from cron.job where jobname = 'kpi-history'$q$ into schedule;
  end if;

  return json_build_object(
    'status', case when cardinality(reasons) = 0 then 'healthy' else 'degraded' end,
    'timestamp', kpi.utc_iso(now()),
    'reasons', to_json(reasons),
    'last_run', case when last_run.id is null then null else json_build_object(
                  'status', last_run.status, 'trigger', last_run.trigger,
                  'started_at', kpi.utc_iso(last_run.started_at), 'finished_at', kpi.utc_iso(last_run.finished_at)) end,
    'last_success_at', kpi.utc_iso(last_success),
    'schedule', schedule,
    'alerts', alerts);
end
$_$;

CREATE OR REPLACE FUNCTION kpi.backfill_kpi_history(tenant_id uuid DEFAULT NULL::uuid, "from" date DEFAULT NULL::date, "to" date DEFAULT NULL::date) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  run_id bigint;
  result jsonb;
  anomalies_before integer := kpi.anomalies_changed();
begin
  if "from" > "to" then
    perform kpi.raise_error('INVALID_INPUT', format('"from" (%s) is after "to" (%s)', "from", "to"));
  end if;
  if tenant_id is null then
    if not kpi.try_lock_all_tenants(false) then
      return kpi.skipped_run('backfill', "from", "to");
    end if;
    return kpi.execute_all_tenant_run(kpi.start_kpi_run('backfill', null, "from", "to"), "from", "to", false);
  end if;

  perform kpi.assert_tenant_can_fill(tenant_id);
  run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
  result := kpi.write_kpi_history(tenant_id, "from", "to", false) - 'as_of' - 'no_avi'
            || jsonb_build_object('total', 1, 'errors', '[]'::jsonb, 'status', 'ok', 'run_id', run_id,
                                  'anomalies', kpi.anomalies_changed() - anomalies_before);
  perform kpi.finish_kpi_run(run_id, 'ok', result);
  return result;
end
$$;

-- The distribution commands, now in foreign-key order: a distributed table can only be
-- distributed once the tables it refers to are (kpi.alerts → kpi_anomalies → kpi_history → tenants).
create or replace function kpi.citus_commands() returns setof text
language sql stable
set search_path = ''
as $$
  with recursive refs as (
    select c.conrelid::regclass::text as from_table, c.confrelid::regclass::text as to_table
    from pg_catalog.pg_constraint c
    where c.contype = 'f' and c.connamespace = 'kpi'::regnamespace and c.conrelid <> c.confrelid
  ),
  depths (table_name, depth) as (
    select 'kpi.' || d.table_name, 0 from kpi.table_distribution d
    union all
    select r.from_table, x.depth + 1 from depths x join refs r on r.to_table = x.table_name
  )
  select command from (
    select 1 as step, 0 as depth, table_name,
           format('select create_reference_table(%L);', 'kpi.' || table_name) as command
    from kpi.table_distribution where placement = 'reference'
    union all
    select case when colocate_with is null then 2 else 3 end,
           (select max(x.depth) from depths x where x.table_name = 'kpi.' || d.table_name),
           table_name,
           case when colocate_with is null
                then format('select create_distributed_table(%L, %L);', 'kpi.' || table_name, distribution_column)
                else format('select create_distributed_table(%L, %L, colocate_with => %L);',
                            'kpi.' || table_name, distribution_column, 'kpi.' || colocate_with) end
    from kpi.table_distribution d where placement = 'distributed'
  ) c
  order by step, depth, table_name
$$;

-- The history already there is scored now, so that the anomalies equal a detection from scratch
-- from the start (weeks older than max_alert_age get suppressed alerts: no flood of old news).
select kpi.rescore_all_anomalies();

notify pgrst, 'reload schema';

-- migrate:down
CREATE OR REPLACE FUNCTION kpi.citus_commands() RETURNS SETOF text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
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

CREATE OR REPLACE FUNCTION kpi.backfill_kpi_history(tenant_id uuid DEFAULT NULL::uuid, "from" date DEFAULT NULL::date, "to" date DEFAULT NULL::date) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  run_id bigint;
  result jsonb;
begin
  if "from" > "to" then
    perform kpi.raise_error('INVALID_INPUT', format('"from" (%s) is after "to" (%s)', "from", "to"));
  end if;
  if tenant_id is null then
    if not kpi.try_lock_all_tenants(false) then
      return kpi.skipped_run('backfill', "from", "to");
    end if;
    return kpi.execute_all_tenant_run(kpi.start_kpi_run('backfill', null, "from", "to"), "from", "to", false);
  end if;

  perform kpi.assert_tenant_can_fill(tenant_id);
  run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
  result := kpi.write_kpi_history(tenant_id, "from", "to", false) - 'as_of' - 'no_avi'
            || jsonb_build_object('total', 1, 'errors', '[]'::jsonb, 'status', 'ok', 'run_id', run_id);
  perform kpi.finish_kpi_run(run_id, 'ok', result);
  return result;
end
$$;

-- The previous versions, without anomalies and alerts.
CREATE OR REPLACE FUNCTION kpi.fill_kpi_history(tenant_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  run_id bigint;
  result jsonb;
begin
  perform kpi.assert_tenant_can_fill(tenant_id);
  run_id := kpi.start_kpi_run('fill', tenant_id, null, null);
  result := kpi.write_kpi_history(tenant_id, null, null, true);
  perform kpi.finish_kpi_run(run_id, 'ok', result || '{"total": 1, "errors": []}');
  return jsonb_build_object('ok', true, 'as_of', result -> 'as_of', 'rows_written', result -> 'rows_written',
                            'warnings', result -> 'warnings', 'run_id', run_id);
end
$$;

CREATE OR REPLACE FUNCTION kpi.execute_fill_all(p_run_id bigint, p_full boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  incremental jsonb;
  reconciled jsonb;
  result jsonb;
  corrected integer := 0;
  failure_state text;
  failure_message text;
begin
  update kpi.kpi_runs set mode = case when p_full then 'full' else 'incremental' end where id = p_run_id;
  begin
    incremental := kpi.write_kpi_history(null, null, null, false, true);
    result := incremental;
    if p_full then
      reconciled := kpi.write_kpi_history(null, null, null, true, false);
      corrected := (reconciled ->> 'rows_written')::integer;
      result := reconciled || jsonb_build_object(
        'rows_written', corrected + (incremental ->> 'rows_written')::integer,
        'warnings', coalesce((
          select jsonb_agg(distinct w) from jsonb_array_elements((incremental -> 'warnings') || (reconciled -> 'warnings')) w), '[]'::jsonb)
          || coalesce((
          select jsonb_agg(jsonb_build_object(
                   'tenant_id', w ->> 'tenant_id', 'as_of', w ->> 'as_of', 'code', 'UNTRACKED_CHANGE',
                   'message', 'the full run corrected this row: no change record covered it'))
          from jsonb_array_elements(reconciled -> 'written_sample') w), '[]'::jsonb));
    end if;
    result := result - 'no_avi' - 'written_sample' - 'as_of' - 'records_consumed'
      || jsonb_build_object(
           'mode', case when p_full then 'full' else 'incremental' end,
           'tenants_considered', case when p_full then (reconciled -> 'tenants_considered') else (incremental -> 'tenants_considered') end,
           'corrected', case when p_full then corrected end,
           'errors', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', missing ->> 'tenant_id',
                      'code', 'NO_AVI',
                      'message', format('tenant %s has no AVI report', missing ->> 'slug')))
             from jsonb_array_elements(result -> 'no_avi') missing), '[]'::jsonb));
  exception when others or query_canceled then
    get stacked diagnostics failure_state = returned_sqlstate, failure_message = message_text;
    result := jsonb_build_object(
      'ok', 0, 'total', null, 'rows_written', 0, 'warnings', '[]'::jsonb,
      'mode', case when p_full then 'full' else 'incremental' end,
      'errors', jsonb_build_array(jsonb_build_object(
        'code', 'INTERNAL_ERROR', 'sqlstate', failure_state, 'message', failure_message)));
    perform kpi.finish_kpi_run(p_run_id, 'failed', result);
    return result || jsonb_build_object('status', 'failed', 'run_id', p_run_id);
  end;
  result := jsonb_strip_nulls(result) || jsonb_build_object(
    'status', case when result -> 'errors' = '[]'::jsonb then 'ok' else 'partial' end,
    'run_id', p_run_id);
  perform kpi.finish_kpi_run(p_run_id, result ->> 'status', result);
  update kpi.kpi_runs set details = jsonb_build_object(
      'tenants_considered', result -> 'tenants_considered', 'corrected', result -> 'corrected')
  where id = p_run_id;
  return result;
end
$$;

CREATE OR REPLACE FUNCTION kpi.execute_all_tenant_run(p_run_id bigint, p_from date, p_to date, p_latest_only boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  result jsonb;
  failure_state text;
  failure_message text;
begin
  begin
    result := kpi.write_kpi_history(null, p_from, p_to, p_latest_only);
    -- Tenants without any AVI report (found by the same pass) are the errors.
    result := result - 'no_avi' || jsonb_build_object('errors', coalesce((
      select jsonb_agg(jsonb_build_object(
               'tenant_id', missing ->> 'tenant_id',
               'code', 'NO_AVI',
               'message', format('tenant %s has no AVI report', missing ->> 'slug')))
      from jsonb_array_elements(result -> 'no_avi') missing), '[]'::jsonb));
  exception when others or query_canceled then
    get stacked diagnostics failure_state = returned_sqlstate, failure_message = message_text;
    result := jsonb_build_object(
      'ok', 0, 'total', null, 'rows_written', 0, 'warnings', '[]'::jsonb,
      'errors', jsonb_build_array(jsonb_build_object(
        'code', 'INTERNAL_ERROR', 'sqlstate', failure_state, 'message', failure_message)));
    perform kpi.finish_kpi_run(p_run_id, 'failed', result);
    return result || jsonb_build_object('status', 'failed', 'run_id', p_run_id);
  end;
  result := result - 'as_of' || jsonb_build_object(
    'status', case when result -> 'errors' = '[]'::jsonb then 'ok' else 'partial' end,
    'run_id', p_run_id);
  perform kpi.finish_kpi_run(p_run_id, result ->> 'status', result);
  return result;
end
$$;

CREATE OR REPLACE FUNCTION kpi_api.health() RETURNS json
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  last_run kpi.kpi_runs;
  last_full kpi.kpi_runs;
  last_success timestamptz;
  schedule jsonb;
  holder jsonb := kpi.all_tenant_lock_holder();
  reasons text[] := '{}';
begin
  select * into last_run from kpi.kpi_runs
  where kind = 'fill_all' and status <> 'skipped' order by started_at desc, id desc limit 1;
  select max(finished_at) into last_success from kpi.kpi_runs
  where kind = 'fill_all' and status in ('ok', 'partial');
  select * into last_full from kpi.kpi_runs
  where kind = 'fill_all' and mode = 'full' and status in ('ok', 'partial') order by started_at desc, id desc limit 1;

  if last_run.status = 'failed' then
    reasons := reasons || 'the last run failed'::text;
  elsif last_run.status = 'running'
        and not exists (select from pg_catalog.pg_stat_activity a where a.pid = last_run.backend_pid) then
    reasons := reasons || 'the last run never finished'::text;
  end if;
  if last_success is null or last_success < now() - interval '26 hours' then
    reasons := reasons || 'no successful run in the last 26 hours'::text;
  end if;
  if (holder ->> 'since')::timestamptz < now() - interval '1 hour' then
    reasons := reasons || format('the all-tenant lock has been held since %s by pid %s (longer than a run takes)',
                                 holder ->> 'since', holder ->> 'pid');
  end if;
  if (last_full.details ->> 'corrected')::integer > 0 then
    reasons := reasons || format('the last full run corrected %s rows the change tracking missed (run %s)',
                                 last_full.details ->> 'corrected', last_full.id);
  end if;

  if to_regclass('cron.job') is not null then
    execute $q$select jsonb_build_object('job', jobname, 'cron', schedule, 'timezone', 'UTC', 'active', active)
               from cron.job where jobname = 'kpi-history'$q$ into schedule;
  end if;

  return json_build_object(
    'status', case when cardinality(reasons) = 0 then 'healthy' else 'degraded' end,
    'timestamp', kpi.utc_iso(now()),
    'reasons', to_json(reasons),
    'last_run', case when last_run.id is null then null else json_build_object(
                  'status', last_run.status, 'trigger', last_run.trigger,
                  'started_at', kpi.utc_iso(last_run.started_at), 'finished_at', kpi.utc_iso(last_run.finished_at)) end,
    'last_success_at', kpi.utc_iso(last_success),
    'schedule', schedule);
end
$_$;

drop index kpi.kpi_runs_running;
drop view api.kpi_anomalies;
drop trigger tenant_anomaly_rules_rescore_delete on kpi.tenant_anomaly_rules;
drop trigger tenant_anomaly_rules_rescore_update on kpi.tenant_anomaly_rules;
drop trigger tenant_anomaly_rules_rescore_insert on kpi.tenant_anomaly_rules;
drop trigger anomaly_rules_rescore_update on kpi.anomaly_rules;
drop trigger anomaly_rules_rescore_insert on kpi.anomaly_rules;
drop function kpi.rescore_after_rule_change();
drop trigger kpi_history_updated_scored on kpi.kpi_history;
drop trigger kpi_history_inserted_scored on kpi.kpi_history;
drop function kpi.score_written_weeks();
drop function kpi.rescore_all_anomalies(uuid);
drop function kpi.anomalies_changed();
drop function kpi.rescore_anomalies(uuid[], date[]);
delete from kpi.table_distribution
where table_name in ('anomaly_rules', 'tenant_anomaly_rules', 'kpi_anomalies', 'alert_settings', 'alert_webhooks', 'alerts');
drop trigger alerts_notify on kpi.alerts;
drop function kpi.notify_alert_workers();
drop table kpi.alerts;
drop table kpi.alert_webhooks;
drop table kpi.alert_settings;
drop table kpi.kpi_anomalies;
drop table kpi.tenant_anomaly_rules;
drop table kpi.anomaly_rules;
notify pgrst, 'reload schema';
