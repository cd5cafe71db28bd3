-- Custom KPIs: a tenant's own weekly numbers next to the built-in ones, defined as data from a
-- closed vocabulary (a source and an aggregate, or a combination of two KPIs) — never SQL text,
-- never an expression the database evaluates. Checked when defined, bounded per tenant, computed
-- set-based by every fill in the transaction that writes the week (07_fill.sql), into
-- kpi.custom_kpi_weeks (one row a week; kpi.custom_kpi_values reads a value per row).

-- ============================================================================================
-- The limits a tenant's definitions stay within (its own data, so a hostile admin's too)
-- ============================================================================================
-- Fixed: what a definition may hold. Settings (kpi.custom_kpi_settings): how many a tenant may
-- have, active and in all. Values: a computed value beyond ±10^15 is stored as NULL with an
-- INVALID_CUSTOM warning, like one outside the definition's own valid range, so that nothing a
-- tenant's data holds (1e400 in a clarity report, a ratio over a tiny number) reaches arithmetic
-- that could fail the run of every tenant.
create or replace function kpi.custom_value_is_storable(value numeric) returns boolean
language sql immutable parallel safe
return value is null or abs(value) <= 1e15;

-- ============================================================================================
-- Checking a definition: what one row says, in a row trigger that reads no table but by an
-- index probe; what the tenant's definitions say together, once per statement over the
-- transition tables. A bulk write of any size costs linear time whatever the table's statistics
-- say (per-row queries planned while the statistics said "empty" made 20,000 definitions in one
-- statement take 74 s instead of 2.5 s).
-- ============================================================================================

-- Inside an HTTP request, only a tenant admin changes definitions (the row-level security policies
-- refuse the others too; this says why, with our code).
create or replace function kpi.refuse_non_admin() returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' and not kpi_api.is_tenant_admin() then
    perform kpi_api.raise_request_error('FORBIDDEN', 'only an admin of the tenant (tenant_roles: "kpi_admin") may change its custom KPIs');
  end if;
end
$$;

-- Every field in turn, each error naming its field. Security definer: the duplicate probe reads the
-- tenant's definitions whoever writes. enable_seqscan off: the probe is an index lookup even when
-- the table's statistics say it is empty.
create or replace function kpi.check_custom_kpi_row() returns trigger
language plpgsql
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  built_in constant text[] := array['aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'];
  operand text;
