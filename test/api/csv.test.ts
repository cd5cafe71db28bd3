// GET /rpc/kpi_history_csv with Accept: text/csv, through the PostgREST replay: RFC 4180 bytes, the
// weeks and the range, the headers, and our error codes for every bad argument.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, get } from '../helpers/postgrest.js';
import { getCsv, insertTwoTenantsWithHistory, userClaims } from '../fixtures/api.js';
import { ACME, GLOBEX, UNKNOWN } from '../fixtures/tenants.js';

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
    const globex = await getCsv(api, { claims: userClaims(GLOBEX) }, { weeks: 1 });
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

  it('keeps the latest `weeks` weeks within [from, to]', async () => {
    const weeks = (body: unknown) => (body as string).trim().split('\r\n').slice(1).map((l) => l.split(',')[1]);
    expect(weeks((await getCsv(api, acme, { weeks: 2 })).body)).toEqual(['2024-01-15', '2024-01-22']);
    expect(weeks((await getCsv(api, acme, { from: '2024-01-08', to: '2024-01-15' })).body)).toEqual(['2024-01-08', '2024-01-15']);
    expect(weeks((await getCsv(api, acme, { to: '2024-01-10', weeks: 1 })).body)).toEqual(['2024-01-08']);
  });

  it('names the file after the tenant and today (UTC) in Content-Disposition', async () => {
    const response = await getCsv(api, acme);
    const [{ today }] = await db.sql<[{ today: string }]>`select to_char(now() at time zone 'UTC', 'YYYY-MM-DD') as today`;
    expect(response.headers).toMatchObject({
      'content-type': 'text/csv; charset=utf-8',
      'content-disposition': `attachment; filename="kpi-history-acme-${today}.csv"`,
    });
  });

  it.each([
    ['weeks=0', { weeks: 0 }],
    ['weeks=1001', { weeks: 1001 }],
    ['weeks=-3', { weeks: -3 }],
    ['a non-number', { weeks: 'twelve' }],
    ['a fraction', { weeks: '1.5' }],
    ['an integer beyond int4', { weeks: '99999999999' }],
    ['an empty weeks=', { weeks: '' }],
    ['a date that does not exist', { from: '2026-02-30' }],
    ['month 13', { to: '2024-13-01' }],
    ['not a date', { from: 'yesterday' }],
    ['from after to', { from: '2024-02-01', to: '2024-01-01' }],
  ])('refuses %s with INVALID_INPUT 400, our body', async (_what, args) => {
    const response = await getCsv(api, acme, args);
    expect(response).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT', details: null } });
    expect((response.body as { message: string }).message).toMatch(/weeks|from|to/);
  });

  it('limit= is PostgREST’s own key: it limits the response rows, never the weeks (why the parameter is `weeks`)', async () => {
    const response = await get<string>(api, '/rpc/kpi_history_csv?limit=2', { ...acme, headers: { Accept: 'text/csv' } });
    expect(response.status).toBe(200);
    expect((response.body as string).trim().split('\r\n')).toHaveLength(1 + 4);
  });

  it('an argument it does not take is 404 PGRST202, as PostgREST answers', async () => {
    const response = await get(api, '/rpc/kpi_history_csv?week=2', { ...acme, headers: { Accept: 'text/csv' } });
    expect(response).toMatchObject({ status: 404, body: { code: 'PGRST202' } });
  });

  it('without Accept: text/csv the same call answers the CSV as one JSON string', async () => {
    const csv = await getCsv(api, acme, { weeks: 1 });
    for (const accept of [undefined, '*/*', 'application/json']) {
      const response = await get(api, '/rpc/kpi_history_csv?weeks=1', { ...acme, headers: accept ? { Accept: accept } : {} });
      expect(response.headers['content-type'], String(accept)).toBe('application/json; charset=utf-8');
      expect(response.body, String(accept)).toBe(csv.body);
    }
  });

  it('a token granting an id that is no tenant gets UNKNOWN_TENANT 404, not a file named after nobody', async () => {
    const response = await getCsv(api, { claims: userClaims(UNKNOWN) });
    expect(response).toMatchObject({ status: 404, body: { code: 'UNKNOWN_TENANT' } });
    expect(response.headers).not.toHaveProperty('content-disposition');
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
