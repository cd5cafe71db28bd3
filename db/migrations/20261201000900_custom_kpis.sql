-- migrate:up

-- Custom KPIs: a tenant's own weekly numbers next to the built-in ones, defined as data from a
-- closed vocabulary (a source and an aggregate, or a combination of two KPIs) — never SQL text,
-- never an expression the database evaluates. The fill computes them set-based in the transaction
-- that writes the history row of the week, into kpi.custom_kpi_weeks (read as kpi.custom_kpi_values).

-- ============================================================================================
-- Definitions
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
  tenant_id uuid not null default kpi_api.current_tenant_id() references kpi.tenants (id) on delete cascade,
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
  -- The vocabulary, as constraints (kpi.validate_custom_kpi says the same with the field's name).
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

-- A tenant's week holds all its custom values in one row: a fill then writes, logs and scores one
-- row per week whatever the number of KPIs (measured: five rows a week made the full fill 4.1×
-- as slow as without custom KPIs; see docs/performance.md). kpi.custom_kpi_values reads them as
-- one row per tenant, week and KPI.
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

create view kpi.custom_kpi_values with (security_invoker = true) as
select w.tenant_id, e.key, w.as_of, (e.value #>> '{}')::numeric as value, w.updated_at
from kpi.custom_kpi_weeks w
cross join lateral jsonb_each(w.kpi_values) e
-- A key whose definition is gone is never shown (a fill that was writing the week while the
-- definition was deleted may have put it back; the week's next write drops it).
where exists (select from kpi.custom_kpis d where d.tenant_id = w.tenant_id and d.key = e.key and d.active);
comment on view kpi.custom_kpi_values is
  'One value per tenant, week of kpi_history and active custom KPI (NULL: no data that week, or outside the valid range), rounded to 6 decimal places.';

do $$
declare
  t text;
begin
  foreach t in array array['custom_kpi_settings', 'custom_kpis', 'custom_kpi_weeks'] loop
    execute format('alter table kpi.%I enable row level security', t);
    execute format('alter table kpi.%I force row level security', t);
    execute format('create policy %I on kpi.%I to postgres using (true) with check (true)', t || ' are maintained by their owner', t);
  end loop;
end
$$;

-- Tenant admins: a token whose tenant_roles claim names the active tenant with "kpi_admin",
-- e.g. {"role": "authenticated", "tenant_ids": ["<id>"], "tenant_roles": {"<id>": "kpi_admin"}}
-- (or a list of roles holding it). Membership (tenant_ids) comes first: a role for a tenant the
-- token does not grant is no role.
create function kpi_api.is_tenant_admin() returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce(r = '"kpi_admin"'::jsonb or (jsonb_typeof(r) = 'array' and r ? 'kpi_admin'), false)
  from (select kpi_api.request_claims() -> 'tenant_roles' -> (kpi_api.current_tenant_id()::text) as r) x
$$;
comment on function kpi_api.is_tenant_admin() is 'True when the request''s token makes it an admin (tenant_roles: "kpi_admin") of the active tenant.';
grant execute on function kpi_api.is_tenant_admin() to authenticated;

create policy "Custom KPIs are visible to members of the active tenant" on kpi.custom_kpis
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
create policy "Admins of the active tenant define custom KPIs" on kpi.custom_kpis
  for insert to authenticated
  with check (tenant_id = (select kpi_api.current_tenant_id()) and (select kpi_api.is_tenant_admin()));
create policy "Admins of the active tenant change custom KPIs" on kpi.custom_kpis
  for update to authenticated
  using (tenant_id = (select kpi_api.current_tenant_id()))
  with check (tenant_id = (select kpi_api.current_tenant_id()) and (select kpi_api.is_tenant_admin()));
-- USING without the admin test: a member's delete reaches the trigger, which answers FORBIDDEN
-- instead of "0 rows"; the trigger refuses it (and the policy above refuses a member's update).
create policy "Admins of the active tenant delete custom KPIs" on kpi.custom_kpis
  for delete to authenticated
  using (tenant_id = (select kpi_api.current_tenant_id()));
create policy "Custom KPI values are visible to members of the active tenant" on kpi.custom_kpi_weeks
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));

grant select on kpi.custom_kpis, kpi.custom_kpi_weeks, kpi.custom_kpi_values, kpi.custom_kpi_settings to authenticated;
create policy "The limit is readable by tenant members" on kpi.custom_kpi_settings for select to authenticated using (true);
grant insert (key, label, unit, source, path, field, aggregate, combine, left_kpi, right_kpi, valid_min, valid_max, active),
      update (label, unit, source, path, field, aggregate, combine, left_kpi, right_kpi, valid_min, valid_max, active),
      delete
  on kpi.custom_kpis to authenticated;

insert into kpi.error_codes (code, sqlstate, http_status, description) values
  ('INVALID_CUSTOM', 'KH423', 422, 'A custom KPI''s value was outside its valid range or not a number: stored as NULL (a run warning, never an HTTP answer).');

insert into kpi.table_distribution (table_name, placement, distribution_column, colocate_with, why) values
  ('custom_kpis', 'distributed', 'tenant_id', 'tenants', 'tenant data: the definitions, read by the fill next to the sources'),
  ('custom_kpi_weeks', 'distributed', 'tenant_id', 'tenants', 'tenant data, written with the history row of its week'),
  ('custom_kpi_settings', 'reference', null, null, 'one row: the limit of active custom KPIs per tenant');

-- An error for a person: inside an HTTP request, PostgREST's answer with our code and status;
-- in psql, the code's SQLSTATE with the same message.
create function kpi.raise_request_error(code text, message text) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' then
    perform kpi_api.raise_http_error(code, message);
  end if;
  perform kpi.raise_error(code, message);
end
$$;

-- Inside an HTTP request, only a tenant admin changes definitions (the row-level security policies
-- refuse the others too; this says why, with our code). The fill's own bookkeeping — marking what
-- it derived, during a cron request too — is no change of a definition and never comes here.
create function kpi.refuse_non_admin() returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' and not kpi_api.is_tenant_admin() then
    perform kpi.raise_request_error('FORBIDDEN', 'only an admin of the tenant (tenant_roles: "kpi_admin") may change its custom KPIs');
  end if;
end
$$;

-- Every field checked in turn, each error naming its field; then the limit and the references.
-- Security definer: it reads the tenant's other definitions and the limit whoever writes.
create function kpi.validate_custom_kpi() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  built_in constant text[] := array['aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'];
  limit_active integer;
  operand text;
  used_by text;
begin
  if tg_op = 'DELETE' then
    perform kpi.refuse_non_admin();
    select string_agg(d.key, ', ' order by d.key) into used_by from kpi.custom_kpis d
    where d.tenant_id = old.tenant_id and d.combine is not null and old.key in (d.left_kpi, d.right_kpi) and d.key <> old.key;
    if used_by is not null then
      perform kpi.raise_request_error('INVALID_INPUT', format('key: %s is combined in %s; change or delete that first', old.key, used_by));
    end if;
    return old;
  end if;
  perform kpi.refuse_non_admin();
  if new.tenant_id is null then
    perform kpi.raise_request_error('INVALID_INPUT', 'tenant_id: required');
  end if;
  if tg_op = 'UPDATE' and (new.key is distinct from old.key or new.tenant_id is distinct from old.tenant_id) then
    perform kpi.raise_request_error('INVALID_INPUT', 'key: cannot be changed; define a new KPI and delete this one');
  end if;
  if new.key is null or new.key !~ '^[a-z][a-z0-9_]{0,39}$' then
    perform kpi.raise_request_error('INVALID_INPUT',
      format('key: 1 to 40 lower-case letters, digits or _, starting with a letter (got %s)', coalesce(left(new.key, 60), 'null')));
  end if;
  if new.key = any (built_in) then
    perform kpi.raise_request_error('INVALID_INPUT', format('key: %s is a built-in KPI', new.key));
  end if;
  if new.key = 'custom' then
    -- The anomaly rule of every custom KPI is named so.
    perform kpi.raise_request_error('INVALID_INPUT', 'key: custom is reserved');
  end if;
  if tg_op = 'INSERT' and exists (select from kpi.custom_kpis d where d.tenant_id = new.tenant_id and d.key = new.key) then
    perform kpi.raise_request_error('INVALID_INPUT', format('key: %s is already defined', new.key));
  end if;
  if new.label is null or char_length(btrim(new.label)) not between 1 and 100 then
    perform kpi.raise_request_error('INVALID_INPUT', 'label: required, up to 100 characters');
  end if;
  if char_length(new.unit) > 20 then
    perform kpi.raise_request_error('INVALID_INPUT', 'unit: up to 20 characters');
  end if;
  if (new.source is null) = (new.combine is null) then
    perform kpi.raise_request_error('INVALID_INPUT', 'source: give either a source (clarity, avi, vli) with an aggregate, or a combine of two KPIs');
  end if;
  if new.source is not null then
    if new.source not in ('clarity', 'avi', 'vli') then
      perform kpi.raise_request_error('INVALID_INPUT', format('source: one of clarity, avi, vli (got %s)', left(new.source, 40)));
    end if;
    if new.aggregate is null or new.aggregate not in ('latest', 'avg', 'min', 'max', 'sum', 'count') then
      perform kpi.raise_request_error('INVALID_INPUT',
        format('aggregate: one of latest, avg, min, max, sum, count (got %s)', coalesce(left(new.aggregate, 40), 'null')));
    end if;
    if new.source = 'clarity' then
      if new.path is null or cardinality(new.path) not between 1 and 8 or array_position(new.path, null) is not null
         or array_position(new.path, '') is not null then
        perform kpi.raise_request_error('INVALID_INPUT', 'path: for source clarity, a list of 1 to 8 non-empty keys into metrics, e.g. ["latency", "p95_ms"]');
      end if;
      if new.field is not null then
        perform kpi.raise_request_error('INVALID_INPUT', 'field: only for sources avi and vli (clarity takes a path)');
      end if;
    else
      if new.path is not null then
        perform kpi.raise_request_error('INVALID_INPUT', 'path: only for source clarity');
      end if;
      if new.source = 'avi' and (new.field is null or new.field not in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point')) then
        perform kpi.raise_request_error('INVALID_INPUT',
          format('field: for source avi, one of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point (got %s)', coalesce(left(new.field, 40), 'null')));
      end if;
      if new.source = 'vli' and new.field is distinct from 'integrity_pct' then
        perform kpi.raise_request_error('INVALID_INPUT', format('field: for source vli, integrity_pct (got %s)', coalesce(left(new.field, 40), 'null')));
      end if;
    end if;
  else
    if new.combine not in ('difference', 'ratio') then
      perform kpi.raise_request_error('INVALID_INPUT', format('combine: difference or ratio (got %s)', left(new.combine, 40)));
    end if;
    if new.aggregate is not null or new.path is not null or new.field is not null then
      perform kpi.raise_request_error('INVALID_INPUT', 'aggregate: a combine takes no aggregate, path or field: its operands are weekly KPIs already');
    end if;
    foreach operand in array array[new.left_kpi, new.right_kpi] loop
      if operand is null then
        perform kpi.raise_request_error('INVALID_INPUT', 'left_kpi: a combine needs left_kpi and right_kpi');
      end if;
      if operand = new.key then
        perform kpi.raise_request_error('INVALID_INPUT', format('left_kpi: %s cannot combine itself', new.key));
      end if;
      if not (operand = any (built_in)) and not exists (
        select from kpi.custom_kpis d where d.tenant_id = new.tenant_id and d.key = operand and d.combine is null and d.active) then
        perform kpi.raise_request_error('INVALID_INPUT', format(
          'left_kpi: %s is neither a built-in KPI nor an active custom KPI of this tenant with a source (a combine is one level deep)',
          left(operand, 60)));
      end if;
    end loop;
  end if;
  if new.valid_min > new.valid_max then
    perform kpi.raise_request_error('INVALID_INPUT', 'valid_min: greater than valid_max');
  end if;
  if tg_op = 'UPDATE' and (new.combine is not null or not new.active) then
    -- A KPI others combine stays a source KPI, and active.
    select string_agg(d.key, ', ' order by d.key) into used_by from kpi.custom_kpis d
    where d.tenant_id = new.tenant_id and d.combine is not null and new.key in (d.left_kpi, d.right_kpi) and d.key <> new.key;
    if used_by is not null then
      perform kpi.raise_request_error('INVALID_INPUT', format('combine: %s is combined in %s, so it stays an active KPI with a source', new.key, used_by));
    end if;
  end if;
  if new.active and (tg_op = 'INSERT' or not old.active) then
    -- One writer per tenant at a time, so two concurrent inserts cannot both pass the count: the
    -- tenant's row, locked (a row lock lives in the row, so a bulk definition of every tenant's
    -- KPIs takes no lock-table slot per tenant; NO KEY UPDATE leaves writers of sources alone).
    perform from kpi.tenants t where t.id = new.tenant_id for no key update;
    select s.max_active_per_tenant into limit_active from kpi.custom_kpi_settings s;
    if (select count(*) from kpi.custom_kpis d where d.tenant_id = new.tenant_id and d.active and d.key <> new.key) >= limit_active then
      perform kpi.raise_request_error('INVALID_INPUT',
        format('active: this tenant has %s active custom KPIs, the limit (kpi.custom_kpi_settings)', limit_active));
    end if;
  end if;
  if tg_op = 'UPDATE' and (old.source, old.path, old.field, old.aggregate, old.combine, old.left_kpi, old.right_kpi,
                           old.valid_min, old.valid_max, old.active)
                          is distinct from
                          (new.source, new.path, new.field, new.aggregate, new.combine, new.left_kpi, new.right_kpi,
                           new.valid_min, new.valid_max, new.active) then
    new.revision := old.revision + 1;
  end if;
  new.updated_at := now();
  return new;
end
$$;
create trigger custom_kpis_validate before insert or delete on kpi.custom_kpis
  for each row execute function kpi.validate_custom_kpi();
-- An update that changes no definition field (the fill marking what it derived) is not checked:
-- the WHEN clause skips the call.
create trigger custom_kpis_validate_update before update on kpi.custom_kpis
  for each row
  when ((old.tenant_id, old.key, old.label, old.unit, old.source, old.path, old.field, old.aggregate, old.combine,
         old.left_kpi, old.right_kpi, old.valid_min, old.valid_max, old.active, old.revision)
        is distinct from
        (new.tenant_id, new.key, new.label, new.unit, new.source, new.path, new.field, new.aggregate, new.combine,
         new.left_kpi, new.right_kpi, new.valid_min, new.valid_max, new.active, new.revision))
  execute function kpi.validate_custom_kpi();

-- A new, changed or deactivated definition: its values (and those of the combines built on it)
-- and their anomalies go now, in the same transaction; the next run derives the active ones
-- again over every week. (A new one: a value left under its key by an earlier definition goes.)
create function kpi.forget_custom_kpi_values(p_tenant_id uuid, p_keys text[]) returns void
language sql
set search_path = ''
begin atomic
  -- A week left without values goes; the others lose those keys.
  delete from kpi.custom_kpi_weeks w where w.tenant_id = p_tenant_id and w.kpi_values - p_keys = '{}'::jsonb;
  update kpi.custom_kpi_weeks w set kpi_values = w.kpi_values - p_keys, updated_at = now()
  where w.tenant_id = p_tenant_id and w.kpi_values ?| p_keys;
  delete from kpi.kpi_anomalies a where a.tenant_id = p_tenant_id and a.kpi = any (p_keys);
end;

create function kpi.forget_changed_custom_kpis() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  combines text[];
begin
  with marked as (
    update kpi.custom_kpis d set derived_revision = null
    where d.tenant_id = new.tenant_id and d.combine is not null and new.key in (d.left_kpi, d.right_kpi) and d.key <> new.key
    returning d.key
  )
  select array_agg(key) into combines from marked;
  perform kpi.forget_custom_kpi_values(new.tenant_id, array[new.key] || coalesce(combines, '{}'));
  return null;
end
$$;
-- Row by row, and only for a changed revision (the WHEN clause costs no call): the fill marking
-- thousands of definitions derived never gets here.
create trigger custom_kpis_forget_changed after update on kpi.custom_kpis
  for each row when (old.revision is distinct from new.revision)
  execute function kpi.forget_changed_custom_kpis();

-- A deleted definition (by an admin, or with its tenant) takes its values along; a new one finds
-- none left under its key by an earlier definition. Once per statement and tenant.
create function kpi.forget_defined_custom_kpis() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    perform kpi.forget_custom_kpi_values(o.tenant_id, array_agg(o.key)) from old_rows o group by o.tenant_id;
  else
    perform kpi.forget_custom_kpi_values(n.tenant_id, array_agg(n.key)) from new_rows n group by n.tenant_id;
  end if;
  return null;
end
$$;
create trigger custom_kpis_forget_deleted after delete on kpi.custom_kpis
  referencing old table as old_rows
  for each statement execute function kpi.forget_defined_custom_kpis();
create trigger custom_kpis_forget_inserted after insert on kpi.custom_kpis
  referencing new table as new_rows
  for each statement execute function kpi.forget_defined_custom_kpis();

-- ============================================================================================
-- Computation
-- ============================================================================================

-- The custom values of the given (tenant, week) pairs — every active KPI of the tenant — from the
-- week's sources and its history row, written where the week's values differ. One statement for
-- any number of weeks; everything after the list of weeks is computed within one week (a lateral
-- subquery), so no step joins two large intermediate results and no misestimated row count can
-- make the plan quadratic.
create function kpi.write_custom_kpi_values(p_tenant_ids uuid[], p_weeks date[]) returns jsonb
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
          select case d.aggregate
                   when 'latest' then (array_agg(s.value order by s.at desc, s.id desc) filter (where s.value is not null))[1]
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
        select s.key, s.not_numbers, s.value as computed,
               coalesce(s.value < s.valid_min or s.value > s.valid_max, false) as out_of_range
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
        ) o
        cross join lateral (
          select r.value, coalesce(r.value < d.valid_min or r.value > d.valid_max, false) as out_of_range
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
                                      then format('custom KPI %s computed %s, outside its valid range, so it is NULL', p ->> 'kpi', p ->> 'computed')
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
create function kpi.derive_pending_custom_kpis(p_tenant_id uuid) returns jsonb
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
  cross join kpi.retention_state rs
  join kpi.kpi_history h on h.tenant_id = p.tenant_id
  where kpi.week_end(h.as_of) > kpi.source_horizon(coalesce(t.source_retention_days, pl.source_retention_days),
                                                  t.sources_purged_before, rs.last_cleanup_as_of);
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

-- Every fill computes the custom values of the weeks it computes, in its own transaction.
CREATE OR REPLACE FUNCTION kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean, p_stale_only boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    SET plan_cache_mode TO 'force_custom_plan'
    SET enable_memoize TO 'off'
    SET jit TO 'off'
    AS $$
declare
  stats jsonb;
  -- Custom KPIs: computed for the weeks this statement computes, then any definition not yet
  -- derived over the older weeks.
  has_custom boolean := exists (select from kpi.custom_kpis d where d.active and (p_tenant_id is null or d.tenant_id = p_tenant_id));
  computed_tenants uuid[];
  computed_weeks date[];
  custom jsonb;
  derived jsonb;
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
             from computed where hrp_is_invalid), '[]'::jsonb)),
         w.tenant_ids, w.weeks
  into stats, computed_tenants, computed_weeks
  -- (Both arrays from one aggregate pass, so that they stay aligned.)
  from (select array_agg(c.tenant_id) as tenant_ids, array_agg(c.as_of) as weeks from computed c where has_custom) w;
  if has_custom then
    -- Pending definitions first, over every week; the run's own weeks then find their values.
    derived := kpi.derive_pending_custom_kpis(p_tenant_id);
    custom := kpi.write_custom_kpi_values(coalesce(computed_tenants, '{}'), coalesce(computed_weeks, '{}'));
    stats := stats || jsonb_build_object(
      -- Weeks whose custom values were written (one row holds a week's values), and the values.
      'custom_weeks_written', (custom ->> 'rows_written')::bigint + (derived ->> 'rows_written')::bigint,
      'custom_values', (custom ->> 'values')::bigint + (derived ->> 'values')::bigint,
      'custom_kpis_derived', (derived ->> 'kpis_derived')::integer,
      -- (A pending KPI's warning for one of the run's weeks is in both: once is enough.)
      'warnings', (stats -> 'warnings') || (
        select coalesce(jsonb_agg(w.warning order by w.warning ->> 'tenant_id', w.warning ->> 'as_of', w.warning ->> 'kpi'), '[]'::jsonb)
        from (select distinct x.warning from jsonb_array_elements((derived -> 'warnings') || (custom -> 'warnings')) as x (warning)) w));
  end if;
  return stats;
end
$$;

-- ============================================================================================
-- Change feed: custom values are changes of the tenant's weekly numbers too
-- ============================================================================================

alter table kpi.kpi_changes drop constraint kpi_changes_entity;
alter table kpi.kpi_changes add constraint kpi_changes_entity check (entity in ('history', 'anomaly', 'custom_values'));

-- A week's custom values as the feed carries them (only active KPIs' keys). No SET clause, so
-- that the planner inlines it into the logging statement.
create function kpi.custom_values_change_data(w kpi.custom_kpi_weeks) returns jsonb
language sql stable parallel safe
return jsonb_build_object('as_of', w.as_of, 'values', w.kpi_values,
                          'updated_at', (to_json(w.updated_at at time zone 'UTC') #>> '{}') || '+00:00');

-- Security definer: a tenant admin's change or delete of a definition removes its values from
-- the weeks, and the log of that is written whoever changed it.
create function kpi.log_custom_value_changes() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of)
    select o.tenant_id, 'custom_values', 'delete', o.as_of from old_rows o order by o.tenant_id, o.as_of;
  else
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, data)
    select n.tenant_id, 'custom_values', lower(tg_op), n.as_of, kpi.custom_values_change_data(n)
    from new_rows n order by n.tenant_id, n.as_of;
  end if;
  perform pg_notify('kpi_changes', '');
  return null;
