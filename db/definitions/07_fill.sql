-- The fill: kpi_history from the sources, set-based and idempotent. Two steps, each one function:
-- which (tenant, week) pairs to compute (kpi.fill_targets, by mode), and computing and writing
-- them (kpi.write_weeks, whatever chose them). Every run — the daily one, its weekly full
-- reconciliation, a backfill, a single tenant — is kpi.execute_fill around those two, with its
-- failures contained to the tenants that cause them.
--
-- Modes (one value, not flags):
--   latest  each tenant's latest AVI week (the daily fill before change tracking, the weekly
--           reconciliation, a single-tenant fill);
--   stale   the weeks the change records name (kpi.source_changes), which it consumes: the
--           daily incremental run;
--   range   every AVI week in [from, to] (a backfill).
-- A week ending at or before its tenant's source horizon (retention may have deleted its sources)
-- is never recomputed: it is `kept`.

-- ============================================================================================
-- Which weeks
-- ============================================================================================

-- The (tenant, week) pairs a fill computes, for every tenant or the given ones: as_of NULL for a
-- tenant without any AVI report (NO_AVI), kept for a week whose sources may be gone. In stale mode
-- the change records read are deleted (in the caller's transaction: a run that rolls back leaves
-- them; one committed since is another record, kept for the next run), and the tenants without
-- AVI reports come from the list the triggers keep, so nothing reads every tenant.
create or replace function kpi.fill_targets(p_mode text, p_tenants uuid[], p_from date default null, p_to date default null)
returns table (tenant_id uuid, as_of date, kept boolean)
language plpgsql
set search_path = ''
-- One plan per call, with the branches of the other modes folded away; memoize and JIT cost
-- more than they save here (no probe repeats; the work is index probes).
set plan_cache_mode = force_custom_plan
set enable_memoize = off
set jit = off
as $$
begin
  if p_mode is null or p_mode not in ('latest', 'stale', 'range') then
    raise exception 'kpi.fill_targets: the mode is latest, stale or range, not %', p_mode;
  end if;
  return query
  with tenants as (
    -- Every tenant, or the given ones, with the horizon of its sources.
    select t.id, kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days), t.sources_purged_before,
                                    (select kpi.last_source_cleanup())) as horizon
    from kpi.tenants t
    join kpi.plans p on p.plan = t.plan
    where p_mode <> 'stale' and (p_tenants is null or t.id = any (p_tenants))
  ),
  consumed as (
    delete from kpi.source_changes s where p_mode = 'stale' returning s.tenant_ids, s.from_weeks
  ),
  stale as (
    select c.tenant_id, min(c.from_week) as from_week
    from consumed s cross join lateral unnest(s.tenant_ids, s.from_weeks) as c (tenant_id, from_week)
    where p_tenants is null or c.tenant_id = any (p_tenants)
    group by c.tenant_id
  ),
  pairs as (
    -- latest: the latest report by one backward index probe; NULL when there is none.
    select t.id as tenant_id, latest.week_start, t.horizon
    from tenants t
    left join lateral (
      select r.week_start from kpi.avi_reports r where r.tenant_id = t.id order by r.week_start desc limit 1
    ) latest on true
    where p_mode = 'latest'
    union all
    -- range: every report in [from, to], and NULL for a tenant with none at all. (Whether it has
    -- none is one probe of its own reports. Asked with NOT EXISTS, the planner hashed every
    -- tenant's reports instead, for each batch that had a tenant without any: 1,019,400 reports
    -- read for 1,000 tenants at 20,000 tenants, half of the batch's choosing.)
    select t.id, r.week_start, t.horizon
    from tenants t
    left join lateral (
      select r.week_start from kpi.avi_reports r
      where r.tenant_id = t.id and r.week_start >= coalesce(p_from, '-infinity'::date) and r.week_start <= coalesce(p_to, 'infinity'::date)
    ) r on true
    where p_mode = 'range'
      and (r.week_start is not null or (select a.week_start from kpi.avi_reports a where a.tenant_id = t.id limit 1) is null)
    union all
    -- stale: the recorded tenants' weeks from the earliest one that may have changed (a tenant
    -- deleted since has none), and every tenant without reports.
    select s.tenant_id, r.week_start,
           kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days), t.sources_purged_before, (select kpi.last_source_cleanup()))
    from stale s
    join kpi.tenants t on t.id = s.tenant_id
    join kpi.plans p on p.plan = t.plan
    join kpi.avi_reports r on r.tenant_id = s.tenant_id and r.week_start >= s.from_week
    where p_mode = 'stale'
    union all
    select w.tenant_id, null, null
    from kpi.tenants_without_avi w
    where p_mode = 'stale' and (p_tenants is null or w.tenant_id = any (p_tenants))
  )
  select x.tenant_id, x.week_start, x.week_start is not null and kpi.week_end(x.week_start) <= x.horizon
  from pairs x
  -- The order every writer locks shared rows in.
  order by x.tenant_id, x.week_start;
end
$$;
comment on function kpi.fill_targets(text, uuid[], date, date) is
  'The (tenant, week) pairs a fill computes: p_mode latest (each tenant''s latest AVI week), stale (the weeks the change records name, consuming them) or range (every AVI week in [from, to]); for every tenant (p_tenants NULL) or the given ones. as_of NULL: the tenant has no AVI report (NO_AVI); kept: a week whose sources may be gone, left as it is.';

-- ============================================================================================
-- Computing and writing them
-- ============================================================================================

