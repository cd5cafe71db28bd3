// Tenant isolation, tried from the attacker's side: a user of Acme tries every route to Globex's rows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, postgrestRequest } from '../helpers/postgrest.js';
import { getCsv, getHistory, insertTwoTenantsWithHistory, userClaims, WEEKS } from '../fixtures/api.js';
import { ACME, GLOBEX, UNKNOWN } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
});
afterAll(() => api.end());

const acmeUser = userClaims(ACME);
const acmeRows = WEEKS.length;
const aivOf = (rows: unknown) => (rows as { aiv_pct: string }[]).map((r) => Number(r.aiv_pct)).sort();
const ACME_AIV = [10, 11, 12, 13];

describe('the active tenant', () => {
  it('is the only tenant of the token when no x-tenant header is sent', async () => {
    const response = await getHistory(api, { claims: acmeUser });
    expect(response.status).toBe(200);
    expect(aivOf(response.body)).toEqual(ACME_AIV);
  });

  it('is the tenant the x-tenant header picks among the token’s tenants', async () => {
    const both = userClaims(ACME, GLOBEX);
    expect(aivOf((await getHistory(api, { claims: both, headers: { 'X-Tenant': GLOBEX } })).body)).toEqual([50, 51, 52, 53]);
    expect(aivOf((await getHistory(api, { claims: both, headers: { 'x-tenant': ACME.toUpperCase() } })).body)).toEqual(ACME_AIV);
  });

  it('accepts a single "tenant_id" claim too', async () => {
    const response = await getHistory(api, { claims: { role: 'authenticated', tenant_id: ACME } });
    expect(aivOf(response.body)).toEqual(ACME_AIV);
  });

  it('must be chosen when the token grants several: TENANT_REQUIRED 400', async () => {
    const response = await getHistory(api, { claims: userClaims(ACME, GLOBEX) });
    expect(response).toMatchObject({ status: 400, body: { code: 'TENANT_REQUIRED' } });
  });
});