end
$$;
create trigger custom_kpi_weeks_logged_insert after insert on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.log_custom_value_changes();
create trigger custom_kpi_weeks_logged_update after update on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.log_custom_value_changes();
create trigger custom_kpi_weeks_logged_delete after delete on kpi.custom_kpi_weeks
  referencing old table as old_rows for each statement execute function kpi.log_custom_value_changes();

-- ============================================================================================
-- Rollups: a custom KPI's months and quarters, as rows (one per period and key)
-- ============================================================================================

create view kpi.custom_kpi_rollups with (security_invoker = true) as
-- A week counts in the month and quarter of its Thursday, as in kpi.kpi_history_rollups.
select w.tenant_id, w.period, w.period_start, w.key, count(*)::integer as weeks,
       round(avg(w.value), 6) as avg, min(w.value) as min, max(w.value) as max,
       (array_agg(w.value order by w.as_of desc))[1] as last, max(w.as_of) as last_week
from (
  select v.tenant_id, v.key, v.as_of, v.value, p.period, date_trunc(p.period, (v.as_of + 3)::timestamp)::date as period_start
  from kpi.custom_kpi_values v
  cross join (values ('month'), ('quarter')) p(period)
) w
group by w.tenant_id, w.period, w.period_start, w.key;
comment on view kpi.custom_kpi_rollups is
  'Monthly and quarterly rollups of kpi.custom_kpi_values, one row per tenant, period and key. Derived on read.';