-- The history rows of the given (tenant, week) pairs from their sources, written where they
-- differ, then their custom KPI values. VLI and HRP are taken as of the end of each week: no
-- look-ahead. Every source read is an index-only probe. Rows whose values did not change are
-- filtered out before the upsert (which would otherwise lock each of them), so a re-run writes
-- nothing and updated_at keeps meaning "last changed"; the ON CONFLICT … WHERE guards concurrent
-- writers. The statement's triggers score the written rows (06_scoring.sql) and log them
-- (08_change_feed.sql). Returns {"weeks", "rows_written", "written" (the first 100 pairs
-- written), "warnings", "custom_weeks_written", "custom_values"}.
create or replace function kpi.write_weeks(p_tenant_ids uuid[], p_weeks date[]) returns jsonb
language plpgsql
set search_path = ''
-- The writing statement is planned at each call (EXECUTE: a one-shot plan, the pairs as
-- constants), with the history's size at that moment. A generic plan is made once per session:
-- made while the history is empty (a new installation, or after a truncate), it probes the history
-- by sequential scans, which a backfill's later batches in the same session then run for every
-- pair over all the rows written so far (measured: no end after 15 minutes at 100,000 tenants,
-- against 4 s a batch; test/aggregation/plans.test.ts). Not plan_cache_mode = force_custom_plan:
-- the foreign-key check of each written row runs under this function's settings, and forced
-- custom plans plan that check again for every row (measured at 20,000 rows: 0.62 s of checks
-- against 0.20 s with their cached plan).
set plan_cache_mode = auto
set enable_memoize = off
set jit = off
as $$
declare
  stats jsonb;
  custom jsonb;
begin
  execute $write$
  -- ($1, $2: the (tenant, week) pairs.)
  with computed as materialized (
    select w.tenant_id, w.as_of, a.aiv_pct, a.ati_pct, a.crs_pct, a.elasticity_usd_per_point,
           coalesce(vli.integrity_pct, 100) as vli_integrity_pct,
           vli.integrity_pct is null as vli_is_fallback,
           kpi.hrp_pct(clarity.hrp) as hrp_pct,
           kpi.hrp_is_invalid(clarity.hrp) as hrp_is_invalid,
           clarity.hrp,
           clarity.measured_at
    from unnest($1::uuid[], $2::date[]) as w (tenant_id, as_of)
    join lateral (
      -- (LIMIT 1 keeps this an index probe: flattened into a join, the planner would hash the table.)
      select r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
      from kpi.avi_reports r where r.tenant_id = w.tenant_id and r.week_start = w.as_of
      limit 1
    ) a on true
    left join lateral (
      select v.integrity_pct
      from kpi.vli_audits v
      where v.tenant_id = w.tenant_id and v.audited_at < kpi.week_end(w.as_of)
      order by v.audited_at desc, v.id desc
      limit 1
    ) vli on true
    left join lateral (
      select c.hrp, c.measured_at
      from kpi.clarity_reports c
      where c.tenant_id = w.tenant_id and c.measured_at < kpi.week_end(w.as_of)
      order by c.measured_at desc, c.id desc
      limit 1
    ) clarity on true
  ),
  written as (
    insert into kpi.kpi_history as h (
      tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point,
      vli_integrity_pct, vli_is_fallback, hrp_pct)
    select c.tenant_id, c.as_of, c.aiv_pct, c.ati_pct, c.crs_pct, c.elasticity_usd_per_point,
           c.vli_integrity_pct, c.vli_is_fallback, c.hrp_pct
    from computed c
    -- The row already there, by an index probe (a lateral LIMIT 1 keeps the planner from hashing
    -- the whole history instead, which it prefers once the table is large).
    left join lateral (
      select o.aiv_pct, o.ati_pct, o.crs_pct, o.elasticity_usd_per_point, o.vli_integrity_pct, o.vli_is_fallback, o.hrp_pct
      from kpi.kpi_history o
      where o.tenant_id = c.tenant_id and o.as_of = c.as_of
      limit 1
    ) existing on true
    where existing is null
       or (existing.aiv_pct, existing.ati_pct, existing.crs_pct, existing.elasticity_usd_per_point,
           existing.vli_integrity_pct, existing.vli_is_fallback, existing.hrp_pct)
          is distinct from
          (c.aiv_pct, c.ati_pct, c.crs_pct, c.elasticity_usd_per_point, c.vli_integrity_pct, c.vli_is_fallback, c.hrp_pct)
    -- One order for every writer, so concurrent runs lock shared rows in the same order.
    order by c.tenant_id, c.as_of
    on conflict (tenant_id, as_of) do update set
      aiv_pct = excluded.aiv_pct,
      ati_pct = excluded.ati_pct,
      crs_pct = excluded.crs_pct,
      elasticity_usd_per_point = excluded.elasticity_usd_per_point,
      vli_integrity_pct = excluded.vli_integrity_pct,
      vli_is_fallback = excluded.vli_is_fallback,
      hrp_pct = excluded.hrp_pct,
      updated_at = now()
    where (h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
           h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct)
          is distinct from
          (excluded.aiv_pct, excluded.ati_pct, excluded.crs_pct, excluded.elasticity_usd_per_point,
           excluded.vli_integrity_pct, excluded.vli_is_fallback, excluded.hrp_pct)
    returning h.tenant_id, h.as_of
  )
  select jsonb_build_object(
           'weeks', (select count(*) from computed),
           'rows_written', (select count(*) from written),
           'written', coalesce((
             select jsonb_agg(jsonb_build_object('tenant_id', w.tenant_id, 'as_of', w.as_of) order by w.tenant_id, w.as_of)
             from (select x.tenant_id, x.as_of from written x order by x.tenant_id, x.as_of limit 100) w), '[]'::jsonb),
           'warnings', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', c.tenant_id,
                      'as_of', c.as_of,
                      'code', 'INVALID_CLARITY',
                      'message', format('clarity report measured at %s has hrp %s; expected a number from 0 to 1, so hrp_pct is NULL',
                                        to_char(c.measured_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), left(c.hrp::text, 40)))
                    order by c.tenant_id, c.as_of)
             from computed c where c.hrp_is_invalid), '[]'::jsonb))
  $write$
  into stats
  using p_tenant_ids, p_weeks;
  -- The custom KPIs of the same weeks, when any tenant among them has one.
  if exists (select from kpi.custom_kpis d where d.active and d.tenant_id = any (p_tenant_ids)) then
    custom := kpi.write_custom_kpi_values(p_tenant_ids, p_weeks);
    stats := stats || jsonb_build_object('custom_weeks_written', (custom ->> 'rows_written')::bigint,
                                         'custom_values', (custom ->> 'values')::bigint,
                                         'warnings', (stats -> 'warnings') || (custom -> 'warnings'));
  end if;
  return stats;