begin
  perform kpi.refuse_non_admin();
  if tg_op = 'DELETE' then
    return old;
  end if;
  if new.tenant_id is null then
    if coalesce(current_setting('request.method', true), '') <> '' then
      -- Through the API the tenant is the request's (the x-tenant header, or the token's only one).
      new.tenant_id := kpi_api.current_tenant_id();
    else
      perform kpi_api.raise_request_error('INVALID_INPUT', 'tenant_id: required',
                                      'Give the tenant''s id: tenant_id => kpi.tenant_id_of(''<slug>'').');
    end if;
  end if;
  if tg_op = 'UPDATE' and (new.key is distinct from old.key or new.tenant_id is distinct from old.tenant_id) then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'key: cannot be changed; define a new KPI and delete this one');
  end if;
  if new.key is null or new.key !~ '^[a-z][a-z0-9_]{0,39}$' then
    perform kpi_api.raise_request_error('INVALID_INPUT',
      format('key: 1 to 40 lower-case letters, digits or _, starting with a letter (got %s)', coalesce(left(new.key, 60), 'null')));
  end if;
  if new.key = any (built_in) then
    perform kpi_api.raise_request_error('INVALID_INPUT', format('key: %s is a built-in KPI', new.key));
  end if;
  if new.key = 'custom' then
    -- The anomaly rule of every custom KPI is named so.
    perform kpi_api.raise_request_error('INVALID_INPUT', 'key: custom is reserved');
  end if;
  if tg_op = 'INSERT' and exists (select from kpi.custom_kpis d where d.tenant_id = new.tenant_id and d.key = new.key) then
    perform kpi_api.raise_request_error('INVALID_INPUT', format('key: %s is already defined', new.key));
  end if;
  -- Lengths as given, not as trimmed: 'x' and five million spaces is no label.
  if new.label is null or char_length(new.label) > 100 or btrim(new.label) = '' then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'label: required, up to 100 characters');
  end if;
  if char_length(new.unit) > 20 then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'unit: up to 20 characters');
  end if;
  if (new.source is null) = (new.combine is null) then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'source: give either a source (clarity, avi, vli) with an aggregate, or a combine of two KPIs');
  end if;
  if new.source is not null then
    if new.source not in ('clarity', 'avi', 'vli') then
      perform kpi_api.raise_request_error('INVALID_INPUT', format('source: one of clarity, avi, vli (got %s)', left(new.source, 40)));
    end if;
    if new.aggregate is null or new.aggregate not in ('latest', 'avg', 'min', 'max', 'sum', 'count') then
      perform kpi_api.raise_request_error('INVALID_INPUT',
        format('aggregate: one of latest, avg, min, max, sum, count (got %s)', coalesce(left(new.aggregate, 40), 'null')));
    end if;
    if new.source = 'clarity' then
      if new.path is null or cardinality(new.path) not between 1 and 8 or array_position(new.path, null) is not null
         or array_position(new.path, '') is not null
         or exists (select from unnest(new.path) k where char_length(k) > 64) then
        perform kpi_api.raise_request_error('INVALID_INPUT',
          'path: for source clarity, a list of 1 to 8 non-empty keys of up to 64 characters into metrics, e.g. ["latency", "p95_ms"]');
      end if;
      if new.field is not null then
        perform kpi_api.raise_request_error('INVALID_INPUT', 'field: only for sources avi and vli (clarity takes a path)');
      end if;
    else
      if new.path is not null then
        perform kpi_api.raise_request_error('INVALID_INPUT', 'path: only for source clarity');
      end if;
      if new.source = 'avi' and (new.field is null or new.field not in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point')) then
        perform kpi_api.raise_request_error('INVALID_INPUT',
          format('field: for source avi, one of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point (got %s)', coalesce(left(new.field, 40), 'null')));
      end if;
      if new.source = 'vli' and new.field is distinct from 'integrity_pct' then
        perform kpi_api.raise_request_error('INVALID_INPUT', format('field: for source vli, integrity_pct (got %s)', coalesce(left(new.field, 40), 'null')));
      end if;
    end if;
  else
    if new.combine not in ('difference', 'ratio') then
      perform kpi_api.raise_request_error('INVALID_INPUT', format('combine: difference or ratio (got %s)', left(new.combine, 40)));
    end if;
    if new.aggregate is not null or new.path is not null or new.field is not null then
      perform kpi_api.raise_request_error('INVALID_INPUT', 'aggregate: a combine takes no aggregate, path or field: its operands are weekly KPIs already');
    end if;
    foreach operand in array array[new.left_kpi, new.right_kpi] loop
      if operand is null then
        perform kpi_api.raise_request_error('INVALID_INPUT', 'left_kpi: a combine needs left_kpi and right_kpi');
      end if;
      if operand = new.key then
        perform kpi_api.raise_request_error('INVALID_INPUT', format('left_kpi: %s cannot combine itself', new.key));
      end if;
      if char_length(operand) > 40 then
        perform kpi_api.raise_request_error('INVALID_INPUT', format('left_kpi: %s… is no KPI', left(operand, 40)));
      end if;
    end loop;
  end if;
  if new.valid_min > new.valid_max then
    perform kpi_api.raise_request_error('INVALID_INPUT', 'valid_min: greater than valid_max');
  end if;
  if tg_op = 'UPDATE' and (old.source, old.path, old.field, old.aggregate, old.combine, old.left_kpi, old.right_kpi,
                           old.valid_min, old.valid_max, old.active)
                          is distinct from
                          (new.source, new.path, new.field, new.aggregate, new.combine, new.left_kpi, new.right_kpi,
                           new.valid_min, new.valid_max, new.active) then
    -- What the KPI computes changed: its values go, and every week is derived again.
    new.revision := old.revision + 1;
  end if;
  if tg_op = 'UPDATE' then
    -- For the statement's check (kpi.apply_custom_kpi_changes): a definition changed.
    perform set_config('kpi.custom_kpis_changed', 'on', true);
  end if;
  new.updated_at := now();
  return new;
end
$$;

-- The rules over a tenant's definitions together, once per statement: the limits, the operands of
-- combines, the KPIs combines use. Then what changed forgets its values: a new, changed or
-- deactivated definition's values (and those of the combines built on it) and their anomalies go
-- in the same transaction; the next run derives the active ones again over every week. A deleted
-- definition (by an admin, or with its tenant) takes its values along.
create or replace function kpi.apply_custom_kpi_changes() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  settings kpi.custom_kpi_settings;
  grown_tenants uuid[];
  added boolean;
  problem record;
  forgotten record;
begin
  select * into settings from kpi.custom_kpi_settings;
  if tg_op = 'DELETE' then
    -- A KPI that a remaining combine uses stays (delete the combine first).
    select o.key, string_agg(d.key, ', ' order by d.key) as used_by into problem
    from old_rows o
    join kpi.custom_kpis d on d.tenant_id = o.tenant_id and d.combine is not null and o.key in (d.left_kpi, d.right_kpi)
    group by o.tenant_id, o.key
    order by o.tenant_id, o.key
    limit 1;
    if found then
      perform kpi_api.raise_request_error('INVALID_INPUT', format('key: %s is combined in %s; change or delete that first', problem.key, problem.used_by));
    end if;
    for forgotten in select o.tenant_id, array_agg(o.key) as keys from old_rows o group by o.tenant_id loop
      perform kpi.forget_custom_kpi_values(forgotten.tenant_id, forgotten.keys);
    end loop;
    return null;
  end if;

  if tg_op = 'UPDATE' then
    -- Only a statement that changed a definition is checked (the row trigger says so): the fill
    -- marking what it derived, and this function's own marking of combines, are not.
    if coalesce(current_setting('kpi.custom_kpis_changed', true), '') <> 'on' then
      return null;
    end if;
    perform set_config('kpi.custom_kpis_changed', '', true);
  end if;

  -- The tenants whose counts grow: every tenant a definition was added to (added), or where an
  -- update activated one.
  if tg_op = 'INSERT' then
    select array_agg(distinct n.tenant_id), true into grown_tenants, added from new_rows n;
  else
    select array_agg(distinct n.tenant_id), false into grown_tenants, added
    from new_rows n join old_rows o on o.tenant_id = n.tenant_id and o.key = n.key
    where n.active and not o.active;
  end if;

  -- One writer per tenant at a time, so that two concurrent statements cannot both pass a count:
  -- the tenants' rows, locked in id order (a row lock lives in the row, so a bulk definition of
  -- every tenant's KPIs takes no lock-table slot per tenant; NO KEY UPDATE leaves writers of
  -- sources alone).
  perform from kpi.tenants t where t.id = any (grown_tenants) order by t.id for no key update;

  -- The limits, per tenant whose counts grew: what it has after the statement.
  select c.total, c.active into problem
  from unnest(grown_tenants) g (tenant_id)
  cross join lateral (
    select count(*) as total, count(*) filter (where d.active) as active
    from kpi.custom_kpis d where d.tenant_id = g.tenant_id) c
  where (added and c.total > settings.max_per_tenant) or c.active > settings.max_active_per_tenant
  limit 1;
  if found then
    if added and problem.total > settings.max_per_tenant then
      perform kpi_api.raise_request_error('INVALID_INPUT',
        format('key: this tenant would have %s custom KPIs; the limit is %s, active or not (kpi.custom_kpi_settings)',
               problem.total, settings.max_per_tenant));
    end if;
    perform kpi_api.raise_request_error('INVALID_INPUT',
      format('active: this tenant has %s active custom KPIs, the limit (kpi.custom_kpi_settings)', settings.max_active_per_tenant));
  end if;

  -- Each operand of a combine is built in, or an active KPI of the tenant with a source (one
  -- level deep, so no cycles).
  select n.key, x.operand into problem
  from new_rows n
  cross join lateral (values (n.left_kpi), (n.right_kpi)) x (operand)
  where n.combine is not null
    and x.operand not in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct')
    and not exists (select from kpi.custom_kpis d
                    where d.tenant_id = n.tenant_id and d.key = x.operand and d.combine is null and d.active)
  limit 1;
  if found then
    perform kpi_api.raise_request_error('INVALID_INPUT', format(
      'left_kpi: %s is neither a built-in KPI nor an active custom KPI of this tenant with a source (a combine is one level deep)',
      left(problem.operand, 60)));
  end if;

  if tg_op = 'UPDATE' then
    -- A KPI others combine stays an active KPI with a source.
    select n.key, string_agg(d.key, ', ' order by d.key) as used_by into problem
    from new_rows n
    join kpi.custom_kpis d on d.tenant_id = n.tenant_id and d.combine is not null and n.key in (d.left_kpi, d.right_kpi)
                          and d.key <> n.key
    where n.combine is not null or not n.active
    group by n.tenant_id, n.key
    limit 1;
    if found then
      perform kpi_api.raise_request_error('INVALID_INPUT',
        format('combine: %s is combined in %s, so it stays an active KPI with a source', problem.key, problem.used_by));
    end if;
    -- Changed definitions (a new revision) forget their values, and the combines built on them
    -- are derived again.
    for forgotten in
      with changed as (
        select n.tenant_id, n.key from new_rows n join old_rows o on o.tenant_id = n.tenant_id and o.key = n.key
        where n.revision is distinct from o.revision
      ),
      combines as (
        update kpi.custom_kpis d set derived_revision = null
        from changed c
        where d.tenant_id = c.tenant_id and d.combine is not null and c.key in (d.left_kpi, d.right_kpi) and d.key <> c.key
        returning d.tenant_id, d.key
      )
      select k.tenant_id, array_agg(distinct k.key) as keys
      from (select tenant_id, key from changed union all select tenant_id, key from combines) k
      group by k.tenant_id
    loop
      perform kpi.forget_custom_kpi_values(forgotten.tenant_id, forgotten.keys);
    end loop;
  else
    -- A new definition finds no value left under its key by an earlier one.
    for forgotten in select n.tenant_id, array_agg(n.key) as keys from new_rows n group by n.tenant_id loop
      perform kpi.forget_custom_kpi_values(forgotten.tenant_id, forgotten.keys);
    end loop;
  end if;
  return null;