grant select on kpi.custom_kpi_rollups to authenticated;

-- ============================================================================================
-- API
-- ============================================================================================

create view api.custom_kpis with (security_invoker = true) as
select d.key, d.label, d.unit, d.source, d.path, d.field, d.aggregate, d.combine, d.left_kpi, d.right_kpi,
       d.valid_min, d.valid_max, d.active, d.created_at, d.updated_at
from kpi.custom_kpis d;
comment on view api.custom_kpis is
  $$The active tenant's custom KPI definitions. Members read them; admins (token claim tenant_roles: {"<tenant id>": "kpi_admin"}) insert, update and delete through this view. A definition is a source with an aggregate, or a combine of two KPIs; invalid input is INVALID_INPUT 400 naming the field, a member's write FORBIDDEN 403.
Example: POST /custom_kpis {"key": "p95_latency_ms", "label": "p95 latency", "unit": "ms", "source": "clarity", "path": ["latency", "p95_ms"], "aggregate": "avg"}$$;
comment on column api.custom_kpis.key is 'Unique per tenant: 1 to 40 lower-case letters, digits or _, starting with a letter; not a built-in KPI name. Cannot be changed. Never NULL.';
comment on column api.custom_kpis.label is 'Never NULL.';
comment on column api.custom_kpis.source is 'clarity (a number at path inside the clarity report''s metrics), avi or vli (their column field); NULL for a combine.';
comment on column api.custom_kpis.path is 'For source clarity: the keys leading to the number, e.g. ["latency", "p95_ms"].';
comment on column api.custom_kpis.field is 'For source avi: aiv_pct, ati_pct, crs_pct or elasticity_usd_per_point; for vli: integrity_pct.';
comment on column api.custom_kpis.aggregate is 'Over the week (Monday 00:00 UTC to the next Monday): latest, avg, min, max, sum or count.';
comment on column api.custom_kpis.combine is 'difference (left_kpi - right_kpi) or ratio (left_kpi / right_kpi, NULL when dividing by zero) of two weekly KPIs: built-in, or custom with a source.';
comment on column api.custom_kpis.valid_min is 'A value below is stored as NULL, with an INVALID_CUSTOM warning in the run.';
comment on column api.custom_kpis.valid_max is 'A value above is stored as NULL, with an INVALID_CUSTOM warning in the run.';
comment on column api.custom_kpis.active is 'Only active KPIs are computed (at most 20 per tenant by default); deactivating one removes its values. Never NULL.';
comment on column api.custom_kpis.created_at is 'Never NULL.';
comment on column api.custom_kpis.updated_at is 'Never NULL.';
grant select, insert, update, delete on api.custom_kpis to authenticated;

