// The change stream (GET /v1/stream, Server-Sent Events) against the real database: tokens it
// refuses, the tenant rules of the API, live changes of the connected tenant only, resuming with
// Last-Event-ID without loss or duplicates, and heartbeats.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SignJWT } from 'jose';
import { connect, useTestDatabase } from '../helpers/database.js';
import { TEST_JWT_SECRET } from '../helpers/postgrest.js';
import { insertTwoTenantsWithHistory } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';
import { mintToken } from '../../scripts/token.js';
import { startChangeStream, type ChangeStream } from '../../sdk/src/stream.js';
import { createKpiHistoryClient } from '../../sdk/src/index.js';
import { serverSentEvents, type ServerSentEvent } from '../../sdk/src/watch.js';
import { watchKpiHistory, type LoggedChange } from '../../sdk/src/follow.js';

const db = useTestDatabase();
let stream: ChangeStream;
let acmeToken: string;

/** An open stream: its status, the events parsed so far, and a way to wait for more. */
async function open(token: string | null, options: { headers?: Record<string, string>; query?: string } = {}) {
  const controller = new AbortController();
  const response = await fetch(`${stream.url}${options.query ? `?${options.query}` : ''}`, {
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...options.headers },
    signal: controller.signal,
  });
  const events: ServerSentEvent[] = [];
  if (response.ok) {
    void (async () => {
      try {
        for await (const event of serverSentEvents(response.body!)) events.push(event);
      } catch {
        // aborted
      }
    })();
  }
  const changes = () => events.filter((e) => e.event === 'change').map((e) => ({ id: e.id!, ...(JSON.parse(e.data) as { cursor: string; op: string; as_of: string; entity: string }) }));
  return {
    status: response.status,
    body: response.ok ? null : ((await response.json()) as { code: string; message: string }),
    events,
    changes,
    async waitFor(count: number, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (changes().length < count) {
        if (Date.now() > deadline) throw new Error(`waited for ${count} changes, got ${changes().length}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return changes();
    },
    close: () => controller.abort(),
  };
}

const week = (n: number) => new Date(Date.UTC(2027, 0, 4 + 7 * n)).toISOString().slice(0, 10);
async function writeWeek(tenantId: string, n: number): Promise<void> {
  await db.sql`
    insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
    values (${tenantId}, ${week(n)}, 50, 50, 50, 1000, 100, true, null)`;
}

beforeAll(async () => {
  await insertTwoTenantsWithHistory(db.sql);
  stream = await startChangeStream({ databaseUrl: db.url, jwtSecret: TEST_JWT_SECRET, port: 0, heartbeatMs: 200 });
  acmeToken = await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME] });
});
afterAll(() => stream.stop());

describe('refused', () => {
  it.each([
    ['no token', async () => null, 401, /JWT is required/],
    ['an expired token', () => mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME], ttlSeconds: 60, now: new Date(Date.now() - 7_200_000) }), 401, /expired/],
    ['a token signed with another secret', () => mintToken({ secret: `${TEST_JWT_SECRET}-other`, tenantIds: [ACME] }), 401, /not valid/],
    [
      'an unsigned token (alg: none)',
      async () => {
        const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
        return `${part({ alg: 'none', typ: 'JWT' })}.${part({ role: 'authenticated', tenant_ids: [ACME] })}.`;
      },
      401,
      /not valid/,
    ],
    ['an HS512 token', () => new SignJWT({ role: 'authenticated', tenant_ids: [ACME] }).setProtectedHeader({ alg: 'HS512' }).sign(new TextEncoder().encode(TEST_JWT_SECRET)), 401, /not valid/],
    ['role anon', () => new SignJWT({ role: 'anon' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(TEST_JWT_SECRET)), 403, /authenticated/],
  ])('%s → %d', async (_what, token, status, message) => {
    const opened = await open(await token());
    expect(opened.status).toBe(status);
    expect(opened.body!.message).toMatch(message);
  });

  it('another tenant, by header or query: FORBIDDEN 403; several granted and none chosen: TENANT_REQUIRED 400', async () => {
    expect(await open(acmeToken, { headers: { 'x-tenant': GLOBEX } })).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect(await open(acmeToken, { query: `tenant=${GLOBEX}` })).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    const both = await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME, GLOBEX] });
    expect(await open(both)).toMatchObject({ status: 400, body: { code: 'TENANT_REQUIRED' } });
    const chosen = await open(both, { query: `tenant=${GLOBEX}` });
    expect(chosen.status).toBe(200);
    chosen.close();
  });

  it('a cursor that is none: INVALID_INPUT 400, before the stream starts', async () => {
    expect(await open(acmeToken, { headers: { 'Last-Event-ID': 'yesterday' } })).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT' } });
  });
});

describe('health', () => {
  it('GET /v1/health answers 200 while the database answers, without a token and telling nothing of tenants', async () => {
    const health = await fetch(stream.url.replace('/v1/stream', '/v1/health'));
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', clients: stream.clients() });
  });

  it('answers 503 when its database does not', async () => {
    const cut = await startChangeStream({ databaseUrl: db.url, jwtSecret: TEST_JWT_SECRET, port: 0 });
    const url = cut.url.replace('/v1/stream', '/v1/health');
    // Every session of the stream's pool ended from the server side, and new ones refused.
    const admin = connect(inject('testDatabase').serverUrl, { max: 1 });
    await admin`alter database ${admin(db.name)} with allow_connections false`;
    try {
      await admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'kpi-history-stream' and datname = ${db.name}`;
      const health = await fetch(url);
      expect(health.status).toBe(503);
      expect(await health.json()).toMatchObject({ status: 'unavailable' });
    } finally {
      await admin`alter database ${admin(db.name)} with allow_connections true`;
      await admin.end();
      await cut.stop().catch(() => undefined);
    }
  });
});