end
$$;
comment on function kpi.write_weeks(uuid[], date[]) is
  'Computes and writes the kpi_history rows (and custom KPI values) of the given (tenant, week) pairs from their sources; unchanged rows are not written. The one write behind every fill; idempotent.';

-- ============================================================================================
-- Failures stay with the tenants that cause them
-- ============================================================================================

-- kpi.write_weeks for the given pairs, in a subtransaction. When it raises, the pairs are split in
-- two halves by tenant and each is tried again, down to the single tenant, which is then named in
-- `failed` with its SQLSTATE and message: every other tenant is written all the same. A cancel is
-- no tenant's fault and is not caught. The pairs come sorted by tenant. The normal path is one
-- subtransaction.
create or replace function kpi.write_weeks_contained(p_tenant_ids uuid[], p_weeks date[]) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  result jsonb;
  failed_sqlstate text;
  failed_message text;
  tenants uuid[];
  half uuid;
  first_half jsonb;
  second_half jsonb;
begin
  if cardinality(p_tenant_ids) = 0 then
    return jsonb_build_object('weeks', 0, 'rows_written', 0, 'written', '[]'::jsonb, 'warnings', '[]'::jsonb, 'failed', '[]'::jsonb);
  end if;
  begin
    return kpi.write_weeks(p_tenant_ids, p_weeks) || jsonb_build_object('failed', '[]'::jsonb);
  exception when others then
    get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text;
  end;
  select array_agg(distinct t order by t) into tenants from unnest(p_tenant_ids) t;
  if cardinality(tenants) = 1 then
    return jsonb_build_object('weeks', 0, 'rows_written', 0, 'written', '[]'::jsonb, 'warnings', '[]'::jsonb,
      'failed', jsonb_build_array(jsonb_build_object('tenant_id', tenants[1], 'sqlstate', failed_sqlstate,
                                                     'message', left(failed_message, 500))));
  end if;
  half := tenants[(cardinality(tenants) + 1) / 2];
  first_half := kpi.write_weeks_contained(
    array(select t from unnest(p_tenant_ids, p_weeks) x (t, w) where t <= half order by t, w),
    array(select w from unnest(p_tenant_ids, p_weeks) x (t, w) where t <= half order by t, w));
  second_half := kpi.write_weeks_contained(
    array(select t from unnest(p_tenant_ids, p_weeks) x (t, w) where t > half order by t, w),
    array(select w from unnest(p_tenant_ids, p_weeks) x (t, w) where t > half order by t, w));
  return kpi.add_fill_stats(first_half, second_half);
end
$$;

-- Two parts' stats as one: counts added, lists joined (the sample of written pairs kept at 100).
create or replace function kpi.add_fill_stats(a jsonb, b jsonb) returns jsonb
language sql immutable
set search_path = ''
return jsonb_strip_nulls(jsonb_build_object(
  'weeks', coalesce((a ->> 'weeks')::bigint, 0) + coalesce((b ->> 'weeks')::bigint, 0),
  'rows_written', coalesce((a ->> 'rows_written')::bigint, 0) + coalesce((b ->> 'rows_written')::bigint, 0),
  'custom_weeks_written', case when a ? 'custom_weeks_written' or b ? 'custom_weeks_written'
                               then coalesce((a ->> 'custom_weeks_written')::bigint, 0) + coalesce((b ->> 'custom_weeks_written')::bigint, 0) end,
  'custom_values', case when a ? 'custom_values' or b ? 'custom_values'
                        then coalesce((a ->> 'custom_values')::bigint, 0) + coalesce((b ->> 'custom_values')::bigint, 0) end,
  'written', (select coalesce(jsonb_agg(x.e), '[]'::jsonb)
              from (select e from jsonb_array_elements(coalesce(a -> 'written', '[]') || coalesce(b -> 'written', '[]')) e limit 100) x),
  'warnings', coalesce(a -> 'warnings', '[]') || coalesce(b -> 'warnings', '[]'),
  'failed', coalesce(a -> 'failed', '[]') || coalesce(b -> 'failed', '[]')));

-- ============================================================================================
-- A run
-- ============================================================================================

-- The error a tenant without AVI reports is, the same in every run and in the single-tenant
-- raise (kpi.fill_kpi_history); the slug is read by the caller, with one join for all of them.
-- Every run lists these tenants, 2 % of them in the bench, so a day on which nothing changed is
-- mostly this list: no SET clause and no table read, so that it is inlined into the run's
-- statement rather than called 2,000 times (measured at 100,000 tenants: 25 ms of the 66 ms run).
drop function if exists kpi.no_avi_error(uuid);
create or replace function kpi.no_avi_error(p_tenant_id uuid, p_slug text) returns jsonb
language sql stable
return jsonb_build_object(
  'tenant_id', p_tenant_id,
  'tenant', p_slug,
  'code', 'NO_AVI',
  'message', format('tenant %s has no AVI report', coalesce(p_slug, p_tenant_id::text)),
  'hint', 'Insert a row into kpi.avi_reports for this tenant first.');

