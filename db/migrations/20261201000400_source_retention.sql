-- migrate:up

-- ============================================================================================
-- Source retention per tenant plan
-- ============================================================================================
-- KPI history is kept forever; the source reports behind it are kept as long as the tenant's plan
-- says. Deleting expired sources never changes the history: a week whose sources may be gone is
-- never recomputed (see kpi.source_horizon), and the rows the history still needs are kept.

create table kpi.plans (
  plan text primary key constraint plans_name_format check (plan ~ '^[a-z][a-z0-9_-]{0,39}$'),
  -- NULL: sources are kept forever.
  source_retention_days integer constraint plans_source_retention_positive check (source_retention_days > 0),
  description text not null
);
comment on table kpi.plans is 'Tenant plans and how long each keeps its source reports (NULL days: forever). Editable data.';
alter table kpi.plans enable row level security;
alter table kpi.plans force row level security;
do $$ begin
  execute format('create policy "plans are maintained by their owner" on kpi.plans for all to %I using (true) with check (true)', current_user);
end $$;
insert into kpi.plans (plan, source_retention_days, description) values
  ('free', 90, 'Source reports kept 90 days'),
  ('pro', 400, 'Source reports kept 400 days'),
  ('enterprise', null, 'Source reports kept forever');

-- Existing and new tenants start on `enterprise`: nothing is deleted until someone puts a tenant
-- on a plan with a retention (an upgrade must never delete data by default).
alter table kpi.tenants
  add column plan text not null default 'enterprise' constraint tenants_plan_fkey references kpi.plans (plan) on update cascade,
  add column source_retention_days integer constraint tenants_source_retention_positive check (source_retention_days > 0),
  add column sources_purged_before timestamptz;
comment on column kpi.tenants.plan is 'The tenant''s plan: how long its source reports are kept (kpi.plans).';
comment on column kpi.tenants.source_retention_days is 'Overrides the plan''s source retention for this tenant (days); NULL: the plan''s.';
comment on column kpi.tenants.sources_purged_before is
  'Sources older than this may have been deleted under an earlier, shorter retention: history weeks ending before it are never recomputed.';

insert into kpi.table_distribution (table_name, placement, why)
values ('plans', 'reference', 'small lookup table: every tenant row points at one');

-- The tenant's retention in days, NULL = forever.
create function kpi.source_retention_days(tenant_override integer, plan text) returns integer
language sql stable
set search_path = ''
return coalesce(tenant_override, (select p.source_retention_days from kpi.plans p where p.plan = source_retention_days.plan));

-- When the last source cleanup started: what it deleted is older than this minus each tenant's
-- retention. Kept here, not in the run log, which is itself pruned after 90 days.
create table kpi.retention_state (
  singleton boolean primary key default true constraint retention_state_one_row check (singleton),
  last_cleanup_as_of timestamptz
);
comment on table kpi.retention_state is 'When the last source cleanup started (one row): the fill''s horizon follows from it.';
alter table kpi.retention_state enable row level security;
alter table kpi.retention_state force row level security;
do $$ begin
  execute format('create policy "retention_state is maintained by its owner" on kpi.retention_state for all to %I using (true) with check (true)', current_user);
end $$;
insert into kpi.retention_state default values;
insert into kpi.table_distribution (table_name, placement, why)
values ('retention_state', 'reference', 'one row every node''s fill reads');

-- Before this instant a tenant's sources may be gone, so the history of weeks that end at or
-- before it is final: the later of what the last cleanup may have deleted under the current
-- retention, and the horizon an earlier, shorter retention left. -infinity: nothing was deleted.
-- Until the first cleanup, every week can still be computed from intact sources.
-- (No SET clause: the fill calls it once per tenant, and only a function without one is inlined.)
create function kpi.source_horizon(retention_days integer, purged_before timestamptz, last_cleanup timestamptz)
returns timestamptz
language sql immutable parallel safe
return greatest(coalesce(purged_before, '-infinity'::timestamptz),
                coalesce(last_cleanup - make_interval(days => retention_days), '-infinity'::timestamptz));