create view api.custom_kpi_values with (security_invoker = true) as
select v.as_of, v.key, v.value from kpi.custom_kpi_values v;
comment on view api.custom_kpi_values is
  $$The active tenant's custom KPI values, one row per week (as_of, a Monday) and key. PostgREST filters apply.
Example: GET /custom_kpi_values?as_of=gte.2026-01-01&key=in.(p95_latency_ms,aiv_minus_ati)&order=as_of,key$$;
comment on column api.custom_kpi_values.as_of is 'Monday of the week. Never NULL.';
comment on column api.custom_kpi_values.key is 'The custom KPI (api.custom_kpis.key). Never NULL.';
comment on column api.custom_kpi_values.value is 'NULL when the week had no data for it, or the value was outside its valid range.';
grant select on api.custom_kpi_values to authenticated;

create view api.custom_kpi_rollups with (security_invoker = true) as
select r.period, r.period_start, r.key, r.weeks, r.avg, r.min, r.max, r.last
from kpi.custom_kpi_rollups r;
comment on view api.custom_kpi_rollups is
  $$Monthly and quarterly rollups of the active tenant's custom KPIs: one row per period (month or quarter), period_start and key. A week counts in the month and quarter of its Thursday.
Example: GET /custom_kpi_rollups?period=eq.month&period_start=gte.2026-01-01&order=period_start,key$$;
comment on column api.custom_kpi_rollups.period is 'month or quarter. Never NULL.';
comment on column api.custom_kpi_rollups.period_start is 'First day of the month or quarter. Never NULL.';
comment on column api.custom_kpi_rollups.key is 'Never NULL.';
comment on column api.custom_kpi_rollups.weeks is 'Weeks of the period with a row (a value or NULL). Never NULL.';
comment on column api.custom_kpi_rollups.avg is 'Mean of the weeks'' values (NULLs ignored), to 6 decimal places.';
comment on column api.custom_kpi_rollups.last is 'The latest week''s value.';
grant select on api.custom_kpi_rollups to authenticated;

