-- Anomaly detection: every KPI of every written week, built-in or custom, is scored against the
-- tenant's previous 12 weeks of that KPI with the modified z-score of Iglewicz and Hoaglin (robust
-- to the outliers it is looking for), in the writing transaction; a new or changed anomaly enqueues
-- an alert (kpi.alerts, a transactional outbox). One scoring rule, kpi.rescore_anomalies, for both
-- kinds of KPI: only where their values are read from differs.

-- ============================================================================================
-- The KPIs and their values
-- ============================================================================================

-- The built-in KPIs, as anomalies and rules name them (a custom KPI's key is never one of these,
-- nor 'custom', the rule every custom KPI is scored under).
create or replace function kpi.built_in_kpis() returns text[]
language sql immutable parallel safe
return array['aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'];

-- A KPI's values over the 12 calendar weeks before `as_of`, sorted (what its median and spread are
-- taken from). A fallback VLI (100 for want of an audit) is no measurement: never in a baseline.
-- (One SQL statement, no SET clause: inlined into the caller, one index range scan.)
create or replace function kpi.baseline_values(p_tenant_id uuid, p_as_of date, p_kpi text) returns numeric[]
language sql stable parallel safe
return (
  select array_agg(x.v order by x.v)
  from (
    select case p_kpi when 'aiv_pct' then b.aiv_pct when 'ati_pct' then b.ati_pct when 'crs_pct' then b.crs_pct
                      when 'elasticity_usd_per_point' then b.elasticity_usd_per_point
                      when 'vli_integrity_pct' then case when not b.vli_is_fallback then b.vli_integrity_pct end
                      when 'hrp_pct' then b.hrp_pct end as v
    from kpi.kpi_history b
    where p_kpi = any (kpi.built_in_kpis()) and b.tenant_id = p_tenant_id and b.as_of >= p_as_of - 84 and b.as_of < p_as_of
    union all
    select (w.kpi_values ->> p_kpi)::numeric
    from kpi.custom_kpi_weeks w
    where not p_kpi = any (kpi.built_in_kpis()) and w.tenant_id = p_tenant_id and w.as_of >= p_as_of - 84 and w.as_of < p_as_of
  ) x
  where x.v is not null);

-- ============================================================================================
-- The rule
-- ============================================================================================

-- True when a value can be no anomaly under a rule's minimum differences, knowing only the least
-- and the greatest of its baseline: an anomaly needs |value − median| ≥ the minimum difference,
-- and the median lies between the least and the greatest, so a value closer than that difference
-- to both ends is settled without sorting anything. (For the part relative to the median, |median|
-- is at least the smaller of |least| and |greatest| when both have one sign.) False when the rule
-- is unknown (NULLs): nothing is ruled out.
create or replace function kpi.anomaly_ruled_out(value numeric, lo numeric, hi numeric, min_delta numeric,
                                                 min_delta_of_median numeric) returns boolean
language sql immutable parallel safe
-- (The part relative to the median is left alone when the rule has none: most rules, and most of
-- the cost, since the test runs on every value a fill re-scores.)
return greatest(coalesce(min_delta, 0),
                case when coalesce(min_delta_of_median, 0) <> 0 and sign(lo) = sign(hi)
                     then min_delta_of_median * least(abs(lo), abs(hi)) else 0 end)
       > greatest(hi - value, value - lo);


