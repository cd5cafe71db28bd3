// Custom KPIs over HTTP, through the PostgREST replay: admins define, change and delete through
// api.custom_kpis; members read definitions and values; and every way a member, or an admin of
// another tenant, might write or read what is not theirs.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, get, postgrestRequest, write } from '../helpers/postgrest.js';
import { getCsv, insertTwoTenantsWithHistory, userClaims, WEEKS } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;

const admin = (tenant: string) => ({ ...userClaims(tenant), tenant_roles: { [tenant]: 'kpi_admin' } });
const acmeAdmin = { claims: admin(ACME) };
const acmeMember = { claims: userClaims(ACME) };
const globexAdmin = { claims: admin(GLOBEX) };
const representation = { Prefer: 'return=representation' };

const AIV_MINUS_ATI = { key: 'aiv_minus_ati', label: 'AIV − ATI', unit: 'points', combine: 'difference', left_kpi: 'aiv_pct', right_kpi: 'ati_pct' };
const HRP_MAX = { key: 'hrp_max', label: 'Worst HRP', source: 'clarity', path: ['hrp'], aggregate: 'max' };

const definitions = async (tenant: string) =>
  (await db.sql<{ key: string; label: string }[]>`select key, label from kpi.custom_kpis where tenant_id = ${tenant} order by key`).map((d) => `${d.key}:${d.label}`);

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
  // Globex has a KPI of its own, computed.
  await db.sql`insert into kpi.custom_kpis (tenant_id, key, label, source, field, aggregate)
               values (${GLOBEX}, 'secret_aiv', 'Globex AIV', 'avi', 'aiv_pct', 'latest')`;
  await db.sql`select kpi.fill_kpi_history(${GLOBEX})`;
});
afterAll(() => api.end());

// Every test starts from the same place, whatever ran before it: Acme has AIV − ATI, computed.
beforeEach(async () => {
  await db.sql`delete from kpi.custom_kpis where tenant_id = ${ACME}`;
  await db.sql`insert into kpi.custom_kpis (tenant_id, key, label, unit, combine, left_kpi, right_kpi)
               values (${ACME}, 'aiv_minus_ati', 'AIV − ATI', 'points', 'difference', 'aiv_pct', 'ati_pct')`;
  await db.sql`select kpi.fill_kpi_history(${ACME})`;
});

describe('an admin manages the tenant’s definitions', () => {
  it('POST /custom_kpis defines one: 201 with the row; the next fill computes every week', async () => {
    await db.sql`delete from kpi.custom_kpis where tenant_id = ${ACME}`;
    const response = await write(api, 'POST', '/custom_kpis', AIV_MINUS_ATI, { ...acmeAdmin, headers: representation });
    expect(response.status).toBe(201);
    expect(response.body).toEqual([expect.objectContaining({ ...AIV_MINUS_ATI, source: null, valid_min: null, active: true })]);
    await db.sql`select kpi.fill_kpi_history(${ACME})`;
    const values = await get<{ as_of: string; key: string; value: number }[]>(api, '/custom_kpi_values?order=as_of', acmeMember);
    expect(values.status).toBe(200);
    // AIV 10..13 and ATI 20..23 (fixtures/api.ts).
    expect(values.body).toEqual(WEEKS.map((as_of) => ({ as_of, key: 'aiv_minus_ati', value: -10 })));
  });

  it('a JSON path as a list, and minimal return: 201, no body', async () => {
    const response = await write(api, 'POST', '/custom_kpis', HRP_MAX, acmeAdmin);
    expect(response).toMatchObject({ status: 201, body: undefined });
    expect(await definitions(ACME)).toEqual(['aiv_minus_ati:AIV − ATI', 'hrp_max:Worst HRP']);
  });

  it('PATCH changes one; DELETE removes it with its values', async () => {
    expect((await write(api, 'POST', '/custom_kpis', HRP_MAX, acmeAdmin)).status).toBe(201);
    const patched = await write(api, 'PATCH', '/custom_kpis?key=eq.hrp_max', { label: 'Highest HRP', valid_max: 1 }, { ...acmeAdmin, headers: representation });
    expect(patched).toMatchObject({ status: 200, body: [expect.objectContaining({ key: 'hrp_max', label: 'Highest HRP', valid_max: 1 })] });
    await db.sql`select kpi.backfill_kpi_history(${ACME})`;
    expect(await db.sql`select as_of::text, value::float from kpi.custom_kpi_values where tenant_id = ${ACME} and key = 'hrp_max' and value is not null`)
      .toEqual([{ as_of: '2024-01-01', value: 0.125 }]);
    const deleted = await write(api, 'DELETE', '/custom_kpis?key=eq.hrp_max', undefined, acmeAdmin);
    expect(deleted.status).toBe(204);
    expect(await db.sql`select from kpi.custom_kpi_values where tenant_id = ${ACME} and key = 'hrp_max'`).toHaveLength(0);
  });

  it('invalid input → INVALID_INPUT 400 naming the field, nothing written', async () => {
    for (const [body, field] of [
      [{ ...HRP_MAX, aggregate: 'median' }, 'aggregate:'],
      [{ ...HRP_MAX, path: [] }, 'path:'],
      [{ ...HRP_MAX, key: 'Bad Key' }, 'key:'],
      [{ ...AIV_MINUS_ATI, key: 'loop', left_kpi: 'loop' }, 'left_kpi:'],
    ] as const) {
      const response = await write<{ code: string; message: string }>(api, 'POST', '/custom_kpis', body, acmeAdmin);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.code).toBe('INVALID_INPUT');
      expect(response.body.message.startsWith(field)).toBe(true);
    }
    expect(await definitions(ACME)).toEqual(['aiv_minus_ati:AIV − ATI']);
  });

  it('a column the view does not have (tenant_id) → 400 PGRST204', async () => {
    const response = await write(api, 'POST', '/custom_kpis', { ...HRP_MAX, tenant_id: GLOBEX }, acmeAdmin);
    expect(response).toMatchObject({ status: 400, body: { code: 'PGRST204' } });
  });
});