-- When a tenant's retention gets longer (another plan, an override), the sources an earlier,
-- shorter one may have deleted stay deleted: keep its cutoff as the tenant's horizon.
create function kpi.keep_source_horizon() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  old_days integer := kpi.source_retention_days(old.source_retention_days, old.plan);
begin
  if old_days is not null then
    new.sources_purged_before := greatest(old.sources_purged_before, now() - make_interval(days => old_days));
  end if;
  return new;
end
$$;
create trigger tenants_keep_source_horizon before update of plan, source_retention_days on kpi.tenants
  for each row when (old.plan is distinct from new.plan or old.source_retention_days is distinct from new.source_retention_days)
  execute function kpi.keep_source_horizon();

-- The same when a plan's retention changes, for every tenant on it without an override.
create function kpi.keep_plan_source_horizon() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  update kpi.tenants t
  set sources_purged_before = greatest(t.sources_purged_before, now() - make_interval(days => o.source_retention_days))
  from old_plans o join new_plans n on n.plan = o.plan
  where t.plan = o.plan and t.source_retention_days is null
    and o.source_retention_days is not null
    and o.source_retention_days is distinct from n.source_retention_days;
  return null;
end
$$;
create trigger plans_keep_source_horizon after update on kpi.plans
  referencing old table as old_plans new table as new_plans for each statement
  execute function kpi.keep_plan_source_horizon();

-- ============================================================================================
-- The fill never recomputes a week whose sources may be gone
-- ============================================================================================
-- As before (20261130000400), with the tenant's source horizon: weeks ending at or before it are
-- counted in "weeks_kept" and left as they are. Everything else is unchanged.
create or replace function kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean)
returns jsonb
language plpgsql volatile
set search_path = ''
set plan_cache_mode = force_custom_plan
set enable_memoize = off
set jit = off
as $$
declare
  stats jsonb;
begin
  with avi as (
    -- Every tenant with its latest report, or NULLs when it has none (those are reported).
    select t.id as tenant_id, t.slug, latest.week_start, latest.aiv_pct, latest.ati_pct, latest.crs_pct,
           latest.elasticity_usd_per_point,
           kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days), t.sources_purged_before,
                              rs.last_cleanup_as_of) as horizon
    from kpi.tenants t
    join kpi.plans p on p.plan = t.plan
    cross join kpi.retention_state rs
    left join lateral (
      select r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
      from kpi.avi_reports r
      where r.tenant_id = t.id
      order by r.week_start desc
      limit 1
    ) latest on true
    where p_latest_only and (p_tenant_id is null or t.id = p_tenant_id)
    union all
    select r.tenant_id, null, r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point,
           kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days), t.sources_purged_before,
                              rs.last_cleanup_as_of)
    from kpi.avi_reports r
    join kpi.tenants t on t.id = r.tenant_id
    join kpi.plans p on p.plan = t.plan
    cross join kpi.retention_state rs
    where not p_latest_only
      and (p_tenant_id is null or r.tenant_id = p_tenant_id)
      and r.week_start >= coalesce(p_from, '-infinity'::date)
      and r.week_start <= coalesce(p_to, 'infinity'::date)
  ),
  computed as materialized (
    select a.tenant_id,
           a.week_start as as_of,
           a.aiv_pct, a.ati_pct, a.crs_pct, a.elasticity_usd_per_point,
           coalesce(vli.integrity_pct, 100) as vli_integrity_pct,
           vli.integrity_pct is null as vli_is_fallback,
           kpi.hrp_pct(clarity.hrp) as hrp_pct,
           kpi.hrp_is_invalid(clarity.hrp) as hrp_is_invalid,
           clarity.hrp,
           clarity.measured_at
    from avi a
    left join lateral (
      select v.integrity_pct
      from kpi.vli_audits v
      where v.tenant_id = a.tenant_id and v.audited_at < kpi.week_end(a.week_start)
      order by v.audited_at desc, v.id desc
      limit 1
    ) vli on true
    left join lateral (
      select c.hrp, c.measured_at
      from kpi.clarity_reports c
      where c.tenant_id = a.tenant_id and c.measured_at < kpi.week_end(a.week_start)
      order by c.measured_at desc, c.id desc
      limit 1
    ) clarity on true
    where a.week_start is not null and kpi.week_end(a.week_start) > a.horizon
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
    returning 1
  )
  select jsonb_build_object(
           -- A tenant whose latest week is final (kept by retention) counts as ok: its row stands.
           'ok', case when p_latest_only then (select count(*) from avi where week_start is not null)
                      else (select count(distinct tenant_id) from avi where week_start is not null) end,
           'total', case when p_latest_only then (select count(*) from avi)
                         else (select count(distinct tenant_id) from avi) end,
           'weeks', (select count(*) from computed),
           -- History weeks left as they are because their sources are (or may be) gone: the
           -- latest week of a tenant that stopped reporting long ago, or, for a backfill, every
           -- history week in the range that ends at or before its tenant's horizon.
           'weeks_kept', case when p_latest_only
             then (select count(*) from avi where week_start is not null and kpi.week_end(week_start) <= horizon)
             else (select count(*)
                   from kpi.tenants t
                   join kpi.plans p on p.plan = t.plan
                   cross join kpi.retention_state rs
                   cross join lateral (select kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days),
                                                                 t.sources_purged_before, rs.last_cleanup_as_of) as horizon) x
                   join kpi.kpi_history h on h.tenant_id = t.id
                    and h.as_of >= coalesce(p_from, '-infinity'::date) and h.as_of <= coalesce(p_to, 'infinity'::date)
                    and kpi.week_end(h.as_of) <= x.horizon
                   where (p_tenant_id is null or t.id = p_tenant_id) and x.horizon > '-infinity'::timestamptz) end,
           'rows_written', (select count(*) from written),
           'as_of', (select max(week_start) from avi),
           'no_avi', coalesce((
             select jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'slug', slug) order by tenant_id)
             from avi where week_start is null), '[]'::jsonb),
           'warnings', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', tenant_id,
                      'as_of', as_of,
                      'code', 'INVALID_CLARITY',
                      'message', format('clarity report measured at %s has hrp %s; expected a number from 0 to 1, so hrp_pct is NULL',
                                        to_char(measured_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), hrp::text))
                    order by tenant_id, as_of)
             from computed where hrp_is_invalid), '[]'::jsonb))
  into stats;
  return stats;