-- Definitions not derived yet (new, changed, re-activated) of every tenant or the given ones, over
-- every week: all at once, and when that raises, tenant by tenant, so that one tenant's failure
-- leaves the others derived (the failed tenant is derived again at the next run).
create or replace function kpi.derive_pending_contained(p_tenants uuid[]) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  result jsonb := jsonb_build_object('kpis_derived', 0, 'values', 0, 'rows_written', 0, 'warnings', '[]'::jsonb, 'failed', '[]'::jsonb);
  one jsonb;
  pending uuid;
begin
  if not exists (select from kpi.custom_kpis d
                 where d.derived_revision is distinct from d.revision and d.active and (p_tenants is null or d.tenant_id = any (p_tenants))) then
    return result;
  end if;
  if p_tenants is null then
    begin
      return kpi.derive_pending_custom_kpis(null) || jsonb_build_object('failed', '[]'::jsonb);
    exception when others then
      null; -- tenant by tenant below
    end;
  end if;
  for pending in
    select distinct d.tenant_id from kpi.custom_kpis d
    where d.derived_revision is distinct from d.revision and d.active and (p_tenants is null or d.tenant_id = any (p_tenants))
    order by d.tenant_id
  loop
    begin
      one := kpi.derive_pending_custom_kpis(pending);
      result := result || jsonb_build_object(
        'kpis_derived', (result ->> 'kpis_derived')::bigint + (one ->> 'kpis_derived')::bigint,
        'values', (result ->> 'values')::bigint + (one ->> 'values')::bigint,
        'rows_written', (result ->> 'rows_written')::bigint + (one ->> 'rows_written')::bigint,
        'warnings', (result -> 'warnings') || (one -> 'warnings'));
    exception when others then
      result := jsonb_set(result, '{failed}', (result -> 'failed') || jsonb_build_array(jsonb_build_object(
        'tenant_id', pending, 'sqlstate', sqlstate, 'message', 'deriving its new custom KPIs failed: ' || left(sqlerrm, 400))));
    end;
  end loop;
  return result;
end
$$;

-- The fill of one mode for a run already in the log: the targets, the pending custom KPIs, the
-- writes contained per tenant. Returns the run's full result (kpi.run_result shapes what callers
-- see). Tenants whose write failed keep their change records (stale mode), so the next run
-- retries them.
create or replace function kpi.execute_fill(p_run_id bigint, p_mode text, p_tenants uuid[], p_from date, p_to date)
returns jsonb
language plpgsql
set search_path = ''
-- A plan for each call, with the tenants as a constant: from its sixth call in a session (a
-- backfill's batches) a generic plan tests `t.id = any (p_tenants)` on every tenant in turn
-- (measured: 1 s a batch at 100,000 tenants, where the custom plan probes the 1,000 given).
set plan_cache_mode = force_custom_plan
as $$
declare
  tenant_ids uuid[];
  weeks date[];
  no_avi uuid[];
  weeks_kept bigint;
  tenants_considered bigint;
  tenants_listed bigint;
  latest_week date;
  derived jsonb;
  written jsonb;
  failed jsonb;
  anomalies_before integer := kpi.anomalies_changed();
  total bigint;
begin
  select coalesce(array_agg(t.tenant_id order by t.tenant_id, t.as_of) filter (where t.as_of is not null and not t.kept), '{}'),
         coalesce(array_agg(t.as_of order by t.tenant_id, t.as_of) filter (where t.as_of is not null and not t.kept), '{}'),
         coalesce(array_agg(t.tenant_id order by t.tenant_id) filter (where t.as_of is null), '{}'),
         count(*) filter (where t.kept),
         -- The tenants whose sources were read: all of them but those the stale mode lists from
         -- kpi.tenants_without_avi.
         count(distinct t.tenant_id) filter (where t.as_of is not null or p_mode <> 'stale'),
         count(distinct t.tenant_id),
         max(t.as_of)
  into tenant_ids, weeks, no_avi, weeks_kept, tenants_considered, tenants_listed, latest_week
  from kpi.fill_targets(p_mode, p_tenants, p_from, p_to) t;

  -- A backfill counts the history weeks it left as they are, not the reports (retention may have
  -- deleted those). From the tenants, and into the history only for those whose sources have a
  -- horizon, one index range each: a join the planner may start from the history reads every row
  -- a long backfill has written so far in its transaction (no statistics know of them), batch
  -- after batch — measured 12 s of a 16 s batch after four batches of 1,000 tenants.
  if p_mode = 'range' then
    select coalesce(sum(k.weeks), 0) into weeks_kept
    from kpi.tenants t
    join kpi.plans p on p.plan = t.plan
    cross join lateral (select kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days),
                                                  t.sources_purged_before, (select kpi.last_source_cleanup())) as horizon) x
    cross join lateral (
      select count(*) as weeks from kpi.kpi_history h
      where h.tenant_id = t.id
        and h.as_of >= coalesce(p_from, '-infinity'::date) and h.as_of <= coalesce(p_to, 'infinity'::date)
        and kpi.week_end(h.as_of) <= x.horizon
    ) k
    where (p_tenants is null or t.id = any (p_tenants)) and x.horizon > '-infinity'::timestamptz;
  end if;

  -- Definitions not derived yet first, over every week; the run's own weeks then find their values.
  derived := kpi.derive_pending_contained(p_tenants);
  written := kpi.write_weeks_contained(tenant_ids, weeks);
  failed := (written -> 'failed') || (derived -> 'failed');
  if p_mode = 'stale' and jsonb_array_length(written -> 'failed') > 0 then
    -- Still stale: recorded again, from the earliest week the run had for them.
    insert into kpi.source_changes (tenant_ids, from_weeks)
    select array_agg(x.tenant_id), array_agg(x.from_week)
    from (select f.tenant_id, min(w.as_of) as from_week
          from jsonb_to_recordset(written -> 'failed') f (tenant_id uuid)
          join unnest(tenant_ids, weeks) w (tenant_id, as_of) on w.tenant_id = f.tenant_id
          group by f.tenant_id) x
    having count(*) > 0;
  end if;

  total := case when p_tenants is not null then cardinality(p_tenants)
                when p_mode = 'stale' then (select c.tenants from kpi.tenant_count c)
                else tenants_listed end;
  return jsonb_strip_nulls(jsonb_build_object(
    'ok', total - cardinality(no_avi) - (select count(distinct f ->> 'tenant_id') from jsonb_array_elements(failed) f),
    'total', total,
    'tenants_considered', tenants_considered,
    'as_of', latest_week,
    'weeks', (written ->> 'weeks')::bigint,
    'weeks_kept', weeks_kept,
    'rows_written', (written ->> 'rows_written')::bigint,
    'written', written -> 'written',
    'anomalies', kpi.anomalies_changed() - anomalies_before,
    'custom_weeks_written', case when written ? 'custom_weeks_written' or (derived ->> 'rows_written')::bigint > 0
                                 then coalesce((written ->> 'custom_weeks_written')::bigint, 0) + (derived ->> 'rows_written')::bigint end,
    'custom_values', case when written ? 'custom_values' or (derived ->> 'values')::bigint > 0
                          then coalesce((written ->> 'custom_values')::bigint, 0) + (derived ->> 'values')::bigint end,
    'custom_kpis_derived', nullif((derived ->> 'kpis_derived')::bigint, 0),
    'errors', (select coalesce(jsonb_agg(kpi.no_avi_error(n, t.slug) order by n), '[]'::jsonb)
               from unnest(no_avi) n left join kpi.tenants t on t.id = n)
              || (select coalesce(jsonb_agg(jsonb_build_object(
                        'tenant_id', f.tenant_id,
                        'tenant', t.slug,
                        'code', 'INTERNAL_ERROR', 'sqlstate', f.sqlstate,
                        'message', format('the fill of tenant %s failed and wrote nothing for it: %s',
                                          coalesce(t.slug, f.tenant_id::text), f.message))
                        order by f.tenant_id), '[]'::jsonb)
                  from jsonb_to_recordset(failed) f (tenant_id uuid, sqlstate text, message text)
                  left join kpi.tenants t on t.id = f.tenant_id),
    -- A pending KPI's warning for one of the run's weeks is in both lists: once is enough.
    'warnings', (select coalesce(jsonb_agg(w.warning order by w.warning ->> 'tenant_id', w.warning ->> 'as_of', w.warning ->> 'kpi', w.warning ->> 'code'), '[]'::jsonb)
                 from (select distinct x.warning
                       from jsonb_array_elements((derived -> 'warnings') || (written -> 'warnings')) as x (warning)) w)));
