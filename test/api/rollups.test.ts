// GET /kpi_history_monthly, /kpi_history_quarterly and the CSV export by period, through the
// PostgREST replay: the figures, PostgREST's filters and ordering, and every way an attacker might
// reach another tenant's rollups.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, get, postgrestRequest } from '../helpers/postgrest.js';
import { getCsv, insertTwoTenantsWithHistory, userClaims, type RequestAs } from '../fixtures/api.js';
import { ACME, GLOBEX, UNKNOWN } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;
const acme = { claims: userClaims(ACME) };
const ROLLUP_COLUMNS = [
  'tenant', 'period_start', 'period_end', 'weeks', 'first_week', 'last_week', 'complete',
  ...['aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'].flatMap((k) => [`${k}_avg`, `${k}_min`, `${k}_max`, `${k}_last`]),
  'vli_fallback_weeks', 'hrp_weeks',
];
// Acme, January 2024 (four weeks, all with Thursdays in January), by hand: AIV 10–13, ATI 20–23,
// CRS 30–33, elasticity 1000–1003; VLI 100 (fallback) then 88.5 three times: 365.5 / 4 = 91.375 → 91.38.
const ACME_JANUARY = 'acme,2024-01-01,2024-01-31,4,2024-01-01,2024-01-22,true,11.50,10.00,13.00,13.00,21.50,20.00,23.00,23.00,31.50,30.00,33.00,33.00,1001.50,1000.00,1003.00,1003.00,91.38,88.50,100.00,88.50,12.50,12.50,12.50,12.50,1,4';

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
});
afterAll(() => api.end());

const rollupsOf = (view: string, request: RequestAs, query = '') =>
  get<Record<string, unknown>[]>(api, `/${view}${query ? `?${query}` : ''}`, request);

describe('GET /kpi_history_monthly and /kpi_history_quarterly', () => {
  it.each(['kpi_history_monthly', 'kpi_history_quarterly'])('%s: the active tenant’s period, figures computed by hand', async (view) => {
    const response = await rollupsOf(view, acme);
    expect(response.status).toBe(200);
    const rows = response.body as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(Object.keys(rows[0]!)).toEqual(ROLLUP_COLUMNS);
    expect(rows[0]).toMatchObject({
      tenant: 'acme', weeks: 4, first_week: '2024-01-01', last_week: '2024-01-22', complete: true,
      aiv_pct_avg: 11.5, aiv_pct_last: 13, vli_integrity_pct_avg: 91.38, vli_fallback_weeks: 1, hrp_pct_avg: 12.5, hrp_weeks: 4,
    });
    expect([rows[0]!.period_start, rows[0]!.period_end]).toEqual(view === 'kpi_history_monthly' ? ['2024-01-01', '2024-01-31'] : ['2024-01-01', '2024-03-31']);
  });

  it('Globex, never audited and without HRPs: every week a fallback, no HRP figures', async () => {
    const [row] = (await rollupsOf('kpi_history_monthly', { claims: userClaims(GLOBEX) })).body as Record<string, unknown>[];
    expect(row).toMatchObject({ tenant: 'globex', vli_fallback_weeks: 4, vli_integrity_pct_avg: 100, hrp_weeks: 0, hrp_pct_avg: null, hrp_pct_last: null });
  });

  it('PostgREST filters, ordering and select apply (the documented call)', async () => {
    // A second month for Acme, so that order and filters have something to do.
    await db.sql`
      insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
      values (${ACME}, '2024-02-05', 40, 40, 40, 40, 40, false, null)`;
    try {
      const ordered = await rollupsOf('kpi_history_monthly', acme, 'period_start=gte.2024-01-01&order=period_start.desc');
      expect((ordered.body as { period_start: string }[]).map((r) => r.period_start)).toEqual(['2024-02-01', '2024-01-01']);
      const narrowed = await rollupsOf('kpi_history_monthly', acme, 'period_start=gte.2024-02-01&select=period_start,weeks,aiv_pct_avg,hrp_pct_last');
      expect(narrowed.body).toEqual([{ period_start: '2024-02-01', weeks: 1, aiv_pct_avg: 40, hrp_pct_last: null }]);
      const quarter = await rollupsOf('kpi_history_quarterly', acme, 'select=weeks,aiv_pct_avg,aiv_pct_last');
      expect(quarter.body).toEqual([{ weeks: 5, aiv_pct_avg: 17.2, aiv_pct_last: 40 }]); // (10 + 11 + 12 + 13 + 40) / 5
    } finally {
      await db.sql`delete from kpi.kpi_history where tenant_id = ${ACME} and as_of = '2024-02-05'`;
    }
  });
});