describe('live changes', () => {
  it('reach the clients of their tenant only, with the cursor as the event id, within moments of the commit', async () => {
    const acme = await open(acmeToken);
    const globex = await open(await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [GLOBEX] }));
    expect([acme.status, globex.status]).toEqual([200, 200]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await writeWeek(ACME, 0);
    const [change] = await acme.waitFor(1);
    expect(change).toMatchObject({ entity: 'history', op: 'insert', as_of: week(0) });
    expect(change!.id).toBe(change!.cursor);
    await writeWeek(GLOBEX, 0);
    const [theirs] = await globex.waitFor(1);
    expect(theirs!.as_of).toBe(week(0));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(acme.changes()).toHaveLength(1); // nothing of Globex's
    expect(globex.changes()).toHaveLength(1); // nothing of Acme's
    acme.close();
    globex.close();
  });

  it('a reconnect with Last-Event-ID gets exactly what it missed, then live changes, no duplicates', async () => {
    const first = await open(acmeToken);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await writeWeek(ACME, 1);
    const [seen] = await first.waitFor(1);
    first.close();
    await writeWeek(ACME, 2);
    await writeWeek(ACME, 3);
    const resumed = await open(acmeToken, { headers: { 'Last-Event-ID': seen!.id } });
    expect(resumed.status).toBe(200);
    expect((await resumed.waitFor(2)).map((c) => c.as_of)).toEqual([week(2), week(3)]);
    await writeWeek(ACME, 4);
    await resumed.waitFor(3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(resumed.changes().map((c) => c.as_of)).toEqual([week(2), week(3), week(4)]);
    resumed.close();
  });

  it('a change held back by an older transaction that ends without a notification still arrives', async () => {
    const client = await open(acmeToken);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const older = await db.sql.reserve();
    try {
      await older`begin`;
      // A write elsewhere: the transaction has an id now, and its commit will notify nobody.
      await older`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point) values (${GLOBEX}, '2031-01-06', 1, 1, 1, 1)`;
      await writeWeek(ACME, 40); // commits and notifies, but is held back behind the older one
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(client.changes()).toEqual([]);
      await older`commit`;
    } finally {
      older.release();
    }
    expect((await client.waitFor(1, 10_000)).map((c) => c.as_of)).toEqual([week(40)]);
    client.close();
  });

  it('sends heartbeats while idle, and forgets a client that left', async () => {
    const idle = await open(acmeToken);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(idle.events.filter((e) => e.comment === 'ping').length).toBeGreaterThanOrEqual(1);
    expect(stream.clients()).toBeGreaterThanOrEqual(1);
    idle.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stream.clients()).toBe(0);
  });
});