end
$$;

-- Values of the given keys go from every week of the tenant, with their anomalies (a week left
-- without values goes).
create or replace function kpi.forget_custom_kpi_values(p_tenant_id uuid, p_keys text[]) returns void
language sql
set search_path = ''
begin atomic
  delete from kpi.custom_kpi_weeks w where w.tenant_id = p_tenant_id and w.kpi_values - p_keys = '{}'::jsonb;
  update kpi.custom_kpi_weeks w set kpi_values = w.kpi_values - p_keys, updated_at = now()
  where w.tenant_id = p_tenant_id and w.kpi_values ?| p_keys;
  delete from kpi.kpi_anomalies a where a.tenant_id = p_tenant_id and a.kpi = any (p_keys);
end;

create or replace trigger custom_kpis_check_row before insert or delete on kpi.custom_kpis
  for each row execute function kpi.check_custom_kpi_row();
-- An update that changes no definition field (the fill marking what it derived) is not checked:
-- the WHEN clause skips the call.
create or replace trigger custom_kpis_check_row_update before update on kpi.custom_kpis
  for each row
  when ((old.tenant_id, old.key, old.label, old.unit, old.source, old.path, old.field, old.aggregate, old.combine,
         old.left_kpi, old.right_kpi, old.valid_min, old.valid_max, old.active, old.revision)
        is distinct from
        (new.tenant_id, new.key, new.label, new.unit, new.source, new.path, new.field, new.aggregate, new.combine,
         new.left_kpi, new.right_kpi, new.valid_min, new.valid_max, new.active, new.revision))
  execute function kpi.check_custom_kpi_row();