-- The CSV export: custom=true adds a column custom.<key> per active custom KPI.
drop function api.kpi_history_csv(text, text, text, text);
CREATE FUNCTION api.kpi_history_csv(weeks text DEFAULT NULL::text, "from" text DEFAULT NULL::text, "to" text DEFAULT NULL::text, period text DEFAULT NULL::text, custom text DEFAULT NULL::text) RETURNS api."text/csv"
    LANGUAGE plpgsql STABLE
    AS $$
declare
  period_name text := coalesce(lower(btrim(period)), 'week');
  with_custom text := coalesce(lower(btrim(custom)), 'false');
  tenant uuid;
  custom_keys text[] := '{}';
  week_count integer;
  from_date date;
  to_date date;
  tenant_slug text;
  rows_json json[];
  body text;
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  if period_name not in ('week', 'month', 'quarter') then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('period must be week, month or quarter, got %s', left(period, 40)));
  end if;
  if period_name <> 'week' and weeks is not null then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'weeks applies to period=week; choose months and quarters with from and to');
  end if;
  if with_custom not in ('true', 'false') then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('custom must be true or false, got %s', left(custom, 40)));
  end if;
  if with_custom = 'true' and period_name <> 'week' then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'custom applies to period=week; read monthly and quarterly custom KPIs from /custom_kpi_rollups');
  end if;
  week_count := coalesce(kpi_api.integer_argument('weeks', weeks, 1, 1000), 52);
  from_date := kpi_api.date_argument('from', "from");
  to_date := kpi_api.date_argument('to', "to");
  if from_date > to_date then
    perform kpi_api.raise_http_error('INVALID_INPUT', '"from" is after "to"');
  end if;
  -- Through row-level security, like the rows: the active tenant or an error. A token may grant
  -- an id that is no tenant (deleted, or never created): no file is named after nobody.
  select t.id, t.slug into tenant, tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());
  if tenant_slug is null then
    perform kpi_api.raise_http_error('UNKNOWN_TENANT', 'the active tenant does not exist');
  end if;

  -- The rows as JSON, oldest first; a row is in range when its first day (as_of, period_start) is
  -- in [from, to]. Then one statement turns them into lines, whatever their view.
  if period_name = 'week' then
    -- The latest `weeks` weeks in the range.
    select array_agg(row_to_json(latest) order by latest.as_of) into rows_json
    from (
      select e.* from api.kpi_history_export e
      where (from_date is null or e.as_of >= from_date) and (to_date is null or e.as_of <= to_date)
      order by e.as_of desc
      limit week_count
    ) latest;
  elsif period_name = 'month' then
    select array_agg(row_to_json(m) order by m.period_start) into rows_json
    from api.kpi_history_monthly m
    where (from_date is null or m.period_start >= from_date) and (to_date is null or m.period_start <= to_date);
  else
    select array_agg(row_to_json(q) order by q.period_start) into rows_json
    from api.kpi_history_quarterly q
    where (from_date is null or q.period_start >= from_date) and (to_date is null or q.period_start <= to_date);
  end if;
  if with_custom = 'true' then
    -- One column per active custom KPI, by key, after the built-in ones.
    select coalesce(array_agg(d.key order by d.key), '{}') into custom_keys
    from kpi.custom_kpis d where d.tenant_id = tenant and d.active;
  end if;
  select string_agg((select string_agg(kpi_api.csv_field(f.value), ',') from json_each_text(r.line) f)
                    || coalesce((select string_agg(',' || coalesce(w.kpi_values ->> k.key, ''), '' order by k.n)
                                 from unnest(custom_keys) with ordinality k(key, n)
                                 left join kpi.custom_kpi_weeks w
                                   on w.tenant_id = tenant and w.as_of = (r.line ->> 'as_of')::date), '')
                    || E'\r\n', '' order by r.n) into body
  from unnest(rows_json) with ordinality r(line, n);

  -- The weekly file keeps the name it always had, so links and scripts that expect it still work.
  perform set_config('response.headers', json_build_array(json_build_object(
    'Content-Disposition',
    format('attachment; filename="kpi-history-%s-%s%s.csv"', tenant_slug,
           case when period_name = 'week' then '' else period_name || '-' end,
           to_char(now() at time zone 'UTC', 'YYYY-MM-DD'))))::text, true);
  return rtrim(kpi_api.csv_header(case period_name when 'week' then 'api.kpi_history_export'::regclass
                                                   when 'month' then 'api.kpi_history_monthly'::regclass
                                                   else 'api.kpi_history_quarterly'::regclass end), E'\r\n')
         || coalesce((select string_agg(',' || kpi_api.csv_field('custom.' || k), '') from unnest(custom_keys) k), '')
         || E'\r\n' || coalesce(body, '');
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;