describe('a member reads, and cannot define', () => {
  const forbidden = { status: 403, body: { code: 'FORBIDDEN' } };

  it('GET /custom_kpis and /custom_kpi_values answer the tenant’s own', async () => {
    const kpis = await get<{ key: string }[]>(api, '/custom_kpis', acmeMember);
    expect((kpis.body as { key: string }[]).map((k) => k.key)).toEqual(['aiv_minus_ati']);
  });

  it('POST, PATCH and DELETE → FORBIDDEN 403, nothing changed', async () => {
    expect(await write(api, 'POST', '/custom_kpis', HRP_MAX, acmeMember)).toMatchObject(forbidden);
    expect(await write(api, 'PATCH', '/custom_kpis?key=eq.aiv_minus_ati', { label: 'mine now' }, acmeMember)).toMatchObject(forbidden);
    expect(await write(api, 'DELETE', '/custom_kpis?key=eq.aiv_minus_ati', undefined, acmeMember)).toMatchObject(forbidden);
    expect(await definitions(ACME)).toEqual(['aiv_minus_ati:AIV − ATI']);
  });

  it('a kpi_admin role for a tenant the token does not grant makes no admin', async () => {
    const claims = { ...userClaims(ACME), tenant_roles: { [GLOBEX]: 'kpi_admin' } };
    expect(await write(api, 'POST', '/custom_kpis', HRP_MAX, { claims })).toMatchObject(forbidden);
    expect(await write(api, 'POST', '/custom_kpis', HRP_MAX, { claims, headers: { 'x-tenant': GLOBEX } })).toMatchObject(forbidden);
  });

  it('other roles (a list without kpi_admin, a string) make no admin; a list holding it does', async () => {
    for (const role of ['admin', ['viewer', 'editor'], true]) {
      const claims = { ...userClaims(ACME), tenant_roles: { [ACME]: role } };
      expect(await write(api, 'POST', '/custom_kpis', HRP_MAX, { claims }), JSON.stringify(role)).toMatchObject(forbidden);
    }
    const claims = { ...userClaims(ACME), tenant_roles: { [ACME]: ['viewer', 'kpi_admin'] } };
    expect((await write(api, 'POST', '/custom_kpis', { ...HRP_MAX, key: 'listed' }, { claims })).status).toBe(201);
    expect((await write(api, 'DELETE', '/custom_kpis?key=eq.listed', undefined, { claims })).status).toBe(204);
  });

  it('the table itself refuses a member’s insert (row-level security WITH CHECK), past the view', async () => {
    const response = await postgrestRequest(api, { method: 'POST', path: '/x', claims: acmeMember.claims }, (tx) =>
      tx`insert into kpi.custom_kpis (key, label, source, path, aggregate) values ('sneaky', 'x', 'clarity', '{a}', 'sum')`,
    );
    expect(response.status).toBe(403);
    expect(await definitions(ACME)).toEqual(['aiv_minus_ati:AIV − ATI']);
  });
});

