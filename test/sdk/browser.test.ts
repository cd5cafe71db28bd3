// The browser entry with an injected fetch: the exact requests it makes, and how it reads
// PostgREST's answers, errors and network failures.
import { format } from 'node:util';
import createDebug from 'debug';
import { afterEach, describe, expect, it } from 'vitest';
import { createKpiCronClient, createKpiHistoryClient } from '../../sdk/src/index.js';
import { json, postgrestError, recordingFetch } from './recording-fetch.js';
import { failure } from './kpi-error.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';

const URL_BASE = 'https://api.example.test/';
const TOKEN = 'header.payload.signature';
const SECRET = 'cron-secret-of-at-least-32-characters-xyz';
const ROW = {
  as_of: '2024-01-22',
  aiv_pct: 13,
  ati_pct: 23,
  crs_pct: 33,
  elasticity_usd_per_point: 1003,
  vli_integrity_pct: 88.5,
  vli_is_fallback: false,
  hrp_pct: null,
  updated_at: '2024-02-01T06:30:00+00:00',
};

describe('createKpiHistoryClient', () => {
  it('history(): GET /kpi_history with order and limit, bearer token and x-tenant', async () => {
    const { fetch, requests } = recordingFetch(() => json([ROW]));
    const client = createKpiHistoryClient({ url: URL_BASE, token: TOKEN, tenantId: ACME, fetch });
    expect(await client.history()).toEqual([ROW]);
    expect(requests).toHaveLength(1);
    const [request] = requests;
    expect(request!.method).toBe('GET');
    expect(request!.url.origin + request!.url.pathname).toBe('https://api.example.test/kpi_history');
    expect([...request!.url.searchParams]).toEqual([
      ['select', '*'],
      ['order', 'as_of.desc'],
      ['limit', '52'],
    ]);
    expect(request!.headers).toMatchObject({ authorization: `Bearer ${TOKEN}`, 'x-tenant': ACME, 'accept-profile': 'api' });
  });

  it('history({ from, to, limit, order }) adds PostgREST filters', async () => {
    const { fetch, requests } = recordingFetch(() => json([]));
    await createKpiHistoryClient({ url: URL_BASE, token: TOKEN, fetch }).history({ from: '2024-01-01', to: '2024-03-31', limit: 5, order: 'asc' });
    expect([...requests[0]!.url.searchParams]).toEqual([
      ['select', '*'],
      ['order', 'as_of.asc'],
      ['limit', '5'],
      ['as_of', 'gte.2024-01-01'],
      ['as_of', 'lte.2024-03-31'],
    ]);
    expect(requests[0]!.headers).not.toHaveProperty('x-tenant');
  });

  it('exportCsv(): GET /rpc/kpi_history_csv with Accept: text/csv, the text as is', async () => {
    const csv = 'tenant,as_of\r\nacme,2024-01-22\r\n';
    const { fetch, requests } = recordingFetch(
      () => new Response(csv, { headers: { 'content-type': 'text/csv', 'content-disposition': 'attachment; filename="kpi-history-acme-2024-02-01.csv"' } }),
    );
    const client = createKpiHistoryClient({ url: URL_BASE, token: TOKEN, tenantId: ACME, fetch, headers: { apikey: 'gateway' } });
    expect(await client.exportCsv({ weeks: 12, from: '2024-01-01', to: '2024-06-30' })).toBe(csv);
    const request = requests[0]!;
    expect(request.method).toBe('GET');
    expect(request.url.pathname).toBe('/rpc/kpi_history_csv');
    // `weeks`, never `limit`: PostgREST keeps a `limit` query key for itself.
    expect(request.url.search).toBe('?weeks=12&from=2024-01-01&to=2024-06-30');
    await client.exportCsv({ limit: 5 });
    expect(requests[1]!.url.search).toBe('?weeks=5');
    expect(request.headers).toMatchObject({ accept: 'text/csv', authorization: `Bearer ${TOKEN}`, 'x-tenant': ACME, apikey: 'gateway' });
  });

  it('exportCsvFile(): a text/csv Blob and the server’s file name', async () => {
    const { fetch } = recordingFetch(
      () => new Response('a\r\n', { headers: { 'content-disposition': 'attachment; filename="kpi-history-acme-2024-02-01.csv"' } }),
    );
    const file = await createKpiHistoryClient({ url: URL_BASE, token: TOKEN, fetch }).exportCsvFile();
    expect(file.filename).toBe('kpi-history-acme-2024-02-01.csv');
    expect(file.blob.type).toBe('text/csv');
    expect(await file.blob.text()).toBe('a\r\n');
  });

  it('health(): GET /rpc/kpi_history_health', async () => {
    const body = { status: 'healthy', timestamp: 't', reasons: [], last_run: null, last_success_at: null, schedule: null };
    const { fetch, requests } = recordingFetch(() => json(body));
    expect(await createKpiHistoryClient({ url: URL_BASE, token: TOKEN, fetch }).health()).toEqual(body);
    expect(requests[0]).toMatchObject({ method: 'GET', body: null });
    expect(requests[0]!.url.pathname).toBe('/rpc/kpi_history_health');
  });
});

