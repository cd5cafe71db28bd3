// The API roles can reach nothing in the private schema, and no function is executable by PUBLIC
// unless a migration grants it. dbmate's dump leaves privileges out, so these tests are their record.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, postgrestRequest } from '../helpers/postgrest.js';
import { ACME } from '../fixtures/tenants.js';
import { insertAvi, insertTenant } from '../fixtures/sources.js';

const db = useTestDatabase();
let authenticator: Sql;

// The source tables; kpi_history and tenants are readable under row-level security (test/api).
const KPI_TABLES = ['avi_reports', 'vli_audits', 'clarity_reports'];
const API_ROLES = ['anon', 'authenticated'];

beforeAll(async () => {
  authenticator = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTenant(db.sql, ACME, 'acme');
  await insertAvi(db.sql, ACME, { weekStart: '2024-01-01' });
});
afterAll(() => authenticator.end());

describe('roles', () => {
  it('authenticator logs in without inheriting; anon and authenticated cannot log in', async () => {
    const roles = await db.sql`
      select rolname, rolcanlogin, rolinherit, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb
      from pg_roles where rolname in ('authenticator', 'anon', 'authenticated') order by rolname`;
    expect(roles).toEqual([
      { rolname: 'anon', rolcanlogin: false, rolinherit: true, rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false },
      { rolname: 'authenticated', rolcanlogin: false, rolinherit: true, rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false },
      { rolname: 'authenticator', rolcanlogin: true, rolinherit: false, rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false },
    ]);
  });

  it('authenticator may become anon and authenticated, and nothing else', async () => {
    const granted = await db.sql`
      select r.rolname from pg_auth_members m
      join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member
      where u.rolname = 'authenticator' order by 1`;
    expect(granted.map((r) => r.rolname)).toEqual(['anon', 'authenticated']);
  });

  it('authenticator itself reads nothing in kpi (NOINHERIT)', async () => {
    await expect(authenticator`select * from kpi.kpi_history`).rejects.toMatchObject({ code: '42501' });
  });
});

describe('the private schema kpi', () => {
  it('anon has no usage on kpi', async () => {
    const [{ usage }] = await db.sql<[{ usage: boolean }]>`select has_schema_privilege('anon', 'kpi', 'usage') as usage`;
    expect(usage).toBe(false);
  });

  it.each(API_ROLES)('%s has no privilege on any source table', async (role) => {
    for (const table of KPI_TABLES) {
      const [{ any }] = await db.sql<[{ any: boolean }]>`
        select has_table_privilege(${role}, ${'kpi.' + table}, 'select, insert, update, delete, truncate, references, trigger') as any`;
      expect(any, `${role} on kpi.${table}`).toBe(false);
    }
  });

  it.each([
    ['anon', null, 401],
    ['authenticated', { role: 'authenticated', sub: 'user-1', tenant_ids: [ACME] }, 403],
  ])('a request as %s that reads a source table is refused with %s', async (_role, claims, status) => {
    for (const table of KPI_TABLES) {
      const response = await postgrestRequest(authenticator, { method: 'GET', path: '/x', claims }, (tx) =>
        tx.unsafe(`select * from kpi.${table}`),
      );
      expect(response.status, table).toBe(status);
      expect(response.body).toMatchObject({ code: '42501' });
    }
  });
});

describe('functions', () => {
  it('are not executable by PUBLIC by default', async () => {
    const [acl] = await db.sql`
      select defaclacl::text as acl from pg_default_acl d
      join pg_roles r on r.oid = d.defaclrole
      where d.defaclobjtype = 'f' and d.defaclnamespace = 0 and r.rolname = current_user`;
    // The owner keeps EXECUTE; PUBLIC (an empty grantee, "=X/…") is absent.
    expect(acl?.acl).toBeDefined();
    expect(acl!.acl).not.toMatch(/[{,]=X/);

    await db.sql`create function kpi.probe_default_privileges() returns int language sql as 'select 1'`;
    const [{ anon, authenticated }] = await db.sql<[{ anon: boolean; authenticated: boolean }]>`
      select has_function_privilege('anon', 'kpi.probe_default_privileges()', 'execute') as anon,
             has_function_privilege('authenticated', 'kpi.probe_default_privileges()', 'execute') as authenticated`;
    expect({ anon, authenticated }).toEqual({ anon: false, authenticated: false });
  });

  it('in kpi are never executable by the API roles (api and kpi_api grants: test/api/privileges)', async () => {
    const executable = await db.sql`
      select n.nspname || '.' || p.proname as fn, r.rolname
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      cross join (values ('anon'), ('authenticated')) as r(rolname)
      where n.nspname = 'kpi' and has_function_privilege(r.rolname, p.oid, 'execute')
      order by 1, 2`;
    expect(executable).toEqual([]);
  });
});