end
$$;

-- ============================================================================================
-- The cleanup: expired sources, in short batches
-- ============================================================================================
alter table kpi.kpi_runs drop constraint kpi_runs_kind,
  add constraint kpi_runs_kind check (kind in ('fill', 'fill_all', 'backfill', 'cleanup'));
alter table kpi.kpi_runs add column details jsonb;
comment on column kpi.kpi_runs.details is
  'What a run did beyond the counts: for a cleanup, the source rows deleted per table, the batches and the longest batch.';

-- One batch: deletes at most `batch_size` expired rows of one source table, as of `as_of`, among
-- at most `batch_size` tenants from `from_tenant` on (in id order), so that a batch is short
-- whether it finds much or nothing. Returns how many rows went and where the next batch starts
-- (NULL: this source is done): the same tenant when the row limit cut it short, else the tenant
-- after the slice. A cleanup walks the tenants once, whatever their number. Expired: older
-- than the tenant's retention. Kept whatever their age: the tenant's latest AVI report (the daily
-- fill's week), and of audits and clarity reports the newest one before the cutoff (still in
-- effect at the cutoff, so every week ending after it keeps its inputs; for a tenant audited once
-- two years ago, that audit).
create function kpi.delete_expired_sources(source text, as_of timestamptz, from_tenant uuid, batch_size integer,
                                           out deleted bigint, out next_tenant uuid)
language plpgsql volatile
set search_path = ''
as $$
declare
  last_deleted uuid;
  slice_end uuid;
  slice_size integer;