create or replace trigger custom_kpis_apply_insert after insert on kpi.custom_kpis
  referencing new table as new_rows for each statement execute function kpi.apply_custom_kpi_changes();
create or replace trigger custom_kpis_apply_update after update on kpi.custom_kpis
  referencing old table as old_rows new table as new_rows for each statement execute function kpi.apply_custom_kpi_changes();
create or replace trigger custom_kpis_apply_delete after delete on kpi.custom_kpis
  referencing old table as old_rows for each statement execute function kpi.apply_custom_kpi_changes();

-- ============================================================================================
-- Values, read a value per row
-- ============================================================================================
create or replace view kpi.custom_kpi_values with (security_invoker = true) as
select w.tenant_id, e.key, w.as_of, (e.value #>> '{}')::numeric as value, w.updated_at
from kpi.custom_kpi_weeks w
cross join lateral jsonb_each(w.kpi_values) e
-- A key whose definition is gone is never shown (a fill that was writing the week while the
-- definition was deleted may have put it back; the week's next write drops it).
where exists (select from kpi.custom_kpis d where d.tenant_id = w.tenant_id and d.key = e.key and d.active);
comment on view kpi.custom_kpi_values is
  'One value per tenant, week of kpi_history and active custom KPI (NULL: no data that week, or outside the valid range), rounded to 6 decimal places.';

-- ============================================================================================
-- Computing them
-- ============================================================================================

-- The custom values of the given (tenant, week) pairs — every active KPI of the tenant — from the
-- week's sources and its history row, written where the week's values differ. One statement for
-- any number of weeks; everything after the list of weeks is computed within one week (a lateral
-- subquery), so no step joins two large intermediate results and no misestimated row count can
-- make the plan quadratic.
create or replace function kpi.write_custom_kpi_values(p_tenant_ids uuid[], p_weeks date[]) returns jsonb
language plpgsql
set search_path = ''
set plan_cache_mode = 'force_custom_plan'
set jit = 'off'
as $$
declare
  stats jsonb;
begin
  with weeks as (
    select h.tenant_id, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point, h.vli_integrity_pct, h.hrp_pct,
           kpi.week_end(h.as_of - 7) as starts, kpi.week_end(h.as_of) as ends
    from unnest(p_tenant_ids, p_weeks) as w (tenant_id, as_of)
    cross join lateral (
      select h.* from kpi.kpi_history h where h.tenant_id = w.tenant_id and h.as_of = w.as_of
      offset 0 -- an index probe per week, never a hash of the whole history
    ) h
  ),
  computed as materialized (
    select w.tenant_id, w.as_of, m.kpi_values, m.problems
    from weeks w
    cross join lateral (
      -- Source KPIs: the aggregate over the week's rows (Monday 00:00 UTC to the next Monday).
      -- An AVI report is the week's own, one value. A clarity value counts when it is a JSON
      -- number; anything else but a missing key or null is counted as not a number (a warning).
      with sourced as (
        select d.key, d.valid_min, d.valid_max,
               case when d.source = 'avi' then
                      case when d.aggregate = 'count' then 1
                           else case d.field when 'aiv_pct' then w.aiv_pct when 'ati_pct' then w.ati_pct
                                             when 'crs_pct' then w.crs_pct else w.elasticity_usd_per_point end end
                    else a.value end as value,
               coalesce(a.not_numbers, 0) as not_numbers
        from kpi.custom_kpis d
        left join lateral (
          -- (latest: the greatest (time, id, value), arrays compared element by element: the value
          -- of the latest row, with no sort set up for every definition and week, as an ordered
          -- aggregate does; measured 5–10 % of this statement.)
          select case d.aggregate
                   when 'latest' then (max(array[extract(epoch from s.at), s.id, s.value]) filter (where s.value is not null))[3]
                   when 'avg' then avg(s.value)
                   when 'min' then min(s.value)
                   when 'max' then max(s.value)
                   when 'sum' then sum(s.value)
                   else count(s.value) end as value,
                 count(*) filter (where s.not_number) as not_numbers
          from (
            select c.measured_at as at, c.id,
                   case when jsonb_typeof(c.metrics #> d.path) = 'number' then (c.metrics #> d.path)::numeric end as value,
                   coalesce(jsonb_typeof(c.metrics #> d.path) not in ('number', 'null'), false) as not_number
            from kpi.clarity_reports c
            where d.source = 'clarity' and c.tenant_id = w.tenant_id and c.measured_at >= w.starts and c.measured_at < w.ends
            union all
            select v.audited_at, v.id, v.integrity_pct, false
            from kpi.vli_audits v
            where d.source = 'vli' and v.tenant_id = w.tenant_id and v.audited_at >= w.starts and v.audited_at < w.ends
          ) s
        ) a on d.source <> 'avi'
        where d.tenant_id = w.tenant_id and d.active and d.source is not null
      ),
      checked as (
        -- Outside its valid range, or beyond what is stored at all: NULL, with a warning.
        select s.key, s.not_numbers, s.value as computed,
               coalesce(s.value < s.valid_min or s.value > s.valid_max, false) or not kpi.custom_value_is_storable(s.value) as out_of_range
        from sourced s
      ),
      all_values as (
        select c.key, c.computed, c.out_of_range, c.not_numbers from checked c
        union all
        -- Combines: two weekly values, built-in (the history row) or custom (just computed,
        -- after its valid range).
        select d.key, x.value, x.out_of_range, 0
        from kpi.custom_kpis d
        cross join lateral (
          select case d.left_kpi when 'aiv_pct' then w.aiv_pct when 'ati_pct' then w.ati_pct when 'crs_pct' then w.crs_pct
                                 when 'elasticity_usd_per_point' then w.elasticity_usd_per_point
                                 when 'vli_integrity_pct' then w.vli_integrity_pct when 'hrp_pct' then w.hrp_pct
                                 else (select case when not c.out_of_range then c.computed end from checked c where c.key = d.left_kpi) end as left_value,
                 case d.right_kpi when 'aiv_pct' then w.aiv_pct when 'ati_pct' then w.ati_pct when 'crs_pct' then w.crs_pct
                                  when 'elasticity_usd_per_point' then w.elasticity_usd_per_point
                                  when 'vli_integrity_pct' then w.vli_integrity_pct when 'hrp_pct' then w.hrp_pct
                                  else (select case when not c.out_of_range then c.computed end from checked c where c.key = d.right_kpi) end as right_value
          -- (Kept apart: pulled up, each operand's expression was copied into every use of the
          -- value below, sixteen in all; measured on 19,600 weeks: 2.1 s → 1.4–2.0 s.)
          offset 0
        ) o
        cross join lateral (
          select r.value, coalesce(r.value < d.valid_min or r.value > d.valid_max, false) or not kpi.custom_value_is_storable(r.value) as out_of_range
          from (select case d.combine when 'difference' then o.left_value - o.right_value
                                      else o.left_value / nullif(o.right_value, 0) end as value) r
        ) x
        where d.tenant_id = w.tenant_id and d.active and d.combine is not null
      )
      select jsonb_object_agg(v.key, case when v.out_of_range then null else round(v.computed, 6) end) as kpi_values,
             jsonb_agg(jsonb_build_object('kpi', v.key, 'computed', v.computed, 'out_of_range', v.out_of_range, 'not_numbers', v.not_numbers))
               filter (where v.out_of_range or v.not_numbers > 0) as problems
      from all_values v
    ) m
    where m.kpi_values is not null
  ),
  written as (
    insert into kpi.custom_kpi_weeks as cw (tenant_id, as_of, kpi_values)
    select c.tenant_id, c.as_of, c.kpi_values
    from computed c
    -- The week there, by an index probe: unchanged values are neither written nor locked.
    left join lateral (
      select o.kpi_values from kpi.custom_kpi_weeks o where o.tenant_id = c.tenant_id and o.as_of = c.as_of limit 1
    ) existing on true
    where existing is null or existing.kpi_values is distinct from c.kpi_values
    order by c.tenant_id, c.as_of
    on conflict (tenant_id, as_of) do update set kpi_values = excluded.kpi_values, updated_at = now()
    where cw.kpi_values is distinct from excluded.kpi_values
    returning 1
  )
  select jsonb_build_object(
           'values', (select coalesce(sum((select count(*) from jsonb_object_keys(c.kpi_values))), 0) from computed c),
           'rows_written', (select count(*) from written),
           'warnings', coalesce((
             select jsonb_agg(jsonb_build_object(
                      'tenant_id', c.tenant_id, 'as_of', c.as_of, 'code', 'INVALID_CUSTOM', 'kpi', p ->> 'kpi',
                      'message', case when (p ->> 'out_of_range')::boolean
                                      then format('custom KPI %s computed %s, outside its valid range, so it is NULL', p ->> 'kpi',
                                                  left(p ->> 'computed', 40))
                                      else format('custom KPI %s: %s clarity value(s) that week were not numbers and were left out',
                                                  p ->> 'kpi', p ->> 'not_numbers') end)
                    order by c.tenant_id, c.as_of, p ->> 'kpi')
             from computed c cross join lateral jsonb_array_elements(c.problems) p
             where c.problems is not null), '[]'::jsonb))
  into stats;
  return stats;
end
$$;
comment on function kpi.write_custom_kpi_values(uuid[], date[]) is
  'Computes and writes the custom KPI values of the given (tenant, week) pairs that have a history row, every active KPI of the tenant, one kpi.custom_kpi_weeks row per week. Returns {values, rows_written (weeks), warnings}. Called by every fill; idempotent.';

-- Definitions not yet derived (new, changed, re-activated): every history week of their tenants
-- whose sources are still kept (retention). Runs before the run's own weeks are computed, which
-- then find their values written and unchanged.
create or replace function kpi.derive_pending_custom_kpis(p_tenant_id uuid) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  pending_tenants uuid[];
  pending_weeks date[];
  -- The pending definitions with the revision read now.
  derived_keys jsonb;
  stats jsonb;
begin
  select jsonb_agg(jsonb_build_object('tenant_id', d.tenant_id, 'key', d.key, 'revision', d.revision))
  into derived_keys
  from kpi.custom_kpis d
  where d.derived_revision is distinct from d.revision and d.active and (p_tenant_id is null or d.tenant_id = p_tenant_id);
  if derived_keys is null then
    return jsonb_build_object('kpis_derived', 0, 'values', 0, 'rows_written', 0, 'warnings', '[]'::jsonb);
  end if;
  -- Every kept week of the tenants concerned. (Both arrays from one aggregate pass, so that they
  -- stay aligned.)
  select array_agg(h.tenant_id), array_agg(h.as_of)
  into pending_tenants, pending_weeks
  from (select distinct p.tenant_id from jsonb_to_recordset(derived_keys) as p (tenant_id uuid)) p
  join kpi.tenants t on t.id = p.tenant_id
  join kpi.plans pl on pl.plan = t.plan
  join kpi.kpi_history h on h.tenant_id = p.tenant_id
  where kpi.week_end(h.as_of) > kpi.source_horizon(coalesce(t.source_retention_days, pl.source_retention_days),
                                                  t.sources_purged_before, (select kpi.last_source_cleanup()));
  stats := kpi.write_custom_kpi_values(coalesce(pending_tenants, '{}'), coalesce(pending_weeks, '{}'));
  -- Derived as of the revision read at the start: a change committed since stays pending.
  update kpi.custom_kpis d set derived_revision = p.revision
  from jsonb_to_recordset(derived_keys) as p (tenant_id uuid, key text, revision integer)
  where d.tenant_id = p.tenant_id and d.key = p.key and d.revision = p.revision;
  return stats || jsonb_build_object('kpis_derived', jsonb_array_length(derived_keys));
end
$$;
comment on function kpi.derive_pending_custom_kpis(uuid) is
  'Derives the custom KPIs not derived yet (new, changed or re-activated definitions) of one tenant (or all) over every history week whose sources are kept.';