comment on function api.kpi_history_csv(text, text, text, text, text) is
  $$CSV (RFC 4180: header row, CRLF, quoted where needed) of the active tenant's history, oldest first. period=week (default): the latest `weeks` weeks (1..1000, default 52) with as_of in [from, to], columns of api.kpi_history_export, file kpi-history-<tenant>-<date>.csv; custom=true adds a column custom.<key> per active custom KPI (by key). period=month|quarter: every period with period_start in [from, to] (YYYY-MM-DD), columns of api.kpi_history_monthly|quarterly, file kpi-history-<tenant>-<period>-<date>.csv. Sets Content-Disposition: attachment.
Errors: INVALID_INPUT 400 (weeks, from, to, period, custom; weeks or custom with a month or quarter), FORBIDDEN 403, TENANT_REQUIRED 400, UNKNOWN_TENANT 404.
Example: GET /rpc/kpi_history_csv?weeks=12&custom=true with Accept: text/csv$$;
grant execute on function api.kpi_history_csv(text, text, text, text, text) to authenticated;

-- ============================================================================================
-- Anomalies: custom KPIs are scored like the built-in ones, under the rule 'custom'
-- ============================================================================================

-- A custom KPI's anomaly names its key in kpi_anomalies.kpi (keys never take a built-in name, nor
-- 'custom'), so the rule table no longer lists every kpi an anomaly may have.
alter table kpi.kpi_anomalies drop constraint kpi_anomalies_kpi_fkey;
alter table kpi.anomaly_rules drop constraint anomaly_rules_kpi;
alter table kpi.anomaly_rules add constraint anomaly_rules_kpi
  check (kpi in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct', 'custom'));
insert into kpi.anomaly_rules (kpi, threshold, min_delta, min_delta_of_median) values ('custom', 3.5, null, 0.05);
comment on column api.kpi_anomalies.kpi is 'One of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, hrp_pct, or a custom KPI''s key.';

-- The built-in detection keeps to built-in KPIs.
CREATE OR REPLACE FUNCTION kpi.rescore_anomalies(p_tenant_ids uuid[], p_weeks date[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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
      -- Built-in KPIs only: custom KPIs' anomalies are kpi.rescore_custom_anomalies's.
      and exists (select from kpi.anomaly_rules d where d.kpi = a.kpi)
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

-- The same detection over kpi.custom_kpi_values: the given (tenant, week) pairs and the 12 weeks
-- after, every custom KPI, under kpi.anomaly_rules 'custom' (a tenant's override: its
-- tenant_anomaly_rules row 'custom'). A value is scored against the previous 12 calendar weeks of
-- the same KPI, when at least 8 of them have a value.
create function kpi.rescore_custom_anomalies(p_tenant_ids uuid[], p_weeks date[]) returns integer
language plpgsql
set search_path = ''
set jit = 'off'
as $$
declare
  changed integer;
begin
  with given as (
    select g.tenant_id, min(g.as_of) as first_week, max(g.as_of) as last_week
    from unnest(p_tenant_ids, p_weeks) as g (tenant_id, as_of)
    group by g.tenant_id
  ),
  -- The weeks to score, with their tenant's active KPIs (one index range scan per tenant).
  target_weeks as materialized (
    select w.tenant_id, w.as_of, w.kpi_values, k.keys
    from given g
    cross join lateral (select array_agg(d.key) as keys from kpi.custom_kpis d where d.tenant_id = g.tenant_id and d.active) k
    cross join lateral (
      select w.* from kpi.custom_kpi_weeks w
      where w.tenant_id = g.tenant_id and w.as_of >= g.first_week and w.as_of <= g.last_week + 84
      offset 0 -- an index range scan per tenant, never a hash of every week
    ) w
    where k.keys is not null
  ),
  targets as materialized (
    select t.tenant_id, t.as_of, k.key from target_weeks t cross join lateral unnest(t.keys) as k (key)
    where t.kpi_values ? k.key
  ),
  -- The cheap gate first, as for built-in KPIs: count, least and greatest of each KPI's baseline,
  -- from one index range scan per week for all its KPIs.
  baselines as (
    select t.tenant_id, t.as_of, s.key, (t.kpi_values ->> s.key)::numeric as value, s.n, s.lo, s.hi
    from target_weeks t
    cross join lateral (
      select e.key, count(e.v) as n, min(e.v) as lo, max(e.v) as hi
      from kpi.custom_kpi_weeks b
      cross join lateral (select x.key, (x.value #>> '{}')::numeric as v from jsonb_each(b.kpi_values) x) e
      where b.tenant_id = t.tenant_id and b.as_of >= t.as_of - 84 and b.as_of < t.as_of and e.key = any (t.keys)
      group by e.key
    ) s
    where t.kpi_values ? s.key
  ),
  candidates as materialized (
    select t.tenant_id, t.as_of, t.key, t.value, r.threshold, r.min_delta, r.min_delta_of_median
    from baselines t
    cross join lateral (select t.n, t.lo, t.hi) b
    join kpi.anomaly_rules d on d.kpi = 'custom'
    left join kpi.tenant_anomaly_rules o on o.tenant_id = t.tenant_id and o.kpi = 'custom'
    cross join lateral (
      select coalesce(o.enabled, true) as enabled, coalesce(o.threshold, d.threshold) as threshold,
             coalesce(o.min_delta, d.min_delta, 0) as min_delta,
             coalesce(o.min_delta_of_median, d.min_delta_of_median, 0) as min_delta_of_median
    ) r
    cross join lateral (
      select greatest(r.min_delta, case when sign(b.lo) = sign(b.hi) then r.min_delta_of_median * least(abs(b.lo), abs(b.hi)) else 0 end)
             as least_delta
    ) q
    where t.value is not null and b.n >= 8 and r.enabled
      and not (b.hi - q.least_delta < t.value and t.value < b.lo + q.least_delta)
  ),
  medians as (
    select c.tenant_id, c.as_of, c.key, c.value, c.threshold, s.sorted, cardinality(s.sorted) as n,
           round((s.sorted[(cardinality(s.sorted) + 1) / 2] + s.sorted[(cardinality(s.sorted) + 2) / 2]) / 2, 4) as median,
           c.min_delta, c.min_delta_of_median
    from candidates c
    cross join lateral (
      select array_agg(x.v order by x.v) as sorted
      from kpi.custom_kpi_weeks b cross join lateral (select (b.kpi_values ->> c.key)::numeric as v) x
      where b.tenant_id = c.tenant_id and b.as_of >= c.as_of - 84 and b.as_of < c.as_of and x.v is not null
    ) s
  ),
  found as (
    select m.tenant_id, m.as_of, m.key, m.value, m.n, m.median, s.mad, m.threshold, z.score
    from medians m
    cross join lateral (
      select round((percentile_cont(0.5) within group (order by abs(v - m.median)::float8))::numeric, 4) as mad,
             avg(abs(v - m.median)) as mean_ad
      from unnest(m.sorted) as v
    ) s
    -- The modified z-score of kpi.rescore_anomalies, term for term.
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
    select f.tenant_id, f.as_of, f.key, f.value, f.median, f.mad, f.n, f.score,
           case when f.value > f.median then 'up' else 'down' end, f.threshold,
           (select max(r.id) from kpi.kpi_runs r where r.backend_pid = pg_backend_pid() and r.status = 'running')
    from found f
    order by f.tenant_id, f.as_of, f.key
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
    delete from kpi.kpi_anomalies a
    using targets t
    where a.tenant_id = t.tenant_id and a.as_of = t.as_of and a.kpi = t.key
      and not exists (select from found f where f.tenant_id = a.tenant_id and f.as_of = a.as_of and f.key = a.kpi)
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
  select count(*) from upserted into changed;
  perform set_config('kpi.anomalies_changed', (kpi.anomalies_changed() + changed)::text, true);
  return changed;
end
$$;
comment on function kpi.rescore_custom_anomalies(uuid[], date[]) is
  'Re-scores the custom KPI values of the given (tenant, week) pairs and the 12 weeks after each, as kpi.rescore_anomalies does for built-in KPIs. Returns how many anomalies it inserted or changed.';

-- Written values are scored in the writing statement; a deleted value takes its anomaly along
-- (values go by whole KPIs — a deleted or changed definition — so no other week's score moves).
create function kpi.score_written_custom_values() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    delete from kpi.kpi_anomalies a using old_rows o
    where a.tenant_id = o.tenant_id and a.as_of = o.as_of and not exists (select from kpi.anomaly_rules d where d.kpi = a.kpi);
  else
    perform kpi.rescore_custom_anomalies(array_agg(w.tenant_id), array_agg(w.as_of)) from new_rows w having count(*) > 0;
  end if;
  return null;
end
$$;
create trigger custom_kpi_weeks_scored_insert after insert on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.score_written_custom_values();
create trigger custom_kpi_weeks_scored_update after update on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.score_written_custom_values();
create trigger custom_kpi_weeks_scored_delete after delete on kpi.custom_kpi_weeks
  referencing old table as old_rows for each statement execute function kpi.score_written_custom_values();

-- A deleted tenant's weeks go with it (no foreign key: one checked per week written would cost
-- the fill more than the week itself).
create function kpi.forget_deleted_tenants_custom_weeks() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from kpi.custom_kpi_weeks w using old_tenants o where w.tenant_id = o.id;
  return null;
end
$$;
create trigger tenants_forget_custom_weeks after delete on kpi.tenants
  referencing old table as old_tenants for each statement execute function kpi.forget_deleted_tenants_custom_weeks();

-- The detection from scratch (rule changes) covers custom KPIs too.
create or replace function kpi.rescore_all_anomalies(p_tenant_id uuid default null) returns integer
language sql
set search_path = ''
as $$
  -- Each tenant's first and last week: the rescoring covers every week between.
  select kpi.rescore_anomalies(x.tenant_ids, x.weeks) + kpi.rescore_custom_anomalies(x.tenant_ids, x.weeks)
  from (
    select array_agg(h.tenant_id) as tenant_ids, array_agg(w.as_of) as weeks
    from (select k.tenant_id, min(k.as_of) as first_week, max(k.as_of) as last_week from kpi.kpi_history k
          where p_tenant_id is null or k.tenant_id = p_tenant_id group by k.tenant_id) h
    cross join lateral (values (h.first_week), (h.last_week)) w (as_of)
  ) x
$$;

notify pgrst, 'reload schema';

-- migrate:down

drop function api.kpi_history_csv(text, text, text, text, text);
CREATE FUNCTION api.kpi_history_csv(weeks text DEFAULT NULL::text, "from" text DEFAULT NULL::text, "to" text DEFAULT NULL::text, period text DEFAULT NULL::text) RETURNS api."text/csv"
    LANGUAGE plpgsql STABLE
    AS $$
declare
  period_name text := coalesce(lower(btrim(period)), 'week');
  week_count integer;
  from_date date;
  to_date date;
  tenant_slug text;
  rows_json json[];
  body text;
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  if period_name not in ('week', 'month', 'quarter') then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('period must be week, month or quarter, got %s', left(period, 40)));
  end if;
  if period_name <> 'week' and weeks is not null then
    perform kpi_api.raise_http_error('INVALID_INPUT', 'weeks applies to period=week; choose months and quarters with from and to');
  end if;
  week_count := coalesce(kpi_api.integer_argument('weeks', weeks, 1, 1000), 52);
  from_date := kpi_api.date_argument('from', "from");
  to_date := kpi_api.date_argument('to', "to");
  if from_date > to_date then
    perform kpi_api.raise_http_error('INVALID_INPUT', '"from" is after "to"');
  end if;
  -- Through row-level security, like the rows: the active tenant or an error. A token may grant
  -- an id that is no tenant (deleted, or never created): no file is named after nobody.
  select t.slug into tenant_slug from kpi.tenants t where t.id = (select kpi_api.current_tenant_id());
  if tenant_slug is null then
    perform kpi_api.raise_http_error('UNKNOWN_TENANT', 'the active tenant does not exist');
  end if;

  -- The rows as JSON, oldest first; a row is in range when its first day (as_of, period_start) is
  -- in [from, to]. Then one statement turns them into lines, whatever their view.
  if period_name = 'week' then
    -- The latest `weeks` weeks in the range.
    select array_agg(row_to_json(latest) order by latest.as_of) into rows_json
    from (
      select e.* from api.kpi_history_export e
      where (from_date is null or e.as_of >= from_date) and (to_date is null or e.as_of <= to_date)
      order by e.as_of desc
      limit week_count
    ) latest;
  elsif period_name = 'month' then
    select array_agg(row_to_json(m) order by m.period_start) into rows_json
    from api.kpi_history_monthly m
    where (from_date is null or m.period_start >= from_date) and (to_date is null or m.period_start <= to_date);
  else
    select array_agg(row_to_json(q) order by q.period_start) into rows_json
    from api.kpi_history_quarterly q
    where (from_date is null or q.period_start >= from_date) and (to_date is null or q.period_start <= to_date);
  end if;
  select string_agg((select string_agg(kpi_api.csv_field(f.value), ',') from json_each_text(r.line) f) || E'\r\n', ''
                    order by r.n) into body
  from unnest(rows_json) with ordinality r(line, n);

  -- The weekly file keeps the name it always had, so links and scripts that expect it still work.
  perform set_config('response.headers', json_build_array(json_build_object(
    'Content-Disposition',
    format('attachment; filename="kpi-history-%s-%s%s.csv"', tenant_slug,
           case when period_name = 'week' then '' else period_name || '-' end,
           to_char(now() at time zone 'UTC', 'YYYY-MM-DD'))))::text, true);
  return kpi_api.csv_header(case period_name when 'week' then 'api.kpi_history_export'::regclass
                                             when 'month' then 'api.kpi_history_monthly'::regclass
                                             else 'api.kpi_history_quarterly'::regclass end)
         || coalesce(body, '');
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;

comment on function api.kpi_history_csv(text, text, text, text) is
  $$CSV (RFC 4180: header row, CRLF, quoted where needed) of the active tenant's history, oldest first. period=week (default): the latest `weeks` weeks (1..1000, default 52) with as_of in [from, to], columns of api.kpi_history_export, file kpi-history-<tenant>-<date>.csv. period=month|quarter: every period with period_start in [from, to] (YYYY-MM-DD), columns of api.kpi_history_monthly|quarterly, file kpi-history-<tenant>-<period>-<date>.csv. Sets Content-Disposition: attachment.
Errors: INVALID_INPUT 400 (weeks, from, to, period; weeks with a month or quarter), FORBIDDEN 403, TENANT_REQUIRED 400, UNKNOWN_TENANT 404.
Example: GET /rpc/kpi_history_csv?period=month&from=2026-01-01 with Accept: text/csv$$;
grant execute on function api.kpi_history_csv(text, text, text, text) to authenticated;

create or replace function kpi.rescore_all_anomalies(p_tenant_id uuid default null) returns integer
language sql
set search_path = ''
as $$
  -- Each tenant's first and last week: rescore_anomalies covers every week between.
  select kpi.rescore_anomalies(array_agg(h.tenant_id), array_agg(w.as_of))
  from (select k.tenant_id, min(k.as_of) as first_week, max(k.as_of) as last_week from kpi.kpi_history k
        where p_tenant_id is null or k.tenant_id = p_tenant_id group by k.tenant_id) h
  cross join lateral (values (h.first_week), (h.last_week)) w (as_of)
$$;

CREATE OR REPLACE FUNCTION kpi.rescore_anomalies(p_tenant_ids uuid[], p_weeks date[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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

delete from kpi.kpi_anomalies a where not exists (select from kpi.anomaly_rules d where d.kpi = a.kpi and d.kpi <> 'custom');

drop view api.custom_kpi_rollups;
drop view api.custom_kpi_values;
drop view api.custom_kpis;
drop view kpi.custom_kpi_rollups;

CREATE OR REPLACE FUNCTION kpi.write_kpi_history(p_tenant_id uuid, p_from date, p_to date, p_latest_only boolean, p_stale_only boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    SET plan_cache_mode TO 'force_custom_plan'
    SET enable_memoize TO 'off'
    SET jit TO 'off'
    AS $$
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

drop trigger tenants_forget_custom_weeks on kpi.tenants;
drop function kpi.forget_custom_kpi_values(uuid, text[]);
drop function kpi.forget_deleted_tenants_custom_weeks();
drop function kpi.custom_values_change_data(kpi.custom_kpi_weeks);
drop view kpi.custom_kpi_values;
drop table kpi.custom_kpi_weeks;
delete from kpi.kpi_changes where entity = 'custom_values';
alter table kpi.kpi_changes drop constraint kpi_changes_entity;
alter table kpi.kpi_changes add constraint kpi_changes_entity check (entity in ('history', 'anomaly'));
drop function kpi.log_custom_value_changes();
drop function kpi.derive_pending_custom_kpis(uuid);
drop function kpi.score_written_custom_values();
drop function kpi.rescore_custom_anomalies(uuid[], date[]);
drop function kpi.write_custom_kpi_values(uuid[], date[]);
drop table kpi.custom_kpis;
drop function kpi.forget_changed_custom_kpis();
drop function kpi.forget_defined_custom_kpis();
drop function kpi.validate_custom_kpi();
drop function kpi.refuse_non_admin();
drop function kpi.raise_request_error(text, text);
drop function kpi_api.is_tenant_admin();
drop table kpi.custom_kpi_settings;
delete from kpi.table_distribution where table_name in ('custom_kpis', 'custom_kpi_weeks', 'custom_kpi_settings');
delete from kpi.error_codes where code = 'INVALID_CUSTOM';
delete from kpi.tenant_anomaly_rules where kpi = 'custom';
delete from kpi.anomaly_rules where kpi = 'custom';
alter table kpi.anomaly_rules drop constraint anomaly_rules_kpi;
alter table kpi.anomaly_rules add constraint anomaly_rules_kpi
  check (kpi in ('aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'));
alter table kpi.kpi_anomalies add constraint kpi_anomalies_kpi_fkey foreign key (kpi) references kpi.anomaly_rules (kpi);
comment on column api.kpi_anomalies.kpi is 'One of aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, hrp_pct.';

notify pgrst, 'reload schema';
