-- migrate:up

-- ============================================================================================
-- Change tracking: writes to the sources record which tenants' history became stale, from which
-- week on, in the same transaction; the daily fill reads only those (an invalidation log, as
-- TimescaleDB's continuous aggregates keep one). A weekly full run reconciles and reports what
-- the tracking would have missed — which should be nothing.
-- ============================================================================================

-- One row per writing statement: the tenants it touched, each with the earliest week whose history
-- may have changed. Append-only: a run reads the rows there are, brings those tenants up to date,
-- and deletes exactly the rows it read, so a change committed while it ran stays for the next.
-- (A row per tenant kept by an upsert costs the write path 1.5× on a bulk load of 100,000
-- reports, measured; one row per statement costs a few per cent.)
create table kpi.source_changes (
  id bigint generated always as identity primary key,
  tenant_ids uuid[] not null,
  from_weeks date[] not null,
  recorded_at timestamptz not null default now(),
  constraint source_changes_same_length check (cardinality(tenant_ids) = cardinality(from_weeks))
);
comment on table kpi.source_changes is
  'What each write to the source tables made stale: its tenants and, for each, the earliest week whose history may have changed. Written by triggers; consumed by the incremental fill. kpi.stale_tenants shows it per tenant.';
alter table kpi.source_changes enable row level security;
alter table kpi.source_changes force row level security;
do $$ begin
  execute format('create policy "source_changes are maintained by their owner" on kpi.source_changes for all to %I using (true) with check (true)', current_user);
end $$;

-- Per tenant: the tenants whose history may be stale, from which week on (what the next daily run will read).
create view kpi.stale_tenants as
select c.tenant_id, min(c.from_week) as from_week, count(distinct s.id) as changes, min(s.recorded_at) as since
from kpi.source_changes s
cross join lateral unnest(s.tenant_ids, s.from_weeks) as c (tenant_id, from_week)
where exists (select from kpi.tenants t where t.id = c.tenant_id)
group by c.tenant_id;
comment on view kpi.stale_tenants is 'The tenants whose history may be stale, and from which week: what the next incremental fill reads.';

-- Tenants without any AVI report: the NO_AVI errors every run reports, read without probing the
-- sources of every tenant.
create table kpi.tenants_without_avi (
  tenant_id uuid primary key
);
comment on table kpi.tenants_without_avi is 'Tenants that have no AVI report (NO_AVI), kept by triggers on kpi.tenants and kpi.avi_reports.';
alter table kpi.tenants_without_avi enable row level security;
alter table kpi.tenants_without_avi force row level security;
do $$ begin
  execute format('create policy "tenants_without_avi are maintained by their owner" on kpi.tenants_without_avi for all to %I using (true) with check (true)', current_user);
end $$;
insert into kpi.tenants_without_avi (tenant_id)
select t.id from kpi.tenants t where not exists (select from kpi.avi_reports r where r.tenant_id = t.id);

-- How many tenants there are, kept by the tenants' triggers: the incremental run reports `total`
-- without counting every tenant, so that a run where nothing changed reads nothing that grows
-- with the tenants.
create table kpi.tenant_count (
  singleton boolean primary key default true constraint tenant_count_one_row check (singleton),
  tenants bigint not null constraint tenant_count_not_negative check (tenants >= 0)
);
comment on table kpi.tenant_count is 'The number of tenants (one row), kept by triggers on kpi.tenants.';
alter table kpi.tenant_count enable row level security;
alter table kpi.tenant_count force row level security;
do $$ begin
  execute format('create policy "tenant_count is maintained by its owner" on kpi.tenant_count for all to %I using (true) with check (true)', current_user);
end $$;
insert into kpi.tenant_count (tenants) select count(*) from kpi.tenants;

insert into kpi.table_distribution (table_name, placement, distribution_column, colocate_with, why) values
  ('tenant_count', 'local', null, null, 'one row the coordinator keeps as tenants come and go'),
  ('source_changes', 'local', null, null, 'the change log: one row per writing statement, many tenants; read by the coordinator''s fill'),
  ('tenants_without_avi', 'distributed', 'tenant_id', 'tenants', 'tenant data');

create function kpi.tracking_is_on() returns boolean
language sql stable
return coalesce(current_setting('kpi.tracking', true), '') <> 'off';

-- One trigger function for the three source tables, statement-level with transition tables: a
-- statement records one row, whatever it wrote — a bulk load of 100,000 reports included — with
-- each tenant it touched once, at its earliest week. TG_ARGV[0] is the week a row changes: an AVI report its own
-- (week_start), an audit or a clarity report the week it falls in, in UTC (and with it every
-- later week). The source cleanup turns tracking off for its transaction (kpi.tracking = off):
-- what it deletes only ever fed weeks that are final.
create function kpi.track_source_changes() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  week text := tg_argv[0];
  -- Old rows may belong to a tenant being deleted (a cascade): that one has no history left to
  -- bring up to date, and no record must outlive it.
  changed text := case tg_op when 'INSERT' then format('select tenant_id, %s as week from new_rows', week)
                             when 'DELETE' then format('select o.tenant_id, %s as week from old_rows o where exists (select from kpi.tenants t where t.id = o.tenant_id)', week)
                             else format('select tenant_id, %1$s as week from new_rows union all select o.tenant_id, %1$s from old_rows o where exists (select from kpi.tenants t where t.id = o.tenant_id)', week) end;
begin
  if not kpi.tracking_is_on() then
    return null;
  end if;
  execute format($q$
    insert into kpi.source_changes (tenant_ids, from_weeks)
    select array_agg(t.tenant_id), array_agg(t.week)
    from (select c.tenant_id, min(c.week) as week from (%s) c group by c.tenant_id) t
    having count(*) > 0$q$,
    changed);
  -- AVI reports also decide who has none (NO_AVI).
  if tg_table_name = 'avi_reports' then
    if tg_op in ('INSERT', 'UPDATE') then
      delete from kpi.tenants_without_avi w where w.tenant_id in (select n.tenant_id from new_rows n);
    end if;
    if tg_op in ('DELETE', 'UPDATE') then
      insert into kpi.tenants_without_avi (tenant_id)
      select distinct o.tenant_id from old_rows o
      where not exists (select from kpi.avi_reports r where r.tenant_id = o.tenant_id)
        and exists (select from kpi.tenants t where t.id = o.tenant_id)
      on conflict do nothing;
    end if;
  end if;
  return null;
end
$$;

create trigger avi_reports_track_insert after insert on kpi.avi_reports referencing new table as new_rows
  for each statement execute function kpi.track_source_changes('week_start');
create trigger avi_reports_track_update after update on kpi.avi_reports referencing old table as old_rows new table as new_rows
  for each statement execute function kpi.track_source_changes('week_start');
create trigger avi_reports_track_delete after delete on kpi.avi_reports referencing old table as old_rows
  for each statement execute function kpi.track_source_changes('week_start');
create trigger vli_audits_track_insert after insert on kpi.vli_audits referencing new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', audited_at at time zone 'UTC')::date$$);
create trigger vli_audits_track_update after update on kpi.vli_audits referencing old table as old_rows new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', audited_at at time zone 'UTC')::date$$);
create trigger vli_audits_track_delete after delete on kpi.vli_audits referencing old table as old_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', audited_at at time zone 'UTC')::date$$);
create trigger clarity_reports_track_insert after insert on kpi.clarity_reports referencing new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', measured_at at time zone 'UTC')::date$$);
create trigger clarity_reports_track_update after update on kpi.clarity_reports referencing old table as old_rows new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', measured_at at time zone 'UTC')::date$$);
create trigger clarity_reports_track_delete after delete on kpi.clarity_reports referencing old table as old_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', measured_at at time zone 'UTC')::date$$);

-- Tenants: a new one has no AVI report yet; a deleted one takes its history (on delete cascade)
-- and its records with it.
create function kpi.track_tenants() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    insert into kpi.tenants_without_avi (tenant_id)
    select n.id from new_tenants n where not exists (select from kpi.avi_reports r where r.tenant_id = n.id)
    on conflict do nothing;
    update kpi.tenant_count set tenants = tenants + (select count(*) from new_tenants);
  elsif tg_op = 'DELETE' then
    -- Its change records name a tenant that no longer exists: the fill skips those.
    delete from kpi.tenants_without_avi w where w.tenant_id in (select o.id from old_tenants o);
    update kpi.tenant_count set tenants = tenants - (select count(*) from old_tenants);
  else
    truncate kpi.tenants_without_avi, kpi.source_changes;
    update kpi.tenant_count set tenants = 0;
  end if;
  return null;
end
$$;
create trigger tenants_track_insert after insert on kpi.tenants referencing new table as new_tenants
  for each statement execute function kpi.track_tenants();
create trigger tenants_track_delete after delete on kpi.tenants referencing old table as old_tenants
  for each statement execute function kpi.track_tenants();
create trigger tenants_track_truncate after truncate on kpi.tenants
  for each statement execute function kpi.track_tenants();


-- ============================================================================================
-- The fill reads the records: incremental by default, full on request
-- ============================================================================================
-- As before (20261201000400), with a third mode, p_stale_only: the recorded tenants' weeks from
-- their earliest stale week on, the records consumed at the end of the same statement.
drop function kpi.write_kpi_history(uuid, date, date, boolean);
create function kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean,
                                      p_stale_only boolean default false)
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
  with consumed as (
    -- The change records there are when this run starts (incremental mode); the same statement
    -- deletes exactly these at the end.
    select s.id, s.tenant_ids, s.from_weeks from kpi.source_changes s where p_stale_only
  ),
  stale as (
    select c.tenant_id, min(c.from_week) as from_week
    from consumed s cross join lateral unnest(s.tenant_ids, s.from_weeks) as c (tenant_id, from_week)
    group by c.tenant_id
  ),
  avi as (
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
    where not p_latest_only and not p_stale_only
      and (p_tenant_id is null or r.tenant_id = p_tenant_id)
      and r.week_start >= coalesce(p_from, '-infinity'::date)
      and r.week_start <= coalesce(p_to, 'infinity'::date)
    union all
    -- Incremental: the recorded tenants' weeks from the earliest one that may have changed.
    select r.tenant_id, null, r.week_start, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point,
           kpi.source_horizon(coalesce(t.source_retention_days, p.source_retention_days), t.sources_purged_before,
                              rs.last_cleanup_as_of)
    from stale s
    join kpi.tenants t on t.id = s.tenant_id
    join kpi.plans p on p.plan = t.plan
    cross join kpi.retention_state rs
    join kpi.avi_reports r on r.tenant_id = s.tenant_id and r.week_start >= s.from_week
    where p_stale_only
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
    returning h.tenant_id, h.as_of
  ),
  removed as (
    -- Only the records this run read: one committed since (or still uncommitted) is another row,
    -- kept for the next run.
    delete from kpi.source_changes s using consumed c where s.id = c.id
    returning 1
  ),
  no_avi as (
    -- NO_AVI: tenants without any report — from the reports themselves when every tenant is
    -- read, else from the list the triggers keep.
    select a.tenant_id, a.slug from avi a where a.week_start is null and p_latest_only
    union all
    -- (The slug by one probe per such tenant: a join would scan every tenant.)
    select w.tenant_id, (select t.slug from kpi.tenants t where t.id = w.tenant_id) from kpi.tenants_without_avi w
    where p_stale_only and p_tenant_id is null
  )
  select jsonb_build_object(
           -- A tenant whose latest week is final (kept by retention) counts as ok: its row stands.
           'ok', case when p_latest_only then (select count(*) from avi where week_start is not null)
                      when p_stale_only then (select c.tenants from kpi.tenant_count c) - (select count(*) from no_avi)
                      else (select count(distinct tenant_id) from avi where week_start is not null) end,
           'total', case when p_latest_only then (select count(*) from avi)
                         when p_stale_only then (select c.tenants from kpi.tenant_count c)
                         else (select count(distinct tenant_id) from avi) end,
           'tenants_considered', case when p_stale_only then (select count(*) from stale s where exists (select from kpi.tenants t where t.id = s.tenant_id))
                                      else (select count(distinct tenant_id) from avi) end,
           'records_consumed', (select count(*) from removed),
           'weeks', (select count(*) from computed),
           -- History weeks left as they are because their sources are (or may be) gone: the
           -- latest week of a tenant that stopped reporting long ago, or, for a backfill, every
           -- history week in the range that ends at or before its tenant's horizon.
           'weeks_kept', case when p_latest_only or p_stale_only
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
           -- In an all-tenant run of every latest week, the first rows written (a full run's
           -- reconciliation reports them: the change records should have covered them).
           'written_sample', case when p_latest_only and p_tenant_id is null then coalesce((
             select jsonb_agg(jsonb_build_object('tenant_id', w.tenant_id, 'as_of', w.as_of) order by w.tenant_id, w.as_of)
             from (select tenant_id, as_of from written order by tenant_id, as_of limit 100) w), '[]'::jsonb) end,
           'as_of', (select max(week_start) from avi),
           'no_avi', coalesce((
             select jsonb_agg(jsonb_build_object('tenant_id', tenant_id, 'slug', slug) order by tenant_id)
             from no_avi), '[]'::jsonb),
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

comment on function kpi.write_kpi_history(uuid, date, date, boolean, boolean) is
  'The one set-based write behind every fill: one tenant or all, the latest week, a range of weeks, or (p_stale_only) the weeks the change records name.';

alter table kpi.kpi_runs add column mode text constraint kpi_runs_mode check (mode in ('incremental', 'full'));
comment on column kpi.kpi_runs.mode is 'For an all-tenant fill: incremental (the recorded changes) or full (every tenant, reconciling).';

-- An all-tenant fill for a run already in the log. Incremental: the recorded changes. Full: the
-- recorded changes, then every tenant's latest week as before change tracking existed; what that
-- second pass still writes, the records missed, and the run says so (warnings, health). Errors
-- undo the whole run, as before.
create function kpi.execute_fill_all(p_run_id bigint, p_full boolean) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
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

drop function kpi.fill_all_kpi_history();
create function kpi.fill_all_kpi_history(full boolean default false) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if not kpi.try_lock_all_tenants(false) then
    return kpi.skipped_run('fill_all', null, null);
  end if;
  return kpi.execute_fill_all(kpi.start_kpi_run('fill_all', null, null, null), coalesce(fill_all_kpi_history.full, false));
end
$$;
comment on function kpi.fill_all_kpi_history(boolean) is
  'Brings every tenant''s history up to date. Incremental (the default): only the tenants whose sources changed, as the change-tracking triggers recorded them. full => true: every tenant''s latest week too, reporting in "corrected" what the records missed (should be 0). Returns {"ok", "total", "tenants_considered", "mode", "rows_written", "errors": [{"tenant_id", "code": "NO_AVI", "message"}], "warnings", "status", "run_id"} (and "corrected" for a full run), or {"skipped": true, …} while another all-tenant run holds the lock. Example: select kpi.fill_all_kpi_history();';

drop procedure kpi.run_scheduled_kpi_fill();
create procedure kpi.run_scheduled_kpi_fill(full boolean default false)
language plpgsql
as $$
declare
  run_id bigint;
  holder jsonb;
begin
  commit;
  run_id := kpi.start_kpi_run('fill_all', null, null, null);
  commit;
  if not kpi.try_lock_all_tenants(false) then
    holder := kpi.all_tenant_lock_holder();
    update kpi.kpi_runs set status = 'skipped', finished_at = clock_timestamp(), lock_holder = holder where id = run_id;
    commit;
    return;
  end if;
  perform kpi.execute_fill_all(run_id, coalesce(run_scheduled_kpi_fill.full, false));
  commit;
end
$$;
comment on procedure kpi.run_scheduled_kpi_fill(boolean) is
  'What pg_cron runs: daily the incremental fill, weekly (full => true) the reconciliation; the run logged as running first. '
  'Call it outside a transaction block (it commits as it goes). Example: call kpi.run_scheduled_kpi_fill();';

-- Health: also degraded when the last full run had to correct rows (the tracking missed a path).
create or replace function kpi_api.health() returns json
language plpgsql stable
security definer
set search_path = ''
as $$
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
$$;

-- Weekly reconciliation, Sundays 05:00 UTC.
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('kpi-history-reconcile', '0 5 * * 0', 'call kpi.run_scheduled_kpi_fill(full => true)');
  end if;
end
$$;

-- Every tenant starts stale from its latest week: the first incremental run does what the daily
-- fill did before change tracking (changes made before this migration were not recorded).
insert into kpi.source_changes (tenant_ids, from_weeks)
select array_agg(l.tenant_id), array_agg(l.week)
from (select r.tenant_id, max(r.week_start) as week from kpi.avi_reports r group by r.tenant_id) l
having count(*) > 0;

notify pgrst, 'reload schema';

-- migrate:down
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.unschedule(jobid) from cron.job where jobname = 'kpi-history-reconcile';
  end if;
end
$$;
create or replace function kpi_api.health() returns json
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  last_run kpi.kpi_runs;
  last_success timestamptz;
  schedule jsonb;
  holder jsonb := kpi.all_tenant_lock_holder();
  reasons text[] := '{}';
begin
  select * into last_run from kpi.kpi_runs
  where kind = 'fill_all' and status <> 'skipped' order by started_at desc, id desc limit 1;
  select max(finished_at) into last_success from kpi.kpi_runs
  where kind = 'fill_all' and status in ('ok', 'partial');

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
$$;

drop procedure kpi.run_scheduled_kpi_fill(boolean);
create procedure kpi.run_scheduled_kpi_fill()
language plpgsql
as $$
declare
  run_id bigint;
  holder jsonb;
begin
  commit;
  run_id := kpi.start_kpi_run('fill_all', null, null, null);
  commit;
  if not kpi.try_lock_all_tenants(false) then
    holder := kpi.all_tenant_lock_holder();
    update kpi.kpi_runs set status = 'skipped', finished_at = clock_timestamp(), lock_holder = holder where id = run_id;
    commit;
    return;
  end if;
  perform kpi.execute_all_tenant_run(run_id, null, null, true);
  commit;
end
$$;

drop function kpi.fill_all_kpi_history(boolean);
create function kpi.fill_all_kpi_history() returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if not kpi.try_lock_all_tenants(false) then
    return kpi.skipped_run('fill_all', null, null);
  end if;
  return kpi.execute_all_tenant_run(kpi.start_kpi_run('fill_all', null, null, null), null, null, true);
end
$$;
drop function kpi.execute_fill_all(bigint, boolean);
alter table kpi.kpi_runs drop column mode;
drop function kpi.write_kpi_history(uuid, date, date, boolean, boolean);
create function kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean)
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

drop trigger tenants_track_truncate on kpi.tenants;
drop trigger tenants_track_delete on kpi.tenants;
drop trigger tenants_track_insert on kpi.tenants;
drop function kpi.track_tenants();
drop trigger clarity_reports_track_delete on kpi.clarity_reports;
drop trigger clarity_reports_track_update on kpi.clarity_reports;
drop trigger clarity_reports_track_insert on kpi.clarity_reports;
drop trigger vli_audits_track_delete on kpi.vli_audits;
drop trigger vli_audits_track_update on kpi.vli_audits;
drop trigger vli_audits_track_insert on kpi.vli_audits;
drop trigger avi_reports_track_delete on kpi.avi_reports;
drop trigger avi_reports_track_update on kpi.avi_reports;
drop trigger avi_reports_track_insert on kpi.avi_reports;
drop function kpi.track_source_changes();
drop function kpi.tracking_is_on();
delete from kpi.table_distribution where table_name in ('source_changes', 'tenants_without_avi', 'tenant_count');
drop table kpi.tenant_count;
drop table kpi.tenants_without_avi;
drop view kpi.stale_tenants;
drop table kpi.source_changes;
notify pgrst, 'reload schema';
