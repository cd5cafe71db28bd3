-- Distributing by tenant (Citus, docs/scale-out.md): the commands, generated from the placement of
-- each table (kpi.table_distribution), in an order Citus accepts.

-- The commands in foreign-key order: a distributed table can only be
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

comment on function kpi.citus_commands() is
  'The create_reference_table / create_distributed_table statements that distribute the kpi schema on Citus, in order. Example: select * from kpi.citus_commands();';