end
$$;

-- What a run answers: its result with at most 100 errors and 100 warnings, the count of each code,
-- and where the whole lists are (the run's row in kpi.kpi_runs) — a million tenants of which 2 %
-- have no reports make one bounded answer. Internal keys (the written sample) stay inside.
create or replace function kpi.run_result(p_result jsonb) returns jsonb
language sql stable
set search_path = ''
return (p_result - 'written' - 'errors' - 'warnings')
  || jsonb_build_object(
       'errors', (select coalesce(jsonb_agg(e), '[]'::jsonb) from (select e from jsonb_array_elements(coalesce(p_result -> 'errors', '[]')) e limit 100) x),
       'warnings', (select coalesce(jsonb_agg(w), '[]'::jsonb) from (select w from jsonb_array_elements(coalesce(p_result -> 'warnings', '[]')) w limit 100) x))
  || case when jsonb_array_length(coalesce(p_result -> 'errors', '[]')) > 0 then jsonb_build_object(
       'error_counts', (select jsonb_object_agg(c.code, c.n) from (
                          select e ->> 'code' as code, count(*) as n from jsonb_array_elements(p_result -> 'errors') e group by 1) c)) else '{}'::jsonb end
  || case when jsonb_array_length(coalesce(p_result -> 'warnings', '[]')) > 0 then jsonb_build_object(
       'warning_counts', (select jsonb_object_agg(c.code, c.n) from (
                            select w ->> 'code' as code, count(*) as n from jsonb_array_elements(p_result -> 'warnings') w group by 1) c)) else '{}'::jsonb end
  || case when jsonb_array_length(coalesce(p_result -> 'errors', '[]')) > 100 or jsonb_array_length(coalesce(p_result -> 'warnings', '[]')) > 100
          then jsonb_build_object('complete_lists', format('select errors, warnings from kpi.kpi_runs where id = %s', p_result ->> 'run_id'))
          else '{}'::jsonb end;

-- An all-tenant fill for a run already in the log. Incremental: the recorded changes. Full: the
-- recorded changes, then every tenant's latest week as before change tracking existed; what that
-- second pass still writes, the records missed, and the run says so (warnings, health). Only
-- an error outside every tenant's write (a bug, a cancel) fails the whole run and undoes it.
create or replace function kpi.execute_fill_all(p_run_id bigint, p_full boolean) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  run_mode constant text := case when p_full then 'full' else 'incremental' end;
  incremental jsonb;
  reconciled jsonb;
  result jsonb;
  corrected integer := 0;
begin
  update kpi.kpi_runs set mode = run_mode where id = p_run_id;
  begin
    incremental := kpi.execute_fill(p_run_id, 'stale', null, null, null);
    result := incremental;
    if p_full then
      reconciled := kpi.execute_fill(p_run_id, 'latest', null, null, null);
      corrected := (reconciled ->> 'rows_written')::integer;
      result := reconciled || jsonb_build_object(
        'rows_written', corrected + (incremental ->> 'rows_written')::integer,
        'anomalies', (incremental ->> 'anomalies')::integer + (reconciled ->> 'anomalies')::integer,
        -- A tenant that failed in both passes is one error.
        'errors', (select coalesce(jsonb_agg(e order by e ->> 'code', e ->> 'tenant_id'), '[]'::jsonb)
                   from (select distinct on (e ->> 'tenant_id', e ->> 'code') e
                         from jsonb_array_elements((incremental -> 'errors') || (reconciled -> 'errors')) e) x),
        'warnings', (select coalesce(jsonb_agg(distinct w), '[]'::jsonb)
                     from jsonb_array_elements((incremental -> 'warnings') || (reconciled -> 'warnings')) w)
          || (select coalesce(jsonb_agg(jsonb_build_object(
                   'tenant_id', w ->> 'tenant_id', 'as_of', w ->> 'as_of', 'code', 'UNTRACKED_CHANGE',
                   'message', 'the full run corrected this row: no change record covered it')), '[]'::jsonb)
              from jsonb_array_elements(reconciled -> 'written') w),
        'corrected', corrected);
    end if;
  exception when others or query_canceled then
    return kpi.fail_run(p_run_id, sqlstate, sqlerrm, run_mode);
  end;
  result := result - 'as_of' || jsonb_build_object(
    'mode', run_mode,
    'status', case when result -> 'errors' = '[]'::jsonb then 'ok' else 'partial' end,
    'run_id', p_run_id);
  perform kpi.finish_kpi_run(p_run_id, result ->> 'status', result);
  update kpi.kpi_runs set details = jsonb_strip_nulls(jsonb_build_object(
      'tenants_considered', result -> 'tenants_considered', 'corrected', result -> 'corrected'))
  where id = p_run_id;
  return kpi.run_result(result);
end
$$;

-- A run that failed as a whole (a cancel, an error outside every tenant's write): logged as failed
-- with the error, changing nothing (the caller's handler undid its work).
create or replace function kpi.fail_run(p_run_id bigint, p_sqlstate text, p_message text, p_mode text default null) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  result jsonb := jsonb_strip_nulls(jsonb_build_object(
    'ok', 0, 'total', null, 'rows_written', 0, 'warnings', '[]'::jsonb, 'mode', p_mode,
    'errors', jsonb_build_array(jsonb_build_object('code', 'INTERNAL_ERROR', 'sqlstate', p_sqlstate, 'message', p_message))));
begin
  perform kpi.finish_kpi_run(p_run_id, 'failed', result);
  return result || jsonb_build_object('status', 'failed', 'run_id', p_run_id);
end
$$;

-- ============================================================================================
-- The fills
-- ============================================================================================

create or replace function kpi.fill_kpi_history(tenant text) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  tenant_id uuid := kpi.tenant_id_of(tenant);
  run_id bigint;
  result jsonb;
  error jsonb;
begin
  run_id := kpi.start_kpi_run('fill', tenant_id, null, null);
  result := kpi.execute_fill(run_id, 'latest', array[tenant_id], null, null);
  error := result -> 'errors' -> 0;
  if error is not null then
    -- NO_AVI, or the tenant's write failed: raised, which undoes the run's row too
    -- (kpi.try_fill_kpi_history logs it instead).
    perform kpi.raise_error(error ->> 'code', error ->> 'message', error ->> 'hint');
  end if;
  perform kpi.finish_kpi_run(run_id, 'ok', result);
  -- The all-tenant result's vocabulary (status, run_id, rows_written, errors, warnings,
  -- anomalies) for one tenant: ok is true rather than a count, and errors is always empty, since
  -- a tenant's error is raised (a partial run of one tenant is a failed one).
  return jsonb_build_object('ok', true, 'status', 'ok', 'as_of', result -> 'as_of', 'rows_written', result -> 'rows_written',
                            'errors', '[]'::jsonb, 'warnings', result -> 'warnings', 'anomalies', result -> 'anomalies', 'run_id', run_id);
end
$$;
comment on function kpi.fill_kpi_history(text) is
  'Writes the tenant''s latest AVI week into kpi_history; the tenant by slug or id. Returns {"ok": true, "status": "ok", "as_of": "YYYY-MM-DD", "rows_written", "errors": [], "warnings", "anomalies", "run_id"}. '
  'Raises UNKNOWN_TENANT (KH404) or NO_AVI (KH422). Example: select kpi.fill_kpi_history(''acme'');';

-- kpi.fill_kpi_history that logs a failure as a failed run and answers it as data instead of
-- raising, so that the caller's transaction commits the log: the API and the server SDK use it
-- and still answer their caller with the same error.
create or replace function kpi.try_fill_kpi_history(tenant text) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  failed_sqlstate text;
  failed_message text;
  failed_hint text;
  known kpi.error_codes;
  run_id bigint;
  named uuid;
begin
  return kpi.fill_kpi_history(tenant);
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text, failed_hint = pg_exception_hint;
  begin
    named := kpi.tenant_id_of(tenant);
  exception when others then
    -- No such tenant: the log names what was asked for (an id as its tenant_id).
    named := kpi.uuid_or_null(tenant);
  end;
  select * into known from kpi.error_codes e where e.sqlstate = failed_sqlstate;
  if known.code is null then
    select * into known from kpi.error_codes e where e.code = 'INTERNAL_ERROR';
  end if;
  run_id := kpi.start_kpi_run('fill', named, null, null, 'failed');
  update kpi.kpi_runs r set total_count = 1, ok_count = 0, rows_written = 0,
    errors = jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
               'tenant_id', named, 'code', known.code, 'sqlstate', failed_sqlstate, 'message', failed_message,
               'hint', nullif(failed_hint, '')))),
    details = case when named is null then jsonb_build_object('tenant', left(tenant, 100)) end
  where r.id = run_id;
  return jsonb_build_object(
    'ok', false, 'code', known.code, 'http_status', known.http_status, 'sqlstate', failed_sqlstate,
    -- An unexpected error's own message stays in the log; the caller learns where to look.
    'message', case when known.code = 'INTERNAL_ERROR'
                    then format('the fill failed and changed nothing; see run %s in kpi.kpi_runs', run_id)
                    else failed_message end,
    'run_id', run_id);