begin
  select max(s.id::text collate "C")::uuid, count(*) into slice_end, slice_size
  from (select t.id from kpi.tenants t where t.id >= from_tenant order by t.id limit batch_size) s;
  -- What goes here only ever fed weeks that are final: no change to track (the change-tracking
  -- triggers, a later migration, read this setting).
  perform set_config('kpi.tracking', 'off', true);
  if source = 'avi_reports' then
    with expired as (
      select r.tenant_id, r.week_start
      from kpi.tenants t
      join kpi.plans p on p.plan = t.plan
      cross join lateral (select ((as_of - make_interval(days => coalesce(t.source_retention_days, p.source_retention_days)))
                                  at time zone 'UTC')::date - 7 as last_week) c
      cross join lateral (
        select r.tenant_id, r.week_start from kpi.avi_reports r
        where r.tenant_id = t.id and r.week_start <= c.last_week
          and r.week_start < (select l.week_start from kpi.avi_reports l where l.tenant_id = t.id order by l.week_start desc limit 1)
      ) r
      where t.id >= from_tenant and t.id <= slice_end and c.last_week is not null
      order by t.id
      limit batch_size
    ), gone as (
      delete from kpi.avi_reports d using expired e where d.tenant_id = e.tenant_id and d.week_start = e.week_start returning d.tenant_id
    )
    select count(*), max(g.tenant_id::text collate "C")::uuid into deleted, last_deleted from gone g;
  elsif source = 'vli_audits' then
    with expired as (
      select v.tenant_id, v.audited_at, v.id
      from kpi.tenants t
      join kpi.plans p on p.plan = t.plan
      cross join lateral (select as_of - make_interval(days => coalesce(t.source_retention_days, p.source_retention_days)) as cutoff) c
      cross join lateral (
        select k.audited_at, k.id from kpi.vli_audits k
        where k.tenant_id = t.id and k.audited_at < c.cutoff
        order by k.audited_at desc, k.id desc limit 1) kept
      cross join lateral (
        select v.tenant_id, v.audited_at, v.id from kpi.vli_audits v
        where v.tenant_id = t.id and (v.audited_at, v.id) < (kept.audited_at, kept.id)) v
      where t.id >= from_tenant and t.id <= slice_end and c.cutoff is not null
      order by t.id
      limit batch_size
    ), gone as (
      delete from kpi.vli_audits d using expired e
      where d.tenant_id = e.tenant_id and d.audited_at = e.audited_at and d.id = e.id returning d.tenant_id
    )
    select count(*), max(g.tenant_id::text collate "C")::uuid into deleted, last_deleted from gone g;
  elsif source = 'clarity_reports' then
    with expired as (
      select x.tenant_id, x.measured_at, x.id
      from kpi.tenants t
      join kpi.plans p on p.plan = t.plan
      cross join lateral (select as_of - make_interval(days => coalesce(t.source_retention_days, p.source_retention_days)) as cutoff) c
      cross join lateral (
        select k.measured_at, k.id from kpi.clarity_reports k
        where k.tenant_id = t.id and k.measured_at < c.cutoff
        order by k.measured_at desc, k.id desc limit 1) kept
      cross join lateral (
        select x.tenant_id, x.measured_at, x.id from kpi.clarity_reports x
        where x.tenant_id = t.id and (x.measured_at, x.id) < (kept.measured_at, kept.id)) x
      where t.id >= from_tenant and t.id <= slice_end and c.cutoff is not null
      order by t.id
      limit batch_size
    ), gone as (
      delete from kpi.clarity_reports d using expired e
      where d.tenant_id = e.tenant_id and d.measured_at = e.measured_at and d.id = e.id returning d.tenant_id
    )
    select count(*), max(g.tenant_id::text collate "C")::uuid into deleted, last_deleted from gone g;
  else
    raise exception 'kpi.delete_expired_sources: unknown source table %', source;
  end if;
  next_tenant := case
    when deleted >= batch_size then last_deleted
    when slice_size >= batch_size then (select t.id from kpi.tenants t where t.id > slice_end order by t.id limit 1)
  end;
end
$$;

-- The daily cleanup. Each batch is its own transaction, so no batch holds its locks longer than
-- it takes to delete `batch_size` rows (measured by npm run bench; the run log keeps the longest).
-- Like the daily fill, it commits its run as `running` first and refuses a transaction block.
create procedure kpi.run_source_cleanup(batch_size integer default 1000)
language plpgsql
as $$
declare
  run_id bigint;
  as_of timestamptz;
  source text;
  deleted bigint;
  from_tenant uuid;
  started timestamptz;
  batch_ms numeric;
  counts jsonb := '{"avi_reports": 0, "vli_audits": 0, "clarity_reports": 0}';
  batches integer := 0;
  longest_ms numeric := 0;
  total_ms numeric := 0;
