// The privilege matrix of the API roles, and the properties every object must have: invoker
// views, definer functions with a fixed search_path, row-level security forced on every table,
// and a COMMENT (PostgREST's OpenAPI description) on everything exposed.
import { describe, expect, it } from 'vitest';
import { isReservedKey } from '../helpers/postgrest.js';
import { useTestDatabase } from '../helpers/database.js';

const db = useTestDatabase();

describe('privilege matrix', () => {
  it('anon and authenticated may use exactly these api objects', async () => {
    const rows = await db.sql`
      select r.role, c.relname::text as object, w.privilege
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      cross join (values ('anon'), ('authenticated')) r(role)
      cross join (values ('select'), ('insert'), ('update'), ('delete'), ('truncate')) w(privilege)
      where n.nspname = 'api' and has_table_privilege(r.role, c.oid, w.privilege)
      union all
      select r.role, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', 'execute'
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      cross join (values ('anon'), ('authenticated')) r(role)
      where n.nspname = 'api' and has_function_privilege(r.role, p.oid, 'execute')
      order by 1, 2`;
    expect(rows.map((r) => `${r.role} ${r.privilege} ${r.object}`).sort()).toEqual([
      'anon execute kpi_history_cron(json)',
      'anon execute kpi_history_health()',
      'authenticated execute kpi_history_cron(json)',
      'authenticated execute kpi_history_changes(after text)',
      'authenticated execute kpi_history_csv(weeks text, "from" text, "to" text, period text, custom text)',
      'authenticated execute kpi_history_health()',
      'authenticated select active_tenant',
      // Tenant admins write definitions through the view (row-level security decides who).
      'authenticated delete custom_kpis',
      'authenticated insert custom_kpis',
      'authenticated select custom_kpis',
      'authenticated update custom_kpis',
      'authenticated select custom_kpi_rollups',
      'authenticated select custom_kpi_values',
      'authenticated select kpi_anomalies',
      'authenticated select kpi_history',
      'authenticated select kpi_history_export',
      'authenticated select kpi_history_monthly',
      'authenticated select kpi_history_quarterly',
    ].sort());
  });

  it('in the private schemas they may execute only the request-context functions, and read the RLS-guarded tables and a view over them', async () => {
    const rows = await db.sql`
      select r.role, n.nspname || '.' || p.proname as object
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      cross join (values ('anon'), ('authenticated')) r(role)
      where n.nspname in ('kpi', 'kpi_api') and has_function_privilege(r.role, p.oid, 'execute')
      union all
      select r.role, n.nspname || '.' || c.relname
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      cross join (values ('anon'), ('authenticated')) r(role)
      where n.nspname = 'kpi' and c.relkind in ('r', 'v')
        and (has_table_privilege(r.role, c.oid, 'select, insert, update, delete, truncate')
             or has_any_column_privilege(r.role, c.oid, 'select, insert, update'))
      order by 1, 2`;
    expect(rows.map((r) => `${r.role} ${r.object}`).sort()).toEqual([
      'anon kpi_api.cron_secret_matches',
      'anon kpi_api.health',
      'anon kpi_api.raise_caught_error',
      'anon kpi_api.raise_http_error',
      'anon kpi_api.raise_request_error',
      'anon kpi_api.request_claims',
      'anon kpi_api.request_header',
      'anon kpi_api.run_cron',
      'authenticated kpi.change_feed_settings',
      'authenticated kpi.custom_kpi_rollups',
      'authenticated kpi.custom_kpi_settings',
      'authenticated kpi.custom_kpi_values',
      'authenticated kpi.custom_kpi_weeks',
      'authenticated kpi.custom_kpis',
      'authenticated kpi.kpi_anomalies',
      'authenticated kpi.kpi_changes',
      'authenticated kpi.kpi_history',
      'authenticated kpi.kpi_history_rollups',
      'authenticated kpi.tenants',
      'authenticated kpi_api.change_log_horizon',
      'authenticated kpi_api.changes_page',
      'authenticated kpi_api.cron_secret_matches',
      'authenticated kpi_api.csv_field',
      'authenticated kpi_api.csv_header',
      'authenticated kpi_api.current_tenant_id',
      'authenticated kpi_api.cursor_position',
      'authenticated kpi_api.date_argument',
      'authenticated kpi_api.health',
      'authenticated kpi_api.history_change_data',
      'authenticated kpi_api.integer_argument',
      'authenticated kpi_api.is_tenant_admin',
      'authenticated kpi_api.raise_caught_error',
      'authenticated kpi_api.raise_http_error',
      'authenticated kpi_api.raise_request_error',
      'authenticated kpi_api.read_changes',
      'authenticated kpi_api.request_claims',
      'authenticated kpi_api.request_header',
      'authenticated kpi_api.run_cron',
    ].sort());
  });

  it('authenticated reads only id, slug and name of kpi.tenants', async () => {
    const [row] = await db.sql`
      select has_column_privilege('authenticated', 'kpi.tenants', 'slug', 'select') as slug,
             has_column_privilege('authenticated', 'kpi.tenants', 'created_at', 'select') as created_at`;
    expect(row).toEqual({ slug: true, created_at: false });
  });

  it('anon has no usage on kpi; neither role may create anything anywhere', async () => {
    const rows = await db.sql`
      select r.role, n.nspname, has_schema_privilege(r.role, n.oid, 'usage') as usage,
             has_schema_privilege(r.role, n.oid, 'create') as "create"
      from pg_namespace n cross join (values ('anon'), ('authenticated')) r(role)
      where n.nspname in ('api', 'kpi', 'kpi_api') order by 1, 2`;
    expect(rows).toEqual([
      { role: 'anon', nspname: 'api', usage: true, create: false },
      { role: 'anon', nspname: 'kpi', usage: false, create: false },
      { role: 'anon', nspname: 'kpi_api', usage: true, create: false },
      { role: 'authenticated', nspname: 'api', usage: true, create: false },
      { role: 'authenticated', nspname: 'kpi', usage: true, create: false },
      { role: 'authenticated', nspname: 'kpi_api', usage: true, create: false },
    ]);
  });
});