describe('an admin of Acme cannot touch Globex’s definitions or read its values', () => {
  it('PATCH and DELETE of Globex’s key change nothing (it is not there for Acme)', async () => {
    const patched = await write(api, 'PATCH', '/custom_kpis?key=eq.secret_aiv', { label: 'pwned' }, { ...acmeAdmin, headers: representation });
    expect(patched).toMatchObject({ status: 200, body: [] });
    const deleted = await write(api, 'DELETE', '/custom_kpis?key=eq.secret_aiv', undefined, { ...acmeAdmin, headers: representation });
    expect(deleted).toMatchObject({ status: 200, body: [] });
    expect(await definitions(GLOBEX)).toEqual(['secret_aiv:Globex AIV']);
  });

  it('PATCH without a filter changes only Acme’s', async () => {
    await write(api, 'PATCH', '/custom_kpis', { unit: 'pp' }, acmeAdmin);
    expect(await db.sql`select tenant_id, unit from kpi.custom_kpis where unit = 'pp'`).toEqual([{ tenant_id: ACME, unit: 'pp' }]);
  });

  it('Globex’s values, definitions and rollups are out of reach, whatever the filter or header', async () => {
    for (const path of ['/custom_kpi_values?key=eq.secret_aiv', '/custom_kpis?key=eq.secret_aiv', '/custom_kpi_rollups?key=eq.secret_aiv']) {
      expect((await get(api, path, acmeAdmin)).body, path).toEqual([]);
      expect(await get(api, path, { ...acmeAdmin, headers: { 'x-tenant': GLOBEX } }), path).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    }
    const direct = await postgrestRequest(api, { method: 'GET', path: '/x', claims: acmeAdmin.claims }, (tx) =>
      tx`select distinct tenant_id from kpi.custom_kpi_values`,
    );
    expect(direct.body).toEqual([{ tenant_id: ACME }]);
  });

  it('Globex’s admin sees Globex’s', async () => {
    expect(((await get<{ key: string }[]>(api, '/custom_kpi_values?select=key', globexAdmin)).body as { key: string }[]).map((r) => r.key)).toEqual(
      WEEKS.map(() => 'secret_aiv'),
    );
  });
});

describe('values, rollups and the CSV', () => {
  it('GET /custom_kpi_values filters by key list and week', async () => {
    const some = await get<unknown[]>(api, `/custom_kpi_values?key=in.(aiv_minus_ati,nothing)&as_of=gte.${WEEKS[2]}`, acmeMember);
    expect(some.body).toEqual([
      { as_of: WEEKS[2], key: 'aiv_minus_ati', value: -10 },
      { as_of: WEEKS[3], key: 'aiv_minus_ati', value: -10 },
    ]);
    expect((await get<unknown[]>(api, '/custom_kpi_values?key=in.()', acmeMember)).body).toEqual([]);
  });

  it('GET /custom_kpi_rollups: a month per key', async () => {
    const rows = await get(api, '/custom_kpi_rollups?period=eq.month', acmeMember);
    expect(rows.body).toEqual([{ period: 'month', period_start: '2024-01-01', key: 'aiv_minus_ati', weeks: 4, avg: -10, min: -10, max: -10, last: -10 }]);
  });

  it('the CSV with custom=true: a custom.<key> column per active KPI', async () => {
    const csv = await getCsv(api, acmeMember, { custom: 'true', weeks: 2 });
    expect(csv.status).toBe(200);
    const lines = (csv.body as string).split('\r\n');
    expect(lines[0]).toMatch(/,updated_at,custom\.aiv_minus_ati$/);
    expect(lines.slice(1, -1).map((line) => line.split(',').at(-1))).toEqual(['-10.000000', '-10.000000']);
    // Without it, the columns of old.
    expect(((await getCsv(api, acmeMember, { weeks: 2 })).body as string).split('\r\n')[0]).toMatch(/,updated_at$/);
  });

  it('custom that is not a boolean, or with a month → INVALID_INPUT 400', async () => {
    for (const args of [{ custom: 'yes' }, { custom: 'true', period: 'month' }] as const) {
      expect(await getCsv(api, acmeMember, args), JSON.stringify(args)).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT' } });
    }
  });
});