begin
  commit;
  if batch_size is null or batch_size < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'batch_size must be at least 1');
  end if;
  run_id := kpi.start_kpi_run('cleanup', null, null, null);
  as_of := now();
  -- Committed before the first row goes: from now on no fill recomputes a week that may lose them.
  update kpi.retention_state set last_cleanup_as_of = as_of;
  commit;
  foreach source in array array['avi_reports', 'vli_audits', 'clarity_reports'] loop
    from_tenant := '00000000-0000-0000-0000-000000000000';
    while from_tenant is not null loop
      started := clock_timestamp();
      select d.deleted, d.next_tenant into deleted, from_tenant
      from kpi.delete_expired_sources(source, as_of, from_tenant, batch_size) d;
      batch_ms := round(extract(epoch from clock_timestamp() - started) * 1000, 3);
      batches := batches + 1;
      longest_ms := greatest(longest_ms, batch_ms);
      total_ms := total_ms + batch_ms;
      counts := jsonb_set(counts, array[source], to_jsonb((counts ->> source)::bigint + deleted));
      -- Progress, committed with the batch: the log shows how far a cleanup got.
      update kpi.kpi_runs r
      set details = jsonb_build_object('deleted', counts, 'batches', batches, 'longest_batch_ms', longest_ms,
                                       'total_batch_ms', total_ms, 'batch_size', batch_size, 'as_of', kpi.utc_iso(as_of)),
          rows_written = (select sum(value::bigint) from jsonb_each_text(counts))
      where r.id = run_id;
      commit;
    end loop;
  end loop;
  update kpi.kpi_runs r set status = 'ok', finished_at = clock_timestamp() where r.id = run_id;
  commit;
end
$$;
comment on procedure kpi.run_source_cleanup(integer) is
  'Deletes source reports older than each tenant''s retention (plan or override), in batches of batch_size rows, each its own transaction; never the rows the history still needs. Logged in kpi.kpi_runs (kind cleanup, details.deleted). Run daily by pg_cron. Example: call kpi.run_source_cleanup();';

do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('kpi-history-retention', '45 4 * * *', 'call kpi.run_source_cleanup()');
  end if;
end
$$;

-- migrate:down
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.unschedule(jobid) from cron.job where jobname = 'kpi-history-retention';
  end if;
end
$$;
drop procedure kpi.run_source_cleanup(integer);
drop function kpi.delete_expired_sources(text, timestamptz, uuid, integer);
delete from kpi.kpi_runs where kind = 'cleanup';
alter table kpi.kpi_runs drop column details;
alter table kpi.kpi_runs drop constraint kpi_runs_kind,
  add constraint kpi_runs_kind check (kind in ('fill', 'fill_all', 'backfill'));
-- The fill as it was (20261130000400), without the source horizon.
create or replace function kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean)
returns jsonb
language plpgsql volatile
set search_path = ''
set plan_cache_mode = force_custom_plan
set enable_memoize = off
set jit = off
as $$
declare
  stats jsonb;