describe('object properties', () => {
  it('every SECURITY DEFINER function has a fixed, empty search_path and lives outside the exposed schema', async () => {
    const rows = await db.sql`
      select n.nspname || '.' || p.proname as fn, p.proconfig
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where p.prosecdef and n.nspname in ('api', 'kpi', 'kpi_api')`;
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.proconfig, row.fn).toContain('search_path=""');
      expect(row.fn.startsWith('api.'), row.fn).toBe(false);
    }
  });

  it('every api view is security_invoker, and the api schema holds only views, functions and the CSV domain', async () => {
    const relations = await db.sql`
      select c.relname, c.relkind, c.reloptions from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'api' order by 1`;
    expect(relations.map((r) => r.relname)).toEqual(['active_tenant', 'custom_kpi_rollups', 'custom_kpi_values', 'custom_kpis', 'kpi_anomalies', 'kpi_history', 'kpi_history_export', 'kpi_history_monthly', 'kpi_history_quarterly']);
    for (const view of relations) {
      expect(view.relkind).toBe('v');
      expect(view.reloptions).toContain('security_invoker=true');
    }
    const types = await db.sql`
      select t.typname from pg_type t join pg_namespace n on n.oid = t.typnamespace
      where n.nspname = 'api' and t.typtype = 'd'`;
    expect(types).toEqual([{ typname: 'text/csv' }]);
  });

  it('every kpi table has row-level security enabled and forced', async () => {
    const tables = await db.sql`
      select c.relname, c.relrowsecurity, c.relforcerowsecurity
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'kpi' and c.relkind = 'r' order by 1`;
    expect(tables.length).toBeGreaterThanOrEqual(9);
    for (const t of tables) expect([t.relname, t.relrowsecurity, t.relforcerowsecurity]).toEqual([t.relname, true, true]);
  });

  it('the RLS policy on kpi_history looks the tenant up once per statement and uses the (tenant_id, as_of) index', async () => {
    const [policy] = await db.sql`
      select qual from pg_policies where schemaname = 'kpi' and tablename = 'kpi_history' and 'authenticated' = any(roles)`;
    expect(policy!.qual).toMatch(/^\(tenant_id = \( SELECT kpi_api\.current_tenant_id\(\) AS current_tenant_id\)\)$/);
  });

  it('every api object has a COMMENT with an example call', async () => {
    const rows = await db.sql`
      select c.relname as name, obj_description(c.oid, 'pg_class') as comment
      from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'api'
      union all
      select p.proname, obj_description(p.oid, 'pg_proc')
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'api'`;
    expect(rows.length).toBe(13);
    for (const row of rows) expect(row.comment, row.name).toMatch(/Example: (GET|POST) \//);
  });
});

describe('what PostgREST v16.2 can pass (guards against the next collision)', () => {
  it('no api function has a parameter PostgREST keeps for itself (QueryParams.hs: select, columns, on_conflict, …order/limit/offset/and/or)', async () => {
    const rows = await db.sql<{ fn: string; param: string }[]>`
      select p.proname as fn, a.name as param
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      cross join lateral unnest(coalesce(p.proargnames, '{}')) a(name)
      where n.nspname = 'api' and a.name <> ''`;
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((row) => isReservedKey(row.param)).map((row) => `${row.fn}(${row.param})`)).toEqual([]);
    // The guard itself: the names that broke before, and their relatives, are caught.
    for (const name of ['limit', 'offset', 'order', 'select', 'columns', 'on_conflict', 'and', 'or', 'x.limit']) {
      expect(isReservedKey(name), name).toBe(true);
    }
    expect(isReservedKey('weeks')).toBe(false);
  });

  it('no function documented for GET is VOLATILE (a GET runs READ ONLY: it would answer 405)', async () => {
    const rows = await db.sql<{ fn: string; volatility: string; comment: string }[]>`
      select p.proname as fn, p.provolatile::text as volatility, obj_description(p.oid, 'pg_proc') as comment
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'api'`;
    const documentedForGet = rows.filter((row) => new RegExp(`GET /rpc/${row.fn}\\b`).test(row.comment));
    expect(documentedForGet.map((row) => row.fn).sort()).toEqual(['kpi_history_changes', 'kpi_history_csv', 'kpi_history_health']);
    expect(documentedForGet.filter((row) => row.volatility === 'v').map((row) => row.fn)).toEqual([]);
  });

  it('every argument of a GET function is text, parsed by the function: a bad value is our INVALID_INPUT, not PostgreSQL’s', async () => {
    const rows = await db.sql<{ fn: string; types: string[] }[]>`
      select p.proname as fn, array(select format_type(t, null) from unnest(p.proargtypes) t) as types
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'api' and obj_description(p.oid, 'pg_proc') ~ ('GET /rpc/' || p.proname)`;
    for (const row of rows) expect(row.types.filter((type) => type !== 'text'), row.fn).toEqual([]);
  });
});