-- Re-scores the given weeks of the given tenants and the 12 weeks after each (their baselines
-- include it): per tenant, every week from its earliest given week to 12 weeks after its latest,
-- of the built-in KPIs (p_kpis 'built_in', from kpi_history) or of the custom ones ('custom', from
-- custom_kpi_weeks). Inserts, updates and deletes anomalies (and enqueues an alert per new or
-- changed one) so that, for those weeks, kpi_anomalies equals a from-scratch detection. Returns
-- the number of anomalies inserted or changed.
--
-- A value is scored when at least 8 of the previous 12 calendar weeks have one. An anomaly:
-- |modified z-score| > threshold and |value − median| ≥ greatest(min_delta, min_delta_of_median ×
-- |median|), the rule of kpi.anomaly_rules (a built-in KPI's own row, 'custom' for custom KPIs)
-- or of the tenant's override. Computed in numeric: no value can overflow it.
create or replace function kpi.rescore_anomalies(p_tenant_ids uuid[], p_weeks date[], p_kpis text default 'built_in') returns integer
language plpgsql
set search_path = ''
-- Compiling the statement costs more than running it (measured 70 ms of 450). The statement is
-- planned at each call (EXECUTE: a one-shot plan, with the branch of the other kind of KPI folded
-- away); not by plan_cache_mode = force_custom_plan, under which the foreign-key checks of each
-- anomaly and alert written would be planned again for every row (see kpi.write_weeks).
set jit = off
set plan_cache_mode = auto
as $$
declare
  changed integer;
  built_in constant boolean := p_kpis = 'built_in';
begin
  if p_kpis is null or p_kpis not in ('built_in', 'custom') then
    raise exception 'kpi.rescore_anomalies: p_kpis is built_in or custom, not %', p_kpis;
  end if;
  execute $score$
  -- ($1, $2: the (tenant, week) pairs; $3: true for the built-in KPIs, false for the custom ones.)
  with given as (
    select x.*, exists (select from kpi.tenant_anomaly_rules o where o.tenant_id = x.tenant_id) as overridden
    from (select g.tenant_id, min(g.as_of) as first_week, max(g.as_of) as last_week
          from unnest($1::uuid[], $2::date[]) as g (tenant_id, as_of)
          group by g.tenant_id) x
  ),
  -- The default rule's minimum differences, by the KPI's place in
  -- kpi.built_in_kpis() (and the custom KPIs' rule): what values of a tenant without rules of its
  -- own are ruled out by before anything else (kpi.anomaly_ruled_out), so that only the few that
  -- are not go further.
  default_rule as materialized (
    select array_agg(d.min_delta order by k.place) as min_delta,
           array_agg(d.min_delta_of_median order by k.place) as min_delta_of_median,
           (select c.min_delta from kpi.anomaly_rules c where c.kpi = 'custom') as custom_min_delta,
           (select c.min_delta_of_median from kpi.anomaly_rules c where c.kpi = 'custom') as custom_min_delta_of_median
    from unnest(kpi.built_in_kpis()) with ordinality as k (kpi, place)
    left join kpi.anomaly_rules d on d.kpi = k.kpi
  ),
  -- Per week and KPI: its value, and how many of the 12 weeks before have one, with the least and
  -- the greatest — nothing sorted or copied yet — kept only where the default rule does not rule
  -- the value out (every value, for a tenant with rules of its own): a few percent of them. The
  -- weeks to score by one index range scan per tenant, from its first week to 12 after its last;
  -- each week's 12 weeks before by a second one, summarized by a plain aggregate — the same form
  -- as the custom KPIs' below. (Laterals that cannot be flattened: without them the planner, which
  -- cannot know how many tenants it is given, hashes the whole table instead.)
  --
  -- Not a window over one scan from 12 weeks before the first week: a frame is aggregated again
  -- for every row of the scan (min and max cannot take a row back out), and the daily fill scores
  -- one week a tenant, so 12 of its 13 rows were summarized for nothing. Measured at 20,000
  -- tenants (the summary and the cheap rule, alone): the daily shape 0.94–1.38 s → 0.44–0.58 s, a
  -- first fill 0.14–0.20 s → 0.10–0.13 s, a backfill's 102,000 weeks of 2,000 tenants
  -- 1.02–1.29 s → 1.37–2.00 s (a probe a week where the window read each row once). Over numeric:
  -- a plain aggregate copies a value only when it is a new least or greatest (the window summed
  -- whole cents as bigint to spare the copies its restarts made). The rule is tested per KPI on each
  -- week, and a week becomes one row per KPI only where one passes (unpivoting every week first
  -- cost more than the test). Each OFFSET 0 keeps a subquery from being pulled up, which would
  -- evaluate its expressions again for every row that uses them.
  scored as materialized (
    select b.tenant_id, b.as_of, k.kpi, k.value, k.n, k.lo, k.hi
    from (
      select h.*, s.*,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.aiv_pct, s.aiv_lo, s.aiv_hi, f.min_delta[1], f.min_delta_of_median[1])) as aiv_in,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.ati_pct, s.ati_lo, s.ati_hi, f.min_delta[2], f.min_delta_of_median[2])) as ati_in,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.crs_pct, s.crs_lo, s.crs_hi, f.min_delta[3], f.min_delta_of_median[3])) as crs_in,
             s.weeks_n >= 8 and (g.overridden or not kpi.anomaly_ruled_out(h.elasticity_usd_per_point, s.elasticity_lo, s.elasticity_hi, f.min_delta[4], f.min_delta_of_median[4])) as elasticity_in,
             h.vli_integrity_pct is not null and s.vli_n >= 8
               and (g.overridden or not kpi.anomaly_ruled_out(h.vli_integrity_pct, s.vli_lo, s.vli_hi, f.min_delta[5], f.min_delta_of_median[5])) as vli_in,
             h.hrp_pct is not null and s.hrp_n >= 8
               and (g.overridden or not kpi.anomaly_ruled_out(h.hrp_pct, s.hrp_lo, s.hrp_hi, f.min_delta[6], f.min_delta_of_median[6])) as hrp_in
      from given g
      cross join lateral (
        -- (A fallback VLI is no measurement: neither scored nor in a baseline.)
        select h.tenant_id, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point,
               case when not h.vli_is_fallback then h.vli_integrity_pct end as vli_integrity_pct, h.hrp_pct
        from kpi.kpi_history h
        where $3 and h.tenant_id = g.tenant_id and h.as_of >= g.first_week and h.as_of <= g.last_week + 84
        offset 0
      ) h
      cross join lateral (
        -- (AIV, ATI, CRS and elasticity are never NULL in the history: one count serves the four.)
        select count(*) as weeks_n,
               min(b.aiv_pct) as aiv_lo, max(b.aiv_pct) as aiv_hi,
               min(b.ati_pct) as ati_lo, max(b.ati_pct) as ati_hi,
               min(b.crs_pct) as crs_lo, max(b.crs_pct) as crs_hi,
               min(b.elasticity_usd_per_point) as elasticity_lo, max(b.elasticity_usd_per_point) as elasticity_hi,
               count(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_n,
               min(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_lo,
               max(b.vli_integrity_pct) filter (where not b.vli_is_fallback) as vli_hi,
               count(b.hrp_pct) as hrp_n, min(b.hrp_pct) as hrp_lo, max(b.hrp_pct) as hrp_hi
        from kpi.kpi_history b
        where b.tenant_id = h.tenant_id and b.as_of >= h.as_of - 84 and b.as_of < h.as_of
      ) s
      cross join default_rule f
      offset 0
    ) b
    -- (Each KPI in its place in kpi.built_in_kpis(), the subscripts of the rule's arrays above.)
    cross join lateral (values
      ('aiv_pct', b.aiv_in, b.aiv_pct, b.weeks_n, b.aiv_lo, b.aiv_hi),
      ('ati_pct', b.ati_in, b.ati_pct, b.weeks_n, b.ati_lo, b.ati_hi),
      ('crs_pct', b.crs_in, b.crs_pct, b.weeks_n, b.crs_lo, b.crs_hi),
      ('elasticity_usd_per_point', b.elasticity_in, b.elasticity_usd_per_point, b.weeks_n, b.elasticity_lo, b.elasticity_hi),
      ('vli_integrity_pct', b.vli_in, b.vli_integrity_pct, b.vli_n, b.vli_lo, b.vli_hi),
      ('hrp_pct', b.hrp_in, b.hrp_pct, b.hrp_n, b.hrp_lo, b.hrp_hi)) as k (kpi, kept, value, n, lo, hi)
    where (b.aiv_in or b.ati_in or b.crs_in or b.elasticity_in or b.vli_in or b.hrp_in) and k.kept
    union all
    -- Custom KPIs: the keys in each week's values, and the same summary of the 12 weeks before
    -- from one index range scan per week for all its keys. Whether a key's definition is still
    -- active is asked in `candidates`, for the few values that get there: asked here, for every
    -- tenant given, it was the costliest step of a fill that scores nothing (a first fill: no
    -- baseline yet).
    select w.tenant_id, w.as_of, s.key, (w.kpi_values ->> s.key)::numeric, s.n, s.lo, s.hi
    from given g
    cross join lateral (
      select w.* from kpi.custom_kpi_weeks w
      where w.tenant_id = g.tenant_id and w.as_of >= g.first_week and w.as_of <= g.last_week + 84
      offset 0
    ) w
    cross join lateral (
      select e.key, count(e.v) as n, min(e.v) as lo, max(e.v) as hi
      from kpi.custom_kpi_weeks b
      cross join lateral (select x.key, (x.value #>> '{}')::numeric as v from jsonb_each(b.kpi_values) x) e
      where b.tenant_id = w.tenant_id and b.as_of >= w.as_of - 84 and b.as_of < w.as_of and w.kpi_values ? e.key
      group by e.key
    ) s
    cross join default_rule f
    where not $3 and (w.kpi_values ->> s.key) is not null and s.n >= 8
      and (g.overridden
           or not kpi.anomaly_ruled_out((w.kpi_values ->> s.key)::numeric, s.lo, s.hi, f.custom_min_delta, f.custom_min_delta_of_median))
  ),
  -- The rule in force (the tenant's own, else the default), and the cheap half of it again
  -- (kpi.anomaly_ruled_out) for the tenants with rules of their own. Materialized, so that what
  -- follows runs only for what passes.
  candidates as materialized (
    select x.tenant_id, x.as_of, x.kpi, x.value, r.threshold, r.min_delta, r.min_delta_of_median
    from scored x
    join kpi.anomaly_rules d on d.kpi = case when $3 then x.kpi else 'custom' end
    left join kpi.tenant_anomaly_rules o on o.tenant_id = x.tenant_id and o.kpi = d.kpi
    cross join lateral (
      select coalesce(o.enabled, true) as enabled, coalesce(o.threshold, d.threshold) as threshold,
             coalesce(o.min_delta, d.min_delta, 0) as min_delta,
             coalesce(o.min_delta_of_median, d.min_delta_of_median, 0) as min_delta_of_median
    ) r
    where r.enabled and not kpi.anomaly_ruled_out(x.value, x.lo, x.hi, r.min_delta, r.min_delta_of_median)
      -- (A custom key is scored while its definition is active: a week written while its
      -- definition was deleted or deactivated may still hold it.)
      and ($3 or exists (select from kpi.custom_kpis c where c.tenant_id = x.tenant_id and c.key = x.kpi and c.active))
  ),
  -- The candidates' baselines, sorted (a second index range scan, for the few that got here); the
  -- median is the middle value, or the mean of the two middle ones; the MAD the same of the
  -- absolute deviations from it. Materialized, and the baseline behind OFFSET 0: otherwise the
  -- planner pulls the baseline's subquery up into every expression that uses it and reads the
  -- baseline once for each — six reads a candidate (measured: 5 ms a candidate instead of 0.05
  -- before the CTE; re-scoring 2,000 tenants' whole histories 12.1 s → 6.0 s for the OFFSET).
  medians as materialized (
    select c.*, s.sorted, cardinality(s.sorted) as n,
           round((s.sorted[(cardinality(s.sorted) + 1) / 2] + s.sorted[(cardinality(s.sorted) + 2) / 2]) / 2, 4) as median
    from candidates c
    cross join lateral (select kpi.baseline_values(c.tenant_id, c.as_of, c.kpi) as sorted offset 0) s
  ),
  found as (
    select m.tenant_id, m.as_of, m.kpi, m.value, m.n, m.median, s.mad, m.threshold, z.score
    from medians m
    cross join lateral (
      select round((d.deviations[(m.n + 1) / 2] + d.deviations[(m.n + 2) / 2]) / 2, 4) as mad, d.mean_ad
      from (select array_agg(abs(v - m.median) order by abs(v - m.median)) as deviations, avg(abs(v - m.median)) as mean_ad
            from unnest(m.sorted) as v) d
    ) s
    -- Iglewicz & Hoaglin: 0.6745 (x − median) / MAD; with MAD 0, the mean absolute deviation
    -- scaled to match (1.253314); with no spread at all, any difference is infinite.
    cross join lateral (
      select case when s.mad > 0 then 0.6745 * (m.value - m.median) / s.mad
                  when s.mean_ad > 0 then (m.value - m.median) / (1.253314 * s.mean_ad)
                  when m.value > m.median then 'Infinity'::numeric
                  when m.value < m.median then '-Infinity'::numeric
                  else 0 end as score
    ) z
    where abs(m.value - m.median) >= greatest(m.min_delta, m.min_delta_of_median * abs(m.median))
      and abs(z.score) > m.threshold
  ),
  -- The anomalies there are for the re-scored weeks, of this kind of KPI.
  existing as materialized (
    select a.tenant_id, a.as_of, a.kpi
    from given g
    join kpi.kpi_anomalies a on a.tenant_id = g.tenant_id and a.as_of >= g.first_week and a.as_of <= g.last_week + 84
    where (a.kpi = any (kpi.built_in_kpis())) = $3
  ),
  -- Whether each anomaly found is news: new, or its value, baseline, score or direction moved. One
  -- that only met another threshold (a rule changed, the same anomaly still) is updated quietly:
  -- no new alert, and detected_at stays.
  judged as (
    select f.*, case when f.value > f.median then 'up' else 'down' end as direction,
           a.tenant_id is null
             or (a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction)
                is distinct from (f.value, f.median, f.mad, f.n, f.score::float8, case when f.value > f.median then 'up' else 'down' end)
             as news
    from found f
    left join kpi.kpi_anomalies a on a.tenant_id = f.tenant_id and a.as_of = f.as_of and a.kpi = f.kpi
  ),
  upserted as (
    insert into kpi.kpi_anomalies as a (tenant_id, as_of, kpi, value, baseline_median, baseline_mad, baseline_weeks,
                                        score, direction, threshold, run_id)
    select j.tenant_id, j.as_of, j.kpi, j.value, j.median, j.mad, j.n, j.score::float8, j.direction, j.threshold,
           (select max(r.id) from kpi.kpi_runs r where r.backend_pid = pg_backend_pid() and r.status = 'running')
    from judged j
    order by j.tenant_id, j.as_of, j.kpi
    on conflict (tenant_id, as_of, kpi) do update set
      value = excluded.value, baseline_median = excluded.baseline_median, baseline_mad = excluded.baseline_mad,
      baseline_weeks = excluded.baseline_weeks, score = excluded.score, direction = excluded.direction,
      threshold = excluded.threshold,
      detected_at = case when (a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction)
                              is distinct from (excluded.value, excluded.baseline_median, excluded.baseline_mad,
                                                excluded.baseline_weeks, excluded.score, excluded.direction)
                         then now() else a.detected_at end,
      run_id = excluded.run_id
    where (a.value, a.baseline_median, a.baseline_mad, a.baseline_weeks, a.score, a.direction, a.threshold)
          is distinct from
          (excluded.value, excluded.baseline_median, excluded.baseline_mad, excluded.baseline_weeks, excluded.score,
           excluded.direction, excluded.threshold)
    returning a.tenant_id, a.as_of, a.kpi, a.value, a.baseline_median, a.baseline_mad, a.score, a.direction,
              a.threshold, a.detected_at
  ),
  removed as (
    -- Anomalies of the re-scored weeks that a from-scratch detection would not find (their
    -- alerts go with them: a pending alert about something no longer true is never sent). A
    -- set difference: hashed, whatever the number of anomalies on either side.
    delete from kpi.kpi_anomalies a
    using (select tenant_id, as_of, kpi from existing except select tenant_id, as_of, kpi from judged) gone
    where a.tenant_id = gone.tenant_id and a.as_of = gone.as_of and a.kpi = gone.kpi
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
    join judged j on j.tenant_id = u.tenant_id and j.as_of = u.as_of and j.kpi = u.kpi and j.news
    cross join kpi.alert_settings s
    order by u.tenant_id, u.as_of, u.kpi
    returning 1
  )
  -- (Every data-modifying part runs whether or not it is read.)
  select count(*) from upserted
  $score$
  into changed
  using p_tenant_ids, p_weeks, built_in;
  -- For the run result: how many anomalies this transaction's writes inserted or changed.
  perform set_config('kpi.anomalies_changed', (kpi.anomalies_changed() + changed)::text, true);
  return changed;
end
$$;
comment on function kpi.rescore_anomalies(uuid[], date[], text) is
  'Re-scores the given (tenant, week) pairs and the 12 weeks after each, built-in KPIs (p_kpis => ''built_in'', the default) or custom ones (''custom''), so that kpi_anomalies equals a from-scratch detection for them; enqueues an alert per new or changed anomaly. Returns how many anomalies it inserted or changed. Example: select kpi.rescore_anomalies(array[''<tenant uuid>''::uuid], array[''2026-01-05''::date]);';

-- Anomalies inserted or changed so far by this transaction's writes (the runs report the difference).
create or replace function kpi.anomalies_changed() returns integer
language sql stable
set search_path = ''
return coalesce(nullif(current_setting('kpi.anomalies_changed', true), ''), '0')::integer;

-- These tenants' whole histories, both kinds of KPI, in one statement each: the detection from
-- scratch for them.
create or replace function kpi.rescore_tenants_anomalies(p_tenant_ids uuid[]) returns integer
language sql
set search_path = ''
as $$
  -- Each tenant's first and last week: the rescoring covers every week between. No tenant with a
  -- history: nothing to run.
  select coalesce((
    select kpi.rescore_anomalies(x.tenant_ids, x.weeks, 'built_in') + kpi.rescore_anomalies(x.tenant_ids, x.weeks, 'custom')
    from (
      select array_agg(h.tenant_id) as tenant_ids, array_agg(w.as_of) as weeks
      from (select k.tenant_id, min(k.as_of) as first_week, max(k.as_of) as last_week from kpi.kpi_history k
            where k.tenant_id = any (p_tenant_ids) group by k.tenant_id) h
      cross join lateral (values (h.first_week), (h.last_week)) w (as_of)
    ) x
    where x.tenant_ids is not null), 0)
$$;

-- Every tenant's whole history (or one tenant's) in one statement: what a tenant's rule change
-- runs. For every tenant of a large installation, call kpi.run_rescore_anomalies() instead: the
-- same in committed batches.
create or replace function kpi.rescore_all_anomalies(p_tenant_id uuid default null) returns integer
language sql
set search_path = ''
as $$
  select kpi.rescore_tenants_anomalies(case when p_tenant_id is null then (select array_agg(t.id) from kpi.tenants t)
                                            else array[p_tenant_id] end)
$$;
comment on function kpi.rescore_all_anomalies(uuid) is
  'Re-scores every week of one tenant (or of all, in this one transaction): the detection from scratch. Returns how many anomalies it inserted or changed. Example: select kpi.rescore_all_anomalies();';

-- The detection from scratch for every tenant (or one, by slug or id) as long work an operator
-- starts: batches of batch_size tenants, each committed, its progress in the run log (kind
-- rescore) and a NOTICE; a cancel keeps the finished batches, and resume_after (the run's
-- details ->> 'next_tenant') goes on from there.
create or replace procedure kpi.run_rescore_anomalies(tenant text default null, batch_size integer default 500,
                                                      resume_after uuid default null)
language plpgsql
as $$
declare
  run_id bigint;
  only_tenant uuid;
  batch uuid[];
  total bigint;
  done bigint := 0;
  changed bigint := 0;
  batches integer := 0;
  next_tenant uuid := resume_after;
  failed_sqlstate text;
  failed_message text;
begin
  commit;
  if batch_size is null or batch_size < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'batch_size must be at least 1');
  end if;
  if tenant is not null then
    only_tenant := kpi.tenant_id_of(tenant);
  end if;
  run_id := kpi.start_kpi_run('rescore', only_tenant, null, null);
  select count(*) into total from kpi.tenants t
  where (only_tenant is null or t.id = only_tenant) and (resume_after is null or t.id > resume_after);
  update kpi.kpi_runs set total_count = total, ok_count = 0, rows_written = 0,
    details = jsonb_strip_nulls(jsonb_build_object('batch_size', batch_size, 'resumed_after', resume_after))
  where id = run_id;
  commit;
  raise notice 'rescore run %: started, % tenants', run_id, total;
  loop
    select array_agg(s.id order by s.id) into batch
    from (select t.id from kpi.tenants t
          where (only_tenant is null or t.id = only_tenant) and (next_tenant is null or t.id > next_tenant)
          order by t.id limit batch_size) s;
    exit when batch is null;
    begin
      changed := changed + kpi.rescore_tenants_anomalies(batch);
    exception when others then
      failed_sqlstate := sqlstate;
      failed_message := sqlerrm;
    end;
    if failed_sqlstate is not null then
      perform kpi.fail_run(run_id, failed_sqlstate, failed_message);
      update kpi.kpi_runs r set ok_count = done where r.id = run_id;
      commit;
      perform kpi.report_run_outcome(run_id);
    end if;
    done := done + cardinality(batch);
    batches := batches + 1;
    next_tenant := batch[cardinality(batch)];
    update kpi.kpi_runs r set ok_count = done,
      details = r.details || jsonb_build_object('batches', batches, 'next_tenant', next_tenant, 'anomalies_changed', changed)
    where r.id = run_id;
    commit;
    raise notice 'rescore run %: batch % done, % of % tenants, % anomalies changed so far', run_id, batches, done, total, changed;
  end loop;
  update kpi.kpi_runs r set status = 'ok', finished_at = clock_timestamp() where r.id = run_id;
  commit;
  perform kpi.report_run_outcome(run_id);
end
$$;
comment on procedure kpi.run_rescore_anomalies(text, integer, uuid) is
  'Re-scores every tenant''s anomalies (or one tenant''s, by slug or id) in batches of batch_size tenants, each committed with its progress in kpi.kpi_runs (kind rescore) and a NOTICE; a cancel keeps the finished batches, and resume_after => (details ->> ''next_tenant'') of that run goes on. '
  'Call it outside a transaction block. Example: call kpi.run_rescore_anomalies();';

-- ============================================================================================
-- What writes a week gets it scored, in the writing statement's transaction: the fill, a backfill,
-- a hand-made UPDATE. A deleted custom value takes its anomaly along (values go by whole KPIs — a
-- deleted or changed definition — so no other week's score moves).
-- ============================================================================================
create or replace function kpi.score_written_weeks() returns trigger
language plpgsql
-- Definer: a tenant admin's change of a definition rewrites its weeks, and they are scored whoever changed it.
security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    delete from kpi.kpi_anomalies a using old_rows o
    where a.tenant_id = o.tenant_id and a.as_of = o.as_of and not a.kpi = any (kpi.built_in_kpis());
  else
    perform kpi.rescore_anomalies(array_agg(w.tenant_id), array_agg(w.as_of), tg_argv[0]) from new_rows w having count(*) > 0;
  end if;
  return null;
end
$$;
create or replace trigger kpi_history_scored_insert after insert on kpi.kpi_history
  referencing new table as new_rows for each statement execute function kpi.score_written_weeks('built_in');
create or replace trigger kpi_history_scored_update after update on kpi.kpi_history
  referencing new table as new_rows for each statement execute function kpi.score_written_weeks('built_in');
create or replace trigger custom_kpi_weeks_scored_insert after insert on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.score_written_weeks('custom');
create or replace trigger custom_kpi_weeks_scored_update after update on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.score_written_weeks('custom');
create or replace trigger custom_kpi_weeks_scored_delete after delete on kpi.custom_kpi_weeks
  referencing old table as old_rows for each statement execute function kpi.score_written_weeks('custom');

-- A rule changed: re-score the tenants it applies to, so the anomalies stay what the rules say.
-- An UPDATE that changes nothing re-scores nothing. A default's change re-scores every tenant in
-- the changing statement; with `set local kpi.rescore = 'deferred'` it leaves that to
-- `call kpi.run_rescore_anomalies()` after the commit (batches, progress, resumable) — until then
-- the anomalies follow the old rule.
create or replace function kpi.rescore_after_rule_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- (PL/pgSQL plans each statement when it first runs it, so each branch may name only the
  -- transition tables its event has.)
  if tg_table_name = 'anomaly_rules' then
    if tg_op = 'UPDATE' and not exists (select * from changed_new except select * from changed_old) then
      return null;
    end if;
    if current_setting('kpi.rescore', true) = 'deferred' then
      raise notice 'kpi-history: anomaly rules changed; the anomalies follow the old rules until: call kpi.run_rescore_anomalies();';
      return null;
    end if;
    perform kpi.rescore_all_anomalies();
  elsif tg_op = 'INSERT' then
    perform kpi.rescore_tenants_anomalies(array(select distinct tenant_id from changed_new));
  elsif tg_op = 'DELETE' then
    perform kpi.rescore_tenants_anomalies(array(select distinct tenant_id from changed_old));
  else
    perform kpi.rescore_tenants_anomalies(array(
      select x.tenant_id from (select * from changed_new except select * from changed_old) x
      union
      select x.tenant_id from (select * from changed_old except select * from changed_new) x));
  end if;
  return null;
end
$$;
create or replace trigger anomaly_rules_rescore_insert after insert on kpi.anomaly_rules
  referencing new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create or replace trigger anomaly_rules_rescore_update after update on kpi.anomaly_rules
  referencing old table as changed_old new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create or replace trigger tenant_anomaly_rules_rescore_insert after insert on kpi.tenant_anomaly_rules
  referencing new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create or replace trigger tenant_anomaly_rules_rescore_update after update on kpi.tenant_anomaly_rules
  referencing old table as changed_old new table as changed_new for each statement execute function kpi.rescore_after_rule_change();
create or replace trigger tenant_anomaly_rules_rescore_delete after delete on kpi.tenant_anomaly_rules
  referencing old table as changed_old for each statement execute function kpi.rescore_after_rule_change();

-- ============================================================================================
-- The alert outbox wakes its workers as soon as alerts are enqueued (they also poll).
-- ============================================================================================
create or replace function kpi.notify_alert_workers() returns trigger
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
create or replace trigger alerts_notify after insert on kpi.alerts
  referencing new table as new_alerts for each statement execute function kpi.notify_alert_workers();
