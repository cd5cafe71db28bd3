// The change stream against hostile clients: no client can fail or starve another. Streams per
// token and per tenant are capped (429, Retry-After); a client that never reads is fed a page at a
// time and dropped past its buffer, while another tenant's client opens and follows as usual;
// connections closed at once are forgotten; an empty Last-Event-ID starts from now; a stream ends
// when its token does.
import { connect as tcpConnect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { TEST_JWT_SECRET } from '../helpers/postgrest.js';
import { insertTwoTenantsWithHistory } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';
import { mintToken } from '../../scripts/token.js';
import { startChangeStream, type ChangeStream } from '../../sdk/src/stream.js';
import { serverSentEvents, type ServerSentEvent } from '../../sdk/src/watch.js';
import { createKpiHistoryClient } from '../../sdk/src/index.js';
import { compareCursors } from '../../sdk/src/follow.js';

const db = useTestDatabase();
let stream: ChangeStream;
let acmeToken: string;
let globexToken: string;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
// Generous: the machine may be busy with other test files.
async function until(done: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

async function open(token: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const started = Date.now();
  const response = await fetch(stream.url, { headers: { Authorization: `Bearer ${token}`, ...headers }, signal: controller.signal });
  const openedMs = Date.now() - started;
  const events: ServerSentEvent[] = [];
  let ended = false;
  if (response.ok) {
    void (async () => {
      try {
        for await (const event of serverSentEvents(response.body!)) events.push(event);
      } catch {
        // aborted
      }
      ended = true;
    })();
  }
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    body: response.ok ? null : ((await response.json()) as { code: string; message: string }),
    openedMs,
    events,
    changes: () => events.filter((e) => e.event === 'change'),
    ended: () => ended,
    close: () => controller.abort(),
  };
}

/** A client that asks for the stream and then never reads a byte: its socket fills, then the server's buffer. */
function neverReading(token: string, lastEventId: string): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = tcpConnect(stream.port, '127.0.0.1', () => {
      socket.write(`GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nLast-Event-ID: ${lastEventId}\r\n\r\n`);
      socket.pause();
      resolve(socket);
    });
  });
}

const week = (n: number) => new Date(Date.UTC(2027, 0, 4 + 7 * n)).toISOString().slice(0, 10);
async function writeWeeks(tenantId: string, from: number, count: number): Promise<void> {
  await db.sql`
    insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
    select ${tenantId}, ${week(0)}::date + 7 * n, 50, 50, 50, 1000, 100, true, null from generate_series(${from}::int, ${from + count - 1}::int) n`;
}

beforeAll(async () => {
  await insertTwoTenantsWithHistory(db.sql);
  // Small limits, so that a test reaches them quickly.
  stream = await startChangeStream({
    databaseUrl: db.url,
    jwtSecret: TEST_JWT_SECRET,
    port: 0,
    heartbeatMs: 100,
    maxStreamsPerToken: 3,
    maxStreamsPerTenant: 5,
    maxBufferedBytes: 256 * 1024,
    drainTimeoutMs: 1_000,
  });
  acmeToken = await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME] });
  globexToken = await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [GLOBEX] });
});
afterAll(() => stream.stop());

describe('caps', { timeout: 90_000 }, () => {
  it('streams per token: the one too many answers 429 with Retry-After; closing one frees its place', async () => {
    const streams = [await open(acmeToken), await open(acmeToken), await open(acmeToken)];
    expect(streams.map((s) => s.status)).toEqual([200, 200, 200]);
    const refused = await open(acmeToken);
    expect(refused).toMatchObject({ status: 429, retryAfter: '5', body: { code: 'RATE_LIMITED', message: 'this token has 3 streams open already' } });
    streams[0]!.close();
    await until(() => stream.clients() === 2);
    const again = await open(acmeToken);
    expect(again.status).toBe(200);
    for (const s of [...streams, again]) s.close();
    await until(() => stream.clients() === 0);
  });

  it('streams per tenant, whatever the tokens: the sixth answers 429', async () => {
    const tokens = await Promise.all(Array.from({ length: 6 }, (_, i) => mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME], sub: `user-${i}` })));
    const streams = [];
    for (const token of tokens.slice(0, 5)) streams.push(await open(token));
    expect(streams.every((s) => s.status === 200)).toBe(true);
    expect(await open(tokens[5]!)).toMatchObject({ status: 429, body: { code: 'RATE_LIMITED', message: 'this tenant has 5 streams open already' } });
    // Another tenant is not concerned.
    const other = await open(globexToken);
    expect(other.status).toBe(200);
    for (const s of [...streams, other]) s.close();
    await until(() => stream.clients() === 0);
  });

  it('connections that close at once, even before they are authorized, are never counted as staying', async () => {
    const sockets = await Promise.all(
      Array.from({ length: 200 }, () =>
        new Promise<Socket>((resolve) => {
          const socket = tcpConnect(stream.port, '127.0.0.1', () => {
            socket.write(`GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${acmeToken}\r\n\r\n`);
            resolve(socket);
          });
        }),
      ),
    );
    for (const socket of sockets) socket.destroy();
    await sleep(1_000);
    expect(stream.clients()).toBe(0);
    // Nor do they hold the token's places: it opens its streams as before.
    const streams = [await open(acmeToken), await open(acmeToken), await open(acmeToken)];
    expect(streams.map((s) => s.status)).toEqual([200, 200, 200]);
    for (const s of streams) s.close();
    await until(() => stream.clients() === 0);
  });
});

