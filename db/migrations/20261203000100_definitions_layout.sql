-- migrate:up

-- From here on every function, procedure, view, trigger, policy and grant is defined once, in
-- db/definitions/, and applied after the migrations (scripts/migrate.sh). A database that went
-- through the seventeen migrations before the baseline has them as those migrations left them:
-- they go here, and the definitions create the current ones, so that an upgraded database and a
-- new one end up the same. On a new database there is nothing to drop. Data is not touched.

-- Its default called a function (so the table could not be created before it), and ran before a
-- trigger could choose better: the definitions fill tenant_id from the request instead.
alter table kpi.custom_kpis alter column tenant_id drop default;

do $$
declare
  object record;
begin
  for object in
    select format('drop policy %I on %s', p.polname, p.polrelid::regclass) as command
    from pg_catalog.pg_policy p join pg_catalog.pg_class c on c.oid = p.polrelid
    where c.relnamespace in ('kpi'::regnamespace, 'kpi_api'::regnamespace, 'api'::regnamespace)
    union all
    select format('drop trigger %I on %s', t.tgname, t.tgrelid::regclass)
    from pg_catalog.pg_trigger t join pg_catalog.pg_class c on c.oid = t.tgrelid
    where not t.tgisinternal and c.relnamespace in ('kpi'::regnamespace, 'kpi_api'::regnamespace, 'api'::regnamespace)
  loop
    execute object.command;
  end loop;
  -- Views first (they may call functions), then functions and procedures. A drop cascades to
  -- what goes anyway (a view on a view, a function whose SQL body calls another), so each is
  -- looked up again before its turn.
  for object in
    select c.oid from pg_catalog.pg_class c
    where c.relkind = 'v' and c.relnamespace in ('kpi'::regnamespace, 'kpi_api'::regnamespace, 'api'::regnamespace)
  loop
    if exists (select from pg_catalog.pg_class c where c.oid = object.oid) then
      execute format('drop view %s cascade', object.oid::regclass);
    end if;
  end loop;
  for object in
    select p.oid from pg_catalog.pg_proc p
    where p.pronamespace in ('kpi'::regnamespace, 'kpi_api'::regnamespace, 'api'::regnamespace)
  loop
    if exists (select from pg_catalog.pg_proc p where p.oid = object.oid) then
      execute format('drop routine %s cascade', object.oid::regprocedure);
    end if;
  end loop;
end
$$;

-- The owner's policies went with the rest: until the definitions create them again (and force
-- row-level security again, db/definitions/14_access.sql), the owner is exempt, so that a
-- non-superuser owner can write this migration's data and the next ones'.
do $$
declare
  t regclass;
begin
  for t in select c.oid::regclass from pg_catalog.pg_class c where c.relnamespace = 'kpi'::regnamespace and c.relkind = 'r' loop
    execute format('alter table %s no force row level security', t);
  end loop;
end
$$;

-- Privileges are the definitions' too (db/definitions/access.sql grants what each role needs).
revoke all on all tables in schema kpi, kpi_api, api from anon, authenticated;
revoke usage on schema kpi, kpi_api, api from anon, authenticated;

-- What scripts/migrate.sh applied last: the definitions are applied again when their files or
-- the migrations change (one row).
create table kpi.definitions_state (
  singleton boolean primary key default true constraint definitions_state_one_row check (singleton),
  checksum text not null,
  migration_version text,
  files jsonb not null,
  applied_at timestamptz not null default clock_timestamp(),
  applied_by text not null default current_user
);
comment on table kpi.definitions_state is
  'The definitions (db/definitions/*.sql) last applied by scripts/migrate.sh: their checksum, the latest migration then, and when. One row.';
alter table kpi.definitions_state enable row level security;
insert into kpi.table_distribution (table_name, placement, why)
values ('definitions_state', 'local', 'what the migrations applied on the coordinator');

-- migrate:down
-- Table changes only: the functions, views, triggers, policies and grants dropped above are not
-- restored (they were the previous release's); restore a backup to go back to it.
delete from kpi.table_distribution where table_name = 'definitions_state';
drop table kpi.definitions_state;