begin
  with avi as (
    select t.id as tenant_id, t.slug, latest.week_start, latest.aiv_pct, latest.ati_pct, latest.crs_pct,
           latest.elasticity_usd_per_point
    from kpi.tenants t
    left join lateral (
      select r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
      from kpi.avi_reports r where r.tenant_id = t.id order by r.week_start desc limit 1
    ) latest on true
    where p_latest_only and (p_tenant_id is null or t.id = p_tenant_id)
    union all
    select r.tenant_id, null, r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
    from kpi.avi_reports r
    where not p_latest_only
      and (p_tenant_id is null or r.tenant_id = p_tenant_id)
      and r.week_start >= coalesce(p_from, '-infinity'::date)
      and r.week_start <= coalesce(p_to, 'infinity'::date)
  ),
  computed as materialized (
    select a.tenant_id, a.week_start as as_of, a.aiv_pct, a.ati_pct, a.crs_pct, a.elasticity_usd_per_point,
           coalesce(vli.integrity_pct, 100) as vli_integrity_pct, vli.integrity_pct is null as vli_is_fallback,
           kpi.hrp_pct(clarity.hrp) as hrp_pct, kpi.hrp_is_invalid(clarity.hrp) as hrp_is_invalid,
           clarity.hrp, clarity.measured_at
    from avi a
    left join lateral (
      select v.integrity_pct from kpi.vli_audits v
      where v.tenant_id = a.tenant_id and v.audited_at < kpi.week_end(a.week_start)
      order by v.audited_at desc, v.id desc limit 1
    ) vli on true
    left join lateral (
      select c.hrp, c.measured_at from kpi.clarity_reports c
      where c.tenant_id = a.tenant_id and c.measured_at < kpi.week_end(a.week_start)
      order by c.measured_at desc, c.id desc limit 1
    ) clarity on true
    where a.week_start is not null
  ),
  written as (
    insert into kpi.kpi_history as h (
      tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
    select c.tenant_id, c.as_of, c.aiv_pct, c.ati_pct, c.crs_pct, c.elasticity_usd_per_point,
           c.vli_integrity_pct, c.vli_is_fallback, c.hrp_pct
    from computed c
    left join lateral (
      select o.aiv_pct, o.ati_pct, o.crs_pct, o.elasticity_usd_per_point, o.vli_integrity_pct, o.vli_is_fallback, o.hrp_pct
      from kpi.kpi_history o where o.tenant_id = c.tenant_id and o.as_of = c.as_of limit 1
    ) existing on true
    where existing is null
       or (existing.aiv_pct, existing.ati_pct, existing.crs_pct, existing.elasticity_usd_per_point,
           existing.vli_integrity_pct, existing.vli_is_fallback, existing.hrp_pct)
          is distinct from
          (c.aiv_pct, c.ati_pct, c.crs_pct, c.elasticity_usd_per_point, c.vli_integrity_pct, c.vli_is_fallback, c.hrp_pct)
    order by c.tenant_id, c.as_of
    on conflict (tenant_id, as_of) do update set
      aiv_pct = excluded.aiv_pct, ati_pct = excluded.ati_pct, crs_pct = excluded.crs_pct,
      elasticity_usd_per_point = excluded.elasticity_usd_per_point, vli_integrity_pct = excluded.vli_integrity_pct,
      vli_is_fallback = excluded.vli_is_fallback, hrp_pct = excluded.hrp_pct, updated_at = now()
    where (h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point, h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct)
          is distinct from
          (excluded.aiv_pct, excluded.ati_pct, excluded.crs_pct, excluded.elasticity_usd_per_point,
           excluded.vli_integrity_pct, excluded.vli_is_fallback, excluded.hrp_pct)
    returning 1
  )
  select jsonb_build_object(
           'ok', case when p_latest_only then (select count(*) from computed)
                      else (select count(distinct tenant_id) from computed) end,
           'total', case when p_latest_only then (select count(*) from avi)
                         else (select count(distinct tenant_id) from computed) end,
           'weeks', (select count(*) from computed),
           'rows_written', (select count(*) from written),
           'as_of', (select max(as_of) from computed),
           'no_avi', coalesce((
             select jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'slug', slug) order by tenant_id)
             from avi where week_start is null), '[]'::jsonb),
           'warnings', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', tenant_id, 'as_of', as_of, 'code', 'INVALID_CLARITY',
                      'message', format('clarity report measured at %s has hrp %s; expected a number from 0 to 1, so hrp_pct is NULL',
                                        to_char(measured_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), hrp::text))
                    order by tenant_id, as_of)
             from computed where hrp_is_invalid), '[]'::jsonb))
  into stats;
  return stats;
end
$$;
drop trigger plans_keep_source_horizon on kpi.plans;
drop function kpi.keep_plan_source_horizon();
drop trigger tenants_keep_source_horizon on kpi.tenants;
drop function kpi.keep_source_horizon();
drop function kpi.source_horizon(integer, timestamptz, timestamptz);
delete from kpi.table_distribution where table_name = 'retention_state';
drop table kpi.retention_state;
drop function kpi.source_retention_days(integer, text);
delete from kpi.table_distribution where table_name = 'plans';
alter table kpi.tenants drop column sources_purged_before, drop column source_retention_days, drop column plan;
drop table kpi.plans;