async function until(done: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('watch() in the SDK', () => {
  it('hands over the changes in order; after a dropped connection it resumes, without loss or duplicates', async () => {
    const connections: AbortController[] = [];
    // Each connection gets its own controller, so the test can drop one as a network would.
    const droppingFetch = ((input: RequestInfo | URL, init?: RequestInit) => {
      const connection = new AbortController();
      init?.signal?.addEventListener('abort', () => connection.abort());
      connections.push(connection);
      return fetch(input, { ...init, signal: connection.signal });
    }) as typeof fetch;
    const kpi = createKpiHistoryClient({ url: 'http://127.0.0.1:9', token: acmeToken, streamUrl: stream.url, fetch: droppingFetch });
    const seen: string[] = [];
    const errors: string[] = [];
    const stop = new AbortController();
    const watching = kpi.watch({ onChange: (change) => void seen.push(change.as_of), onError: (error) => void errors.push(error.code), signal: stop.signal, retryMs: 50 });
    await until(() => stream.clients() === 1);
    await writeWeek(ACME, 10);
    await until(() => seen.length === 1);
    connections[0]!.abort(); // the connection drops
    await writeWeek(ACME, 11);
    await writeWeek(ACME, 12);
    await until(() => seen.length === 3);
    await writeWeek(ACME, 13);
    await until(() => seen.length === 4);
    await new Promise((resolve) => setTimeout(resolve, 200));
    stop.abort();
    await watching;
    expect(seen).toEqual([week(10), week(11), week(12), week(13)]);
    expect(errors).toContain('NETWORK_ERROR');
    expect(connections.length).toBe(2);
  });

  it('rejects with the refusal: a tenant the token does not grant is FORBIDDEN; no streamUrl is INVALID_INPUT', async () => {
    const other = createKpiHistoryClient({ url: 'http://127.0.0.1:9', token: acmeToken, tenantId: GLOBEX, streamUrl: stream.url });
    await expect(other.watch({ onChange: () => {} })).rejects.toMatchObject({ code: 'FORBIDDEN', status: 403 });
    const without = createKpiHistoryClient({ url: 'http://127.0.0.1:9', token: acmeToken });
    await expect(without.watch({ onChange: () => {} })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});

describe('watchKpiHistory() for server code', () => {
  it('one tenant’s changes in order as they commit; resumed from its position, it gets what it missed once', async () => {
    const seen: LoggedChange[] = [];
    const watch = await watchKpiHistory({ databaseUrl: db.url, tenantId: ACME }, (change) => void seen.push(change));
    await writeWeek(ACME, 20);
    await writeWeek(GLOBEX, 20);
    await writeWeek(ACME, 21);
    await until(() => seen.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen.map((c) => [c.tenant_id, c.as_of])).toEqual([[ACME, week(20)], [ACME, week(21)]]);
    const position = watch.position();
    expect(position).toBe(seen[1]!.cursor);
    await watch.stop();

    await writeWeek(ACME, 22);
    const later: LoggedChange[] = [];
    const resumed = await watchKpiHistory({ databaseUrl: db.url, tenantId: ACME, after: position }, (change) => void later.push(change));
    await until(() => later.length === 1);
    await writeWeek(ACME, 23);
    await until(() => later.length === 2);
    await resumed.stop();
    expect(later.map((c) => c.as_of)).toEqual([week(22), week(23)]);
  });

  it('without a tenant, every tenant’s changes, each with its tenant', async () => {
    const seen: LoggedChange[] = [];
    const watch = await watchKpiHistory({ databaseUrl: db.url }, (change) => void seen.push(change));
    await writeWeek(GLOBEX, 30);
    await writeWeek(ACME, 30);
    await until(() => seen.length === 2);
    await watch.stop();
    expect(seen.map((c) => c.tenant_id)).toEqual([GLOBEX, ACME]);
  });
});