end
$$;
comment on function kpi.try_fill_kpi_history(text) is
  'kpi.fill_kpi_history that logs a failure as a failed run and returns {"ok": false, "code", "http_status", "sqlstate", "message", "run_id"} instead of raising. '
  'Example: select kpi.try_fill_kpi_history(''acme'');';

create or replace function kpi.fill_all_kpi_history(full boolean default false) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  if not kpi.try_lock_all_tenants() then
    return kpi.skipped_run('fill_all', null, null);
  end if;
  return kpi.execute_fill_all(kpi.start_kpi_run('fill_all', null, null, null), coalesce(fill_all_kpi_history.full, false));
end
$$;
comment on function kpi.fill_all_kpi_history(boolean) is
  'Brings every tenant''s history up to date. Incremental (the default): only the tenants whose sources changed, as the change-tracking triggers recorded them. full => true: every tenant''s latest week too, reporting in "corrected" what the records missed (should be 0). A tenant whose write fails is an error of the run (partial), the others are written. Returns {"ok", "total", "tenants_considered", "mode", "rows_written", "anomalies", "errors": [first 100], "error_counts", "warnings": [first 100], "status", "run_id"} (and "corrected" for a full run), or {"skipped": true, …} while another all-tenant run holds the lock. Example: select kpi.fill_all_kpi_history();';