describe('createKpiCronClient', () => {
  it('run(): POST /rpc/kpi_history_cron with body {} and the x-cron-secret header, no token', async () => {
    const result = { ok: 3, total: 4, errors: [], warnings: [], rows_written: 3, status: 'partial', run_id: 1 };
    const { fetch, requests } = recordingFetch(() => json(result));
    expect(await createKpiCronClient({ url: URL_BASE, cronSecret: SECRET, fetch }).run()).toEqual(result);
    const request = requests[0]!;
    expect(request.method).toBe('POST');
    expect(request.url.href).toBe('https://api.example.test/rpc/kpi_history_cron');
    expect(JSON.parse(request.body!)).toEqual({});
    expect(request.headers).toMatchObject({ 'x-cron-secret': SECRET, 'content-type': 'application/json', 'content-profile': 'api' });
    expect(request.headers).not.toHaveProperty('authorization');
  });

  it('run({ tenantId }): the original body {"tenantId": …}', async () => {
    const { fetch, requests } = recordingFetch(() => json({ ok: true, as_of: '2024-01-22' }));
    expect(await createKpiCronClient({ url: URL_BASE, cronSecret: SECRET, fetch }).run({ tenantId: GLOBEX })).toEqual({
      ok: true,
      as_of: '2024-01-22',
    });
    expect(JSON.parse(requests[0]!.body!)).toEqual({ tenantId: GLOBEX });
  });
});

describe('errors', () => {
  it.each([
    [postgrestError(403, 'FORBIDDEN', 'a valid cron secret is required', 'Send it in the x-cron-secret header.'), 'FORBIDDEN', 403],
    [postgrestError(400, 'INVALID_INPUT', 'tenantId must be a UUID string'), 'INVALID_INPUT', 400],
    [postgrestError(404, 'UNKNOWN_TENANT', 'no tenant has id …'), 'UNKNOWN_TENANT', 404],
    [postgrestError(422, 'NO_AVI', 'tenant initech has no AVI report'), 'NO_AVI', 422],
    [postgrestError(500, 'INTERNAL_ERROR', 'the run failed and changed nothing; see run 7 in kpi.kpi_runs'), 'INTERNAL_ERROR', 500],
    [postgrestError(401, 'PGRST301', 'JWSError JWSInvalidSignature'), 'UNAUTHORIZED', 401],
    [postgrestError(401, '42501', 'permission denied for view kpi_history'), 'UNAUTHORIZED', 401],
    [postgrestError(403, '42501', 'permission denied for function kpi_history_cron'), 'FORBIDDEN', 403],
  ])('a PostgREST error answer becomes KpiHistoryError %#', async (response, code, status) => {
    const { fetch } = recordingFetch(() => response.clone());
    const error = await failure(createKpiCronClient({ url: URL_BASE, cronSecret: SECRET, fetch }).run({ tenantId: ACME }));
    const body = (await response.clone().json()) as { message: string; code: string; hint: string | null };
    expect(error).toMatchObject({ code, status, message: body.message, hint: body.hint, serverCode: body.code });
  });

  it('TENANT_REQUIRED and FORBIDDEN reach history() and exportCsv() the same way', async () => {
    const { fetch } = recordingFetch(() => postgrestError(400, 'TENANT_REQUIRED', 'choose one with the x-tenant header'));
    const client = createKpiHistoryClient({ url: URL_BASE, token: TOKEN, fetch });
    expect(await failure(client.history())).toMatchObject({ code: 'TENANT_REQUIRED', status: 400 });
    expect(await failure(client.exportCsv())).toMatchObject({ code: 'TENANT_REQUIRED', status: 400 });
  });

  it('a network failure is NETWORK_ERROR, for every call', async () => {
    const { fetch } = recordingFetch(() => {
      throw new TypeError('fetch failed');
    });
    const client = createKpiHistoryClient({ url: URL_BASE, token: TOKEN, fetch, retry: false });
    expect(await failure(client.history())).toMatchObject({ code: 'NETWORK_ERROR', status: undefined });
    expect(await failure(client.exportCsv())).toMatchObject({ code: 'NETWORK_ERROR' });
    expect(await failure(client.health())).toMatchObject({ code: 'NETWORK_ERROR' });
    expect(await failure(createKpiCronClient({ url: URL_BASE, cronSecret: SECRET, fetch }).run())).toMatchObject({ code: 'NETWORK_ERROR' });
  });

  it('an answer that is not PostgREST’s is UNEXPECTED_RESPONSE or mapped by status', async () => {
    const { fetch } = recordingFetch(() => new Response('<html>Bad gateway</html>', { status: 502 }));
    const error = await failure(createKpiHistoryClient({ url: URL_BASE, token: TOKEN, fetch, retry: false }).exportCsv());
    expect(error).toMatchObject({ code: 'INTERNAL_ERROR', status: 502 });
  });
});

describe('debug logging', () => {
  const originalLog = createDebug.log;
  afterEach(() => {
    createDebug.disable();
    createDebug.log = originalLog;
  });

  it('DEBUG=kpi-history:* logs method, path, status and duration, never the token or the secret', async () => {
    const lines: string[] = [];
    createDebug.enable('kpi-history:*');
    createDebug.log = (...args: unknown[]) => lines.push(format(...args));
    const { fetch } = recordingFetch(() => json([]));
    await createKpiHistoryClient({ url: URL_BASE, token: TOKEN, tenantId: ACME, fetch }).history({ limit: 3 });
    await createKpiCronClient({ url: URL_BASE, cronSecret: SECRET, fetch }).run();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/GET \/kpi_history\?select=\*&order=as_of\.desc&limit=3 200 \d+ms/);
    expect(lines[1]).toMatch(/POST \/rpc\/kpi_history_cron 200 \d+ms/);
    expect(lines.join('\n')).not.toContain(TOKEN);
    expect(lines.join('\n')).not.toContain(SECRET);
  });
});