describe('a client that does not read', { timeout: 90_000 }, () => {
  it('catches up a page at a time, is dropped past its buffer, and another tenant opens and follows meanwhile', async () => {
    await writeWeeks(ACME, 100, 10_000); // a long log to catch up on
    const stuck = await neverReading(acmeToken, '1.0');
    let other: Awaited<ReturnType<typeof open>> | null = null;
    try {
      await until(() => stream.clients() === 1);
      other = await open(globexToken);
      expect(other.status).toBe(200);
      expect(other.openedMs).toBeLessThan(2_000);
      await writeWeeks(GLOBEX, 100, 1);
      await until(() => other!.changes().length === 1);
      // The reader of nothing is dropped (it read no page within the drain timeout) …
      await until(() => stream.clients() === 1, 10_000);
    } finally {
      other?.close();
      stuck.destroy();
    }
    await until(() => stream.clients() === 0);
  });

  it('a live client too far behind goes back to catching up, one that reads nothing is dropped; a watch() client gets every change once, in order', { timeout: 90_000 }, async () => {
    const stuck = await neverReading(globexToken, '');
    const seen: string[] = [];
    const stop = new AbortController();
    const kpi = createKpiHistoryClient({ url: 'http://127.0.0.1:9', token: globexToken, streamUrl: stream.url });
    const droppedBefore = stream.dropped();
    const watching = kpi.watch({ onChange: (change) => void seen.push(change.cursor), signal: stop.signal, retryMs: 50 });
    try {
      await until(() => stream.clients() === 2);
      // Enough live changes (about 18 MB of events) to fill the kernel's socket buffers on both
      // sides (loopback grows them to several MB), then the stuck client's buffer.
      for (let i = 0; i < 10; i++) await writeWeeks(GLOBEX, 1_000 + i * 5_000, 5_000);
      await until(() => seen.length >= 50_000, 60_000);
      expect(stream.dropped()).toBeGreaterThan(droppedBefore);
      // Every change once, in order, whatever happened to its connections.
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual([...seen].sort(compareCursors));
    } finally {
      stuck.destroy();
      stop.abort();
      await watching;
    }
    await until(() => stream.clients() === 0);
  });
});

describe('where a stream starts and ends', { timeout: 90_000 }, () => {
  it('an empty Last-Event-ID starts from now (a client that never got an event)', async () => {
    const client = await open(acmeToken, { 'Last-Event-ID': '' });
    expect(client.status).toBe(200);
    await sleep(100);
    await writeWeeks(ACME, 30_000, 1);
    await until(() => client.changes().length === 1);
    expect(JSON.parse(client.changes()[0]!.data)).toMatchObject({ as_of: week(30_000) });
    client.close();
    await until(() => stream.clients() === 0);
  });

  it('ends when its token expires, saying so: nothing reaches it afterwards', async () => {
    const shortLived = await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME], ttlSeconds: 2 });
    const client = await open(shortLived);
    expect(client.status).toBe(200);
    await until(() => client.ended(), 5_000);
    expect(client.events.at(-1)).toMatchObject({ event: 'error', data: JSON.stringify({ code: 'UNAUTHORIZED', message: 'the JWT has expired' }) });
    await writeWeeks(ACME, 30_001, 1);
    await sleep(300);
    expect(client.changes()).toEqual([]);
    await until(() => stream.clients() === 0);
  });
});