-- Two run results as one (the batches of a backfill): counts added, lists joined.
create or replace function kpi.add_run_results(a jsonb, b jsonb) returns jsonb
language sql immutable
set search_path = ''
return jsonb_strip_nulls(
  (select jsonb_object_agg(k, (select sum(v) from (values ((a ->> k)::numeric), ((b ->> k)::numeric)) x (v)))
   from unnest(array['ok', 'total', 'tenants_considered', 'weeks', 'weeks_kept', 'rows_written', 'anomalies',
                     'custom_weeks_written', 'custom_values', 'custom_kpis_derived']) k)
  || jsonb_build_object(
       'as_of', greatest(a ->> 'as_of', b ->> 'as_of'),
       'errors', coalesce(a -> 'errors', '[]') || coalesce(b -> 'errors', '[]'),
       'warnings', coalesce(a -> 'warnings', '[]') || coalesce(b -> 'warnings', '[]')));

-- One batch of an all-tenant backfill: the `p_batch` tenants after `p_after` in id order (from the
-- first when NULL). Returns the batch's result and `next_tenant`, where the next batch starts after
-- (NULL: that was the last).
create or replace function kpi.backfill_batch(p_run_id bigint, p_after uuid, p_batch integer, p_from date, p_to date) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  batch uuid[];
begin
  select array_agg(t.id order by t.id) into batch
  from (select t.id from kpi.tenants t where p_after is null or t.id > p_after order by t.id limit p_batch) t;
  if batch is null then
    return jsonb_build_object('next_tenant', null);
  end if;
  return kpi.execute_fill(p_run_id, 'range', batch, p_from, p_to)
         || jsonb_build_object('next_tenant', case when cardinality(batch) = p_batch then batch[p_batch] end);
end
$$;

create or replace function kpi.backfill_kpi_history(tenant text default null, "from" date default null, "to" date default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  tenant_id uuid;
  run_id bigint;
  result jsonb := '{}';
  batch jsonb;
  error jsonb;
begin
  if "from" > "to" then
    perform kpi.raise_error('INVALID_INPUT', format('"from" (%s) is after "to" (%s)', "from", "to"));
  end if;
  if tenant is null then
    if not kpi.try_lock_all_tenants() then
      return kpi.skipped_run('backfill', "from", "to");
    end if;
    run_id := kpi.start_kpi_run('backfill', null, "from", "to");
    begin
      -- In batches of 1,000 tenants: each statement's memory stays bounded whatever the number of
      -- tenants, all in this one transaction (call kpi.run_backfill() commits each batch instead).
      loop
        batch := kpi.backfill_batch(run_id, (batch ->> 'next_tenant')::uuid, 1000, "from", "to");
        result := kpi.add_run_results(result, batch - 'next_tenant');
        exit when batch ->> 'next_tenant' is null;
      end loop;
    exception when others or query_canceled then
      return kpi.fail_run(run_id, sqlstate, sqlerrm);
    end;
  else
    tenant_id := kpi.tenant_id_of(tenant);
    run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
    result := kpi.execute_fill(run_id, 'range', array[tenant_id], "from", "to");
    error := result -> 'errors' -> 0;
    if error is not null then
      perform kpi.raise_error(error ->> 'code', error ->> 'message', error ->> 'hint');
    end if;
  end if;
  result := result || jsonb_build_object(
    'status', case when coalesce(result -> 'errors', '[]') = '[]'::jsonb then 'ok' else 'partial' end, 'run_id', run_id);
  perform kpi.finish_kpi_run(run_id, result ->> 'status', result);
  return kpi.run_result(result) - 'tenants_considered' - 'as_of';
end
$$;
comment on function kpi.backfill_kpi_history(text, date, date) is
  'Writes one kpi_history row per AVI week in [from, to] (NULL = unbounded) for one tenant (by slug or id) or all '
  '(tenant NULL), with VLI and HRP as of the end of each week, in one transaction. Idempotent. Returns '
  '{"ok", "total", "weeks", "weeks_kept", "rows_written", "anomalies", "errors", "warnings", "status", "run_id"}; a tenant without AVI reports is a NO_AVI error. '
  'For many tenants prefer call kpi.run_backfill(), which commits as it goes. Example: select kpi.backfill_kpi_history(''acme'', ''2024-01-01'');';

-- The backfill an operator starts and watches: every tenant (or one), in batches of `batch_size`
-- tenants, each committed with the run's progress (kpi_runs: ok_count, total_count,
-- rows_written; details.batches and details.next_tenant) and a NOTICE, so that a cancel keeps the
-- finished batches and `resume_after` (details.next_tenant of the cancelled run) goes on from
-- there. Each batch holds the all-tenant lock for its transaction, waiting for a run that holds it.
create or replace procedure kpi.run_backfill(tenant text default null, "from" date default null, "to" date default null,
                                             batch_size integer default 1000, resume_after uuid default null)
