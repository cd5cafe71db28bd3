// GET /rpc/kpi_history_csv with Accept: text/csv: RFC 4180 bytes, the range and limit, the headers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator } from '../helpers/postgrest.js';
import { getCsv, insertTwoTenantsWithHistory, userClaims } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;
const acme = { claims: userClaims(ACME) };
const HEADER = 'tenant,as_of,aiv_pct,ati_pct,crs_pct,elasticity_usd_per_point,vli_integrity_pct,vli_is_fallback,hrp_pct,updated_at\r\n';

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
  // A fixed updated_at makes the bytes predictable.
  await db.sql`update kpi.kpi_history set updated_at = '2024-02-01T06:30:00Z'`;
});
afterAll(() => api.end());

describe('the file', () => {
  it('is exactly these bytes: header, CRLF line ends, oldest week first, NULL as an empty field', async () => {
    const response = await getCsv(api, acme);
    expect(response.status).toBe(200);
    expect(response.body).toBe(
      HEADER +
        'acme,2024-01-01,10.00,20.00,30.00,1000.00,100.00,true,12.50,2024-02-01T06:30:00+00:00\r\n' +
        'acme,2024-01-08,11.00,21.00,31.00,1001.00,88.50,false,12.50,2024-02-01T06:30:00+00:00\r\n' +
        'acme,2024-01-15,12.00,22.00,32.00,1002.00,88.50,false,12.50,2024-02-01T06:30:00+00:00\r\n' +
        'acme,2024-01-22,13.00,23.00,33.00,1003.00,88.50,false,12.50,2024-02-01T06:30:00+00:00\r\n',
    );
    const globex = await getCsv(api, { claims: userClaims(GLOBEX) }, { limit: 1 });
    expect(globex.body).toBe(HEADER + 'globex,2024-01-22,53.00,63.00,73.00,2003.00,100.00,true,,2024-02-01T06:30:00+00:00\r\n');
  });

  it('has the columns of api.kpi_history_export, in order', async () => {
    const columns = await db.sql`
      select attname from pg_attribute where attrelid = 'api.kpi_history_export'::regclass and attnum > 0 order by attnum`;
    expect(HEADER.trim()).toBe(columns.map((c) => c.attname).join(','));
  });

  it('is only the header when nothing is in range', async () => {
    expect((await getCsv(api, acme, { from: '2030-01-01' })).body).toBe(HEADER);
  });

  it('keeps the latest `limit` weeks within [from, to]', async () => {
    const weeks = (body: unknown) => (body as string).trim().split('\r\n').slice(1).map((l) => l.split(',')[1]);
    expect(weeks((await getCsv(api, acme, { limit: 2 })).body)).toEqual(['2024-01-15', '2024-01-22']);
    expect(weeks((await getCsv(api, acme, { from: '2024-01-08', to: '2024-01-15' })).body)).toEqual(['2024-01-08', '2024-01-15']);
    expect(weeks((await getCsv(api, acme, { to: '2024-01-10', limit: 1 })).body)).toEqual(['2024-01-08']);
  });

  it('names the file after the tenant and today (UTC) in Content-Disposition', async () => {
    const response = await getCsv(api, acme);
    const [{ today }] = await db.sql<[{ today: string }]>`select to_char(now() at time zone 'UTC', 'YYYY-MM-DD') as today`;
    expect(response.headers).toEqual({ 'Content-Disposition': `attachment; filename="kpi-history-acme-${today}.csv"` });
  });

  it.each([
    ['limit 0', { limit: 0 }],
    ['limit above 1000', { limit: 1001 }],
    ['from after to', { from: '2024-02-01', to: '2024-01-01' }],
  ])('refuses %s with INVALID_INPUT 400', async (_what, args) => {
    expect(await getCsv(api, acme, args)).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT' } });
  });
});

describe('RFC 4180 fields (kpi_api.csv_field)', () => {
  it.each([
    ['plain', 'acme', 'acme'],
    ['NULL', null, ''],
    ['empty', '', ''],
    ['a comma', 'a,b', '"a,b"'],
    ['a quote', 'say "hi"', '"say ""hi"""'],
    ['a line break', 'two\r\nlines', '"two\r\nlines"'],
    ['a bare LF', 'a\nb', '"a\nb"'],
    ['a backslash', 'back\\slash', 'back\\slash'],
  ])('%s', async (_what, value, expected) => {
    const [{ field }] = await db.sql<[{ field: string }]>`select kpi_api.csv_field(${value}) as field`;
    expect(field).toBe(expected);
  });
});