describe('Acme’s user cannot read Globex’s rollups', () => {
  const forbidden = { status: 403, body: { code: 'FORBIDDEN' } };

  it.each(['kpi_history_monthly', 'kpi_history_quarterly'])('%s: forged x-tenant (Globex, unknown, SQL) → FORBIDDEN 403', async (view) => {
    for (const header of [GLOBEX, UNKNOWN, `${GLOBEX}' or '1'='1`, '*']) {
      expect(await rollupsOf(view, { claims: userClaims(ACME), headers: { 'x-tenant': header } }), header).toMatchObject(forbidden);
    }
  });

  it.each(['kpi_history_monthly', 'kpi_history_quarterly'])('%s: filters naming Globex only narrow to nothing', async (view) => {
    expect((await rollupsOf(view, acme, 'tenant=eq.globex')).body).toEqual([]);
    expect((await rollupsOf(view, acme, 'tenant=neq.acme')).body).toEqual([]);
    const everything = await rollupsOf(view, acme, 'period_start=gte.1900-01-01&weeks=gte.0&limit=1000');
    expect((everything.body as { tenant: string }[]).map((r) => r.tenant)).toEqual(['acme']);
  });

  it('kpi.kpi_history_rollups read directly is filtered by row-level security', async () => {
    const response = await postgrestRequest(api, { method: 'GET', path: '/x', claims: acme.claims }, (tx) =>
      tx`select distinct tenant_id from kpi.kpi_history_rollups`,
    );
    expect(response.body).toEqual([{ tenant_id: ACME }]);
  });

  it('a token for a tenant that does not exist reads no rollups', async () => {
    expect((await rollupsOf('kpi_history_monthly', { claims: userClaims(UNKNOWN) })).body).toEqual([]);
  });

  it('anonymous callers read nothing (401)', async () => {
    expect(await rollupsOf('kpi_history_monthly', {})).toMatchObject({ status: 401 });
    expect(await rollupsOf('kpi_history_quarterly', { headers: { 'x-tenant': ACME } })).toMatchObject({ status: 401 });
    const direct = await postgrestRequest(api, { method: 'GET', path: '/x' }, (tx) => tx`select * from kpi.kpi_history_rollups`);
    expect(direct).toMatchObject({ status: 401 });
  });

  it('the CSV by period holds Acme alone, and x-tenant: Globex is FORBIDDEN', async () => {
    for (const period of ['month', 'quarter']) {
      const csv = await getCsv(api, acme, { period });
      expect((csv.body as string).trim().split('\r\n').slice(1).every((line) => line.startsWith('acme,'))).toBe(true);
      expect(await getCsv(api, { ...acme, headers: { 'x-tenant': GLOBEX } }, { period })).toMatchObject(forbidden);
    }
  });

  it('psql, as the owner: the same views show every tenant', async () => {
    const rows = await db.sql`select tenant, weeks from api.kpi_history_monthly order by tenant`;
    expect(rows).toEqual([{ tenant: 'acme', weeks: 4 }, { tenant: 'globex', weeks: 4 }]);
  });
});

describe('GET /rpc/kpi_history_csv?period=…', () => {
  const header = (view: string) => db.sql<{ attname: string }[]>`
    select attname from pg_attribute where attrelid = ${view}::regclass and attnum > 0 order by attnum`;

  it('period=month: the columns of api.kpi_history_monthly, the month computed by hand, its own file name', async () => {
    const response = await getCsv(api, acme, { period: 'month' });
    expect(response.status).toBe(200);
    const columns = (await header('api.kpi_history_monthly')).map((c) => c.attname).join(',');
    expect(columns).toBe(ROLLUP_COLUMNS.join(','));
    expect(response.body).toBe(`${columns}\r\n${ACME_JANUARY}\r\n`);
    const [{ today }] = await db.sql<[{ today: string }]>`select to_char(now() at time zone 'UTC', 'YYYY-MM-DD') as today`;
    expect(response.headers['content-disposition']).toBe(`attachment; filename="kpi-history-acme-month-${today}.csv"`);
  });

  it('period=quarter: the quarter, and its file name', async () => {
    const response = await getCsv(api, acme, { period: 'quarter' });
    const lines = (response.body as string).split('\r\n');
    expect(lines[0]).toBe(ROLLUP_COLUMNS.join(','));
    expect(lines[1]).toBe(ACME_JANUARY.replace('2024-01-01,2024-01-31', '2024-01-01,2024-03-31'));
    expect(response.headers['content-disposition']).toMatch(/^attachment; filename="kpi-history-acme-quarter-\d{4}-\d{2}-\d{2}\.csv"$/);
  });

  it('period=week, given or not, is the weekly file under the name it always had', async () => {
    const given = await getCsv(api, acme, { period: 'week' });
    const omitted = await getCsv(api, acme);
    expect(given.body).toBe(omitted.body);
    expect(given.headers['content-disposition']).toMatch(/^attachment; filename="kpi-history-acme-\d{4}-\d{2}-\d{2}\.csv"$/);
  });

  it('from and to select periods by their first day', async () => {
    const rows = async (args: { from?: string; to?: string }) => (await getCsv(api, acme, { period: 'month', ...args })).body as string;
    expect((await rows({ from: '2024-01-01', to: '2024-01-01' })).split('\r\n')).toHaveLength(3);
    expect((await rows({ from: '2024-01-02' })).split('\r\n')).toHaveLength(2); // the header only
  });

  it.each([
    [{ period: 'year' }, /period must be week, month or quarter/],
    [{ period: '' }, /period must be week, month or quarter/],
    [{ period: 'month', weeks: 12 }, /weeks applies to period=week/],
    [{ period: 'month', from: '2024-02-30' }, /from is not a calendar date/],
    [{ period: 'quarter', from: '2024-03-01', to: '2024-01-01' }, /"from" is after "to"/],
  ])('%j → INVALID_INPUT 400', async (args, message) => {
    const response = await getCsv(api, acme, args);
    expect(response).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT' } });
    expect((response.body as { message: string }).message).toMatch(message);
  });
});
