-- The sources (AVI reports, VLI audits, clarity reports): what a value in them means, which weeks a
-- write to them makes stale, and from when on retention may have deleted them.

-- ============================================================================================
-- HRP: clarity's metrics->'hrp', a JSON number from 0 to 1
-- ============================================================================================

-- In percent, else NULL. (Nested CASE: the cast must not be reached for a string, and AND does not
-- promise an order.)
create or replace function kpi.hrp_pct(hrp jsonb) returns numeric
language sql immutable parallel safe
return case when jsonb_typeof(hrp) = 'number'
            then case when hrp::numeric between 0 and 1 then round(hrp::numeric * 100, 2) end
       end;

-- A present HRP that is not usable (a string, a boolean, out of range…). Absent or JSON null is
-- merely missing and warns nobody.
create or replace function kpi.hrp_is_invalid(hrp jsonb) returns boolean
language sql immutable parallel safe
return coalesce(jsonb_typeof(hrp), 'null') <> 'null' and kpi.hrp_pct(hrp) is null;

-- ============================================================================================
-- Change tracking: a write to the sources records which tenants' history became stale, from which
-- week on, in the same transaction; the daily fill reads only those (an invalidation log, as
-- TimescaleDB's continuous aggregates keep one). The weekly full run reconciles.
-- ============================================================================================

-- The source cleanup turns tracking off for its transaction (kpi.tracking = off): what it deletes
-- only ever fed weeks that are final.
create or replace function kpi.tracking_is_on() returns boolean
language sql stable
return coalesce(current_setting('kpi.tracking', true), '') <> 'off';

-- One trigger function for the three source tables, statement-level with transition tables: a
-- statement records one row, whatever it wrote — a bulk load of 100,000 reports included — with
-- each tenant it touched once, at its earliest week. TG_ARGV[0] is the week a row changes: an AVI
-- report its own (week_start), an audit or a clarity report the week it falls in, in UTC (and
-- with it every later week).
create or replace function kpi.track_source_changes() returns trigger
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

create or replace trigger avi_reports_track_insert after insert on kpi.avi_reports referencing new table as new_rows
  for each statement execute function kpi.track_source_changes('week_start');
create or replace trigger avi_reports_track_update after update on kpi.avi_reports referencing old table as old_rows new table as new_rows
  for each statement execute function kpi.track_source_changes('week_start');
create or replace trigger avi_reports_track_delete after delete on kpi.avi_reports referencing old table as old_rows
  for each statement execute function kpi.track_source_changes('week_start');
create or replace trigger vli_audits_track_insert after insert on kpi.vli_audits referencing new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', audited_at at time zone 'UTC')::date$$);
create or replace trigger vli_audits_track_update after update on kpi.vli_audits referencing old table as old_rows new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', audited_at at time zone 'UTC')::date$$);
create or replace trigger vli_audits_track_delete after delete on kpi.vli_audits referencing old table as old_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', audited_at at time zone 'UTC')::date$$);
create or replace trigger clarity_reports_track_insert after insert on kpi.clarity_reports referencing new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', measured_at at time zone 'UTC')::date$$);
create or replace trigger clarity_reports_track_update after update on kpi.clarity_reports referencing old table as old_rows new table as new_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', measured_at at time zone 'UTC')::date$$);
create or replace trigger clarity_reports_track_delete after delete on kpi.clarity_reports referencing old table as old_rows
  for each statement execute function kpi.track_source_changes($$date_trunc('week', measured_at at time zone 'UTC')::date$$);

-- Per tenant: the tenants whose history may be stale, from which week on (what the next daily run will read).
create or replace view kpi.stale_tenants as
select c.tenant_id, min(c.from_week) as from_week, count(distinct s.id) as changes, min(s.recorded_at) as since
from kpi.source_changes s
cross join lateral unnest(s.tenant_ids, s.from_weeks) as c (tenant_id, from_week)
where exists (select from kpi.tenants t where t.id = c.tenant_id)
group by c.tenant_id;
comment on view kpi.stale_tenants is 'The tenants whose history may be stale, and from which week: what the next incremental fill reads.';

-- ============================================================================================
-- Retention: from when on a tenant's sources may be gone
-- ============================================================================================
-- Deleting expired sources never changes the history: a week whose sources may be gone is never
-- recomputed, and the rows the history still needs are kept (09_retention.sql).

-- The tenant's retention in days, NULL = forever.
create or replace function kpi.source_retention_days(tenant_override integer, plan text) returns integer
language sql stable
set search_path = ''
return coalesce(tenant_override, (select p.source_retention_days from kpi.plans p where p.plan = source_retention_days.plan));

-- When the last source cleanup started (NULL: never). A function, not a join: the planner knows it
-- is one value, where a join with the one-row kpi.retention_state (too small ever to be analyzed
-- by autovacuum) is estimated at 2,200 rows — enough to make a backfill batch hash every AVI report
-- instead of probing its 1,000 tenants' (measured: 2.4 s a batch instead of 0.07 s at 100,000 tenants).
-- Callers write `(select kpi.last_source_cleanup())`: evaluated once per statement, not per row.
create or replace function kpi.last_source_cleanup() returns timestamptz
language sql stable
return (select rs.last_cleanup_as_of from kpi.retention_state rs);

-- Before this instant a tenant's sources may be gone, so the history of weeks that end at or
-- before it is final: the later of what the last cleanup may have deleted under the current
-- retention, and the horizon an earlier, shorter retention left. -infinity: nothing was deleted.
-- Until the first cleanup, every week can still be computed from intact sources. Stable, not
-- immutable: a timestamptz minus days depends on the time zone, and an immutable function whose
-- body is not is never inlined — it was a function call per tenant in every fill (measured: 0.2 s
-- of the 1.0 s that choosing the weeks of 100,000 tenants takes).
create or replace function kpi.source_horizon(retention_days integer, purged_before timestamptz, last_cleanup timestamptz)
returns timestamptz
language sql stable parallel safe
return greatest(coalesce(purged_before, '-infinity'::timestamptz),
                coalesce(last_cleanup - make_interval(days => retention_days), '-infinity'::timestamptz));

-- When a tenant's retention gets longer (another plan, an override), the sources an earlier,
-- shorter one may have deleted stay deleted: keep its cutoff as the tenant's horizon.
create or replace function kpi.keep_source_horizon() returns trigger
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
create or replace trigger tenants_keep_source_horizon before update of plan, source_retention_days on kpi.tenants
  for each row when (old.plan is distinct from new.plan or old.source_retention_days is distinct from new.source_retention_days)
  execute function kpi.keep_source_horizon();

-- The same when a plan's retention changes, for every tenant on it without an override.
create or replace function kpi.keep_plan_source_horizon() returns trigger
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
create or replace trigger plans_keep_source_horizon after update on kpi.plans
  referencing old table as old_plans new table as new_plans for each statement
  execute function kpi.keep_plan_source_horizon();