language plpgsql
as $$
declare
  run_id bigint;
  tenant_id uuid;
  result jsonb := '{}';
  batch jsonb;
  batches integer := 0;
  next_tenant uuid := resume_after;
  failed_sqlstate text;
  failed_message text;
begin
  commit;
  if "from" > "to" then
    perform kpi.raise_error('INVALID_INPUT', format('"from" (%s) is after "to" (%s)', "from", "to"));
  end if;
  if batch_size is null or batch_size < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'batch_size must be at least 1');
  end if;
  if tenant is not null then
    tenant_id := kpi.tenant_id_of(tenant);
  end if;
  run_id := kpi.start_kpi_run('backfill', tenant_id, "from", "to");
  update kpi.kpi_runs set details = jsonb_build_object('batches', 0, 'batch_size', batch_size, 'resumed_after', resume_after) where id = run_id;
  commit;
  raise notice 'backfill run %: started (kpi.kpi_runs id %)', run_id, run_id;
  loop
    perform pg_advisory_xact_lock(1263552840, 1);
    begin
      if tenant_id is not null then
        batch := kpi.execute_fill(run_id, 'range', array[tenant_id], "from", "to") || '{"next_tenant": null}';
      else
        batch := kpi.backfill_batch(run_id, next_tenant, batch_size, "from", "to");
      end if;
    exception when others then
      failed_sqlstate := sqlstate;
      failed_message := sqlerrm;
    end;
    if failed_sqlstate is not null then
      -- (A transaction cannot end inside a block with an exception handler: here, after it.)
      perform kpi.fail_run(run_id, failed_sqlstate, failed_message);
      commit;
      perform kpi.report_run_outcome(run_id);
    end if;
    batches := batches + 1;
    result := kpi.add_run_results(result, batch - 'next_tenant');
    next_tenant := (batch ->> 'next_tenant')::uuid;
    update kpi.kpi_runs r set ok_count = (result ->> 'ok')::int, total_count = (result ->> 'total')::int,
                              rows_written = (result ->> 'rows_written')::int, errors = coalesce(result -> 'errors', '[]'),
                              warnings = coalesce(result -> 'warnings', '[]'),
                              details = r.details || jsonb_build_object('batches', batches, 'next_tenant', next_tenant)
    where r.id = run_id;
    commit;
    raise notice 'backfill run %: batch % done, % tenants, % rows written so far', run_id, batches,
      coalesce(result ->> 'total', '0'), coalesce(result ->> 'rows_written', '0');
    exit when next_tenant is null;
  end loop;
  result := result || jsonb_build_object(
    'status', case when coalesce(result -> 'errors', '[]') = '[]'::jsonb then 'ok' else 'partial' end, 'run_id', run_id);
  perform kpi.finish_kpi_run(run_id, result ->> 'status', result);
  commit;
  perform kpi.report_run_outcome(run_id);
end
$$;
comment on procedure kpi.run_backfill(text, date, date, integer, uuid) is
  'Backfills [from, to] for every tenant (or one, by slug or id) in batches of batch_size tenants, each committed with the progress in kpi.kpi_runs and a NOTICE; a cancel keeps the finished batches, and resume_after => (details ->> ''next_tenant'') of that run goes on. '
  'Call it outside a transaction block. Example: call kpi.run_backfill("from" => ''2024-01-01'');';

-- The daily job (and, with full => true, the weekly reconciliation). A procedure, so that the
-- run is committed as `running` before the work starts: if the session dies mid-way the log still
-- shows a run that never finished. Its first statement ends the CALL's own transaction: inside a
-- transaction block PostgreSQL refuses that COMMIT (2D000) before anything is written or locked.
-- The lock is held by the one transaction that does the work.
create or replace procedure kpi.run_scheduled_kpi_fill(full boolean default false)
language plpgsql
as $$
declare
  run_id bigint;
  result jsonb;
begin
  commit;
  run_id := kpi.start_kpi_run('fill_all', null, null, null);
  commit;
  if not kpi.try_lock_all_tenants() then
    perform kpi.skipped_run('fill_all', null, null, run_id);
    commit;
  else
    result := kpi.execute_fill_all(run_id, coalesce(run_scheduled_kpi_fill.full, false));
    commit;
  end if;
  perform kpi.report_run_outcome(run_id);
end
$$;
comment on procedure kpi.run_scheduled_kpi_fill(boolean) is
  'What pg_cron runs: daily the incremental fill, weekly (full => true) the reconciliation; the run logged as running first. '
  'Says its run id and outcome in a NOTICE; a failed run raises INTERNAL_ERROR (KH500) after its row is committed, so the job fails. '
  'Call it outside a transaction block (it commits as it goes). Example: call kpi.run_scheduled_kpi_fill();';