describe('Acme’s user cannot read Globex', () => {
  const forbidden = { status: 403, body: { code: 'FORBIDDEN' } };

  it.each([
    ['Globex’s id', GLOBEX],
    ['an unknown tenant', UNKNOWN],
    ['SQL in the header', `${GLOBEX}' or '1'='1`],
    ['a quoted list', `${ACME}','${GLOBEX}`],
    ['a JSON array', JSON.stringify([ACME, GLOBEX])],
    ['an empty header', ''],
    ['a wildcard', '*'],
  ])('forged x-tenant: %s → FORBIDDEN 403', async (_what, header) => {
    expect(await getHistory(api, { claims: acmeUser, headers: { 'x-tenant': header } })).toMatchObject(forbidden);
  });

  it.each([
    ['tenant_ids as a string', { role: 'authenticated', tenant_ids: GLOBEX }],
    ['tenant_ids as an object', { role: 'authenticated', tenant_ids: { [GLOBEX]: true } }],
    ['tenant_ids of numbers and junk', { role: 'authenticated', tenant_ids: [1, null, {}, 'not-a-uuid', `${GLOBEX} `] }],
    ['tenant_id as an array', { role: 'authenticated', tenant_id: [GLOBEX] }],
    ['no tenant at all', { role: 'authenticated', sub: 'user-1' }],
  ])('malformed claims: %s → FORBIDDEN 403, nothing read', async (_what, claims) => {
    expect(await getHistory(api, { claims, headers: { 'x-tenant': GLOBEX } })).toMatchObject(forbidden);
    expect(await getHistory(api, { claims })).toMatchObject(forbidden);
  });

  it('PostgREST filters only narrow: filters that match everything still return Acme alone', async () => {
    const response = await getHistory(api, { claims: acmeUser }, 'as_of=gte.1900-01-01&aiv_pct=not.is.null&limit=1000');
    expect(aivOf(response.body)).toEqual(ACME_AIV);
  });

  it('a direct read of kpi.kpi_history is filtered by row-level security', async () => {
    const response = await postgrestRequest(api, { method: 'GET', path: '/x', claims: acmeUser }, (tx) =>
      tx`select distinct tenant_id from kpi.kpi_history`,
    );
    expect(response.body).toEqual([{ tenant_id: ACME }]);
  });

  it('the export view and the tenants table show Acme alone', async () => {
    const response = await postgrestRequest(api, { method: 'GET', path: '/kpi_history_export', claims: acmeUser }, async (tx) => ({
      export: await tx`select distinct tenant from api.kpi_history_export`,
      tenants: await tx`select slug from kpi.tenants`,
    }));
    expect(response.body).toEqual({ export: [{ tenant: 'acme' }], tenants: [{ slug: 'acme' }] });
  });

  it('the CSV holds Acme alone, and x-tenant: Globex is FORBIDDEN', async () => {
    const csv = await getCsv(api, { claims: acmeUser });
    expect(csv.status).toBe(200);
    const lines = (csv.body as string).trim().split('\r\n');
    expect(lines.slice(1).every((line) => line.startsWith('acme,'))).toBe(true);
    expect(lines).toHaveLength(1 + acmeRows);
    expect(await getCsv(api, { claims: acmeUser, headers: { 'x-tenant': GLOBEX } })).toMatchObject(forbidden);
  });

  it.each(['avi_reports', 'vli_audits', 'clarity_reports', 'kpi_runs', 'cron_secrets', 'api_denials', 'error_codes'])(
    'kpi.%s cannot be read at all (403)',
    async (table) => {
      const response = await postgrestRequest(api, { method: 'GET', path: '/x', claims: acmeUser }, (tx) =>
        tx.unsafe(`select * from kpi.${table}`),
      );
      expect(response).toMatchObject({ status: 403, body: { code: '42501' } });
    },
  );

  it('cannot write kpi_history, even its own rows', async () => {
    const response = await postgrestRequest(api, { method: 'POST', path: '/kpi_history', claims: acmeUser }, (tx) =>
      tx`update kpi.kpi_history set aiv_pct = 0 where tenant_id = ${ACME}`,
    );
    expect(response).toMatchObject({ status: 403, body: { code: '42501' } });
  });

  it.each([
    ['kpi.fill_all_kpi_history()', 'select kpi.fill_all_kpi_history()'],
    ['kpi.fill_kpi_history()', `select kpi.fill_kpi_history('${GLOBEX}')`],
    ['kpi.backfill_kpi_history()', 'select kpi.backfill_kpi_history()'],
    ['kpi.add_cron_secret()', `select kpi.add_cron_secret(repeat('x', 40))`],
  ])('cannot call %s (403 as a user, 401 anonymously)', async (_fn, query) => {
    const asUser = await postgrestRequest(api, { method: 'POST', path: '/x', claims: acmeUser }, (tx) => tx.unsafe(query));
    expect(asUser).toMatchObject({ status: 403, body: { code: '42501' } });
    const asAnon = await postgrestRequest(api, { method: 'POST', path: '/x' }, (tx) => tx.unsafe(query));
    expect(asAnon).toMatchObject({ status: 401, body: { code: '42501' } });
  });
});

describe('anonymous callers', () => {
  it('read nothing: history, export, CSV and kpi tables are refused with 401', async () => {
    expect(await getHistory(api, {})).toMatchObject({ status: 401, body: { code: '42501' } });
    expect(await getCsv(api, {})).toMatchObject({ status: 401 });
    for (const query of ['select * from api.kpi_history_export', 'select * from kpi.kpi_history', 'select * from kpi.tenants']) {
      const response = await postgrestRequest(api, { method: 'GET', path: '/x' }, (tx) => tx.unsafe(query));
      expect(response, query).toMatchObject({ status: 401 });
    }
  });

  it('with an x-tenant header and no token still read nothing', async () => {
    expect(await getHistory(api, { headers: { 'x-tenant': ACME } })).toMatchObject({ status: 401 });
  });
});
