// Alert delivery against a real HTTP server on loopback: the signed request (checked with
// openssl, an independent HMAC), retries after 5xx, 429 and a dropped connection, no retry after a
// 4xx, dead after the retry window, two workers sharing 1,000 alerts (each posted exactly once),
// and a worker killed mid-request (the alert is posted again once its lease ends).
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { format } from 'node:util';
import createDebug from 'debug';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { insertTenant } from '../fixtures/sources.js';
import { startAlertDelivery, type AlertDelivery, type AlertDeliveryOptions } from '../../sdk/src/server.js';
import { createAlertReceiver, verifyAlertSignature } from '../../sdk/examples/alert-receiver.js';

const db = useTestDatabase();
const SECRET = 'alert-webhook-secret-0123456789-abcdef';
const TENANT = '00000000-0000-4000-a000-00000000a1e7';

interface Received {
  id: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}
/** What the receiver does with the n-th request (from 1) for an alert. */
type Behaviour = (alertId: string, attempt: number) => number | 'drop' | 'hang';

let server: Server;
let baseUrl: string;
let received: Received[] = [];
let behaviour: Behaviour = () => 200;
const hanging: ServerResponse[] = [];
let templateId: string;

beforeAll(async () => {
  server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      const id = String(request.headers['kpi-alert-id']);
      received.push({ id, path: request.url ?? '', headers: request.headers, body });
      const action = behaviour(id, received.filter((r) => r.id === id).length);
      if (action === 'drop') return request.socket.destroy();
      if (action === 'hang') return void hanging.push(response);
      response.writeHead(action, action === 429 ? { 'Retry-After': '0' } : {}).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // One tenant with an anomaly this week: twelve weeks around 51, then AIV 90.
  await insertTenant(db.sql, TENANT, 'alerted', 'Alerted Inc.');
  const [{ monday }] = await db.sql<[{ monday: string }]>`select date_trunc('week', now() at time zone 'UTC')::date::text as monday`;
  await db.sql`
    insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
    select ${TENANT}, ${monday}::date - 7 * (12 - w), case when w = 12 then 90 else 50 + w % 3 end, 40, 30, 1000, 100, true, 10
    from generate_series(0, 12) w`;
  const [alert] = await db.sql<[{ id: string }]>`select id::text from kpi.alerts where tenant_id = ${TENANT} and status = 'pending'`;
  templateId = alert.id;
  // The template is only copied (enqueue): no test finds it pending, whichever runs first.
  await db.sql`update kpi.alerts set status = 'suppressed', finished_at = now() where id = ${templateId}`;
});
afterAll(async () => {
  for (const response of hanging) response.destroy();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  received = [];
  behaviour = () => 200;
});

/** The environment without the stream's secret: these workers deliver alerts only. */
function withoutStream(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { PGRST_JWT_SECRET: _secret, ...rest } = env;
  return rest;
}

/** `count` more alerts about the same anomaly, pending now; their ids. */
async function enqueue(count: number): Promise<string[]> {
  const rows = await db.sql<{ id: string }[]>`
    insert into kpi.alerts (tenant_id, as_of, kpi, payload)
    select a.tenant_id, a.as_of, a.kpi, a.payload from kpi.alerts a cross join generate_series(1, ${count}) n
    where a.tenant_id = ${TENANT} and a.id = ${templateId}
    returning id::text`;
  return rows.map((r) => r.id);
}

async function alertRow(id: string) {
  const [row] = await db.sql`select status, attempts, last_status, last_error, claimed_by from kpi.alerts where tenant_id = ${TENANT} and id = ${id}`;
  return row!;
}

function worker(options: Partial<AlertDeliveryOptions> = {}): AlertDelivery {
  return startAlertDelivery({
    databaseUrl: db.url,
    webhookUrl: `${baseUrl}/hook`,
    secret: SECRET,
    retryBaseMs: 20,
    pollIntervalMs: 50,
    leaseMs: 2_000,
    timeoutMs: 1_000,
    ...options,
  });
}

/** Waits until `done` holds, checking every 50 ms, for at most `ms`. */
async function until(done: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the request', () => {
  it('posts the anomaly as JSON, with KPI-Alert-Id and a KPI-Signature that openssl verifies', async () => {
    const [id] = await enqueue(1);
    const delivery = worker();
    try {
      await until(async () => (await alertRow(id!)).status === 'delivered');
    } finally {
      await delivery.stop();
    }
    expect(received).toHaveLength(1);
    const [request] = received;
    expect(request!.path).toBe('/hook');
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers['kpi-alert-id']).toBe(id!);
    const body = JSON.parse(request!.body);
    expect(Object.keys(body).slice(0, 9)).toEqual(['id', 'tenant', 'as_of', 'kpi', 'value', 'baseline_median', 'score', 'direction', 'detected_at']);
    expect(body).toMatchObject({ id: id!, tenant: { id: TENANT, slug: 'alerted' }, kpi: 'aiv_pct', value: 90, baseline_median: 51, direction: 'up' });

    const signature = String(request!.headers['kpi-signature']);
    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature)!;
    expect(Math.abs(Number(t) - Date.now() / 1000)).toBeLessThan(60);
    const openssl = spawnSync('openssl', ['dgst', '-sha256', '-hmac', SECRET], { input: `${t}.${request!.body}`, encoding: 'utf8' });
    expect(openssl.status, openssl.stderr).toBe(0);
    expect(openssl.stdout.trim().split(/\s+/).at(-1)).toBe(v1);
    // A receiver with the wrong secret, or a changed body, gets another digest.
    const forged = spawnSync('openssl', ['dgst', '-sha256', '-hmac', `${SECRET}x`], { input: `${t}.${request!.body}`, encoding: 'utf8' });
    expect(forged.stdout.trim().split(/\s+/).at(-1)).not.toBe(v1);

    expect(await alertRow(id!)).toMatchObject({ status: 'delivered', attempts: 1, last_status: 200, last_error: null });
  });

  it('goes to the tenant’s own webhook when it has one', async () => {
    await db.sql`insert into kpi.alert_webhooks (tenant_id, url) values (${TENANT}, ${`${baseUrl}/tenant-hook?team=7`})`;
    const [id] = await enqueue(1);
    const delivery = worker();
    try {
      await delivery.drain();
    } finally {
      await delivery.stop();
      await db.sql`delete from kpi.alert_webhooks where tenant_id = ${TENANT}`;
    }
    expect(received.map((r) => [r.id, r.path])).toEqual([[id, '/tenant-hook?team=7']]);
  });
});

describe('the receiver example (docs/alerts.md)', () => {
  it('accepts what the worker sends, once per alert id; refuses a forged, altered or stale request with 401, which is final', async () => {
    const handled: string[] = [];
    const receiver = createAlertReceiver(SECRET, (alert) => handled.push(`${alert.kpi} ${alert.as_of}`));
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`;
    try {
      const [first, second] = await enqueue(2);
      const delivery = worker({ webhookUrl: receiverUrl });
      try {
        await until(async () => (await alertRow(second!)).status === 'delivered');
      } finally {
        await delivery.stop();
      }
      expect(await alertRow(first!)).toMatchObject({ status: 'delivered', last_status: 204 });
      expect(handled).toHaveLength(2);

      // The same id again (at-least-once delivery): accepted, not handled twice.
      const body = JSON.stringify({ id: first, kpi: 'aiv_pct', as_of: '2026-11-23' });
      const sign = (text: string, secret = SECRET, t = Math.floor(Date.now() / 1000)) =>
        `t=${t},v1=${spawnSync('openssl', ['dgst', '-sha256', '-hmac', secret], { input: `${t}.${text}`, encoding: 'utf8' }).stdout.trim().split(/\s+/).at(-1)}`;
      const post = (text: string, signature: string) =>
        fetch(receiverUrl, { method: 'POST', body: text, headers: { 'KPI-Alert-Id': first!, 'KPI-Signature': signature } });
      expect((await post(body, sign(body))).status).toBe(204);
      expect(handled).toHaveLength(2);
      // The same signed request replayed with other KPI-Alert-Id headers: still the one alert of its body.
      for (const other of ['1', '2', '3']) {
        const replay = await fetch(receiverUrl, { method: 'POST', body, headers: { 'KPI-Alert-Id': other, 'KPI-Signature': sign(body) } });
        expect(replay.status).toBe(204);
      }
      expect(handled).toHaveLength(2);
      // A body far bigger than any alert is refused before it is read (413, final for the sender).
      const big = await fetch(receiverUrl, { method: 'POST', body: 'x'.repeat(5_000_000), headers: { 'KPI-Signature': sign('x') } }).catch(() => null);
      expect(big === null || big.status === 413).toBe(true);
      expect((await post(body, sign(body, `${SECRET}x`))).status).toBe(401);
      expect((await post(body.replace('aiv_pct', 'hrp_pct'), sign(body))).status).toBe(401);
      expect((await post(body, sign(body, SECRET, Math.floor(Date.now() / 1000) - 3600))).status).toBe(401);
      expect(verifyAlertSignature(SECRET, undefined, body)).toBe(false);
    } finally {
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});

describe('retries', () => {
  it.each([
    ['500, then 200', 500 as const],
    ['a dropped connection, then 200', 'drop' as const],
    ['429, then 200', 429 as const],
  ])('%s: retried, then delivered', async (_what, first) => {
    behaviour = (_id, attempt) => (attempt === 1 ? first : 200);
    const [id] = await enqueue(1);
    const delivery = worker();
    try {
      await until(async () => (await alertRow(id!)).status === 'delivered');
    } finally {
      await delivery.stop();
    }
    expect(received.filter((r) => r.id === id)).toHaveLength(2);
    expect(await alertRow(id!)).toMatchObject({ status: 'delivered', attempts: 2, last_status: 200 });
  });

  it('a request without an answer within the timeout is retried', async () => {
    behaviour = (_id, attempt) => (attempt === 1 ? 'hang' : 200);
    const [id] = await enqueue(1);
    const delivery = worker({ timeoutMs: 300, leaseMs: 2_000 });
    try {
      await until(async () => (await alertRow(id!)).status === 'delivered');
    } finally {
      await delivery.stop();
    }
    expect(await alertRow(id!)).toMatchObject({ attempts: 2 });
  });

  it('400 is final: dead after one attempt, never posted again', async () => {
    behaviour = () => 400;
    const [id] = await enqueue(1);
    const delivery = worker();
    try {
      await until(async () => (await alertRow(id!)).status === 'dead');
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      await delivery.stop();
    }
    expect(received.filter((r) => r.id === id)).toHaveLength(1);
    expect(await alertRow(id!)).toMatchObject({ status: 'dead', attempts: 1, last_status: 400, last_error: expect.stringContaining('not retried') });
  });

  it('failing past the retry window: dead, and health says so', async () => {
    await db.sql`update kpi.alert_settings set retry_window = '1.5 seconds'`;
    behaviour = () => 503;
    const [id] = await enqueue(1);
    const delivery = worker({ retryBaseMs: 100 });
    try {
      await until(async () => (await alertRow(id!)).status === 'dead');
    } finally {
      await delivery.stop();
      await db.sql`update kpi.alert_settings set retry_window = '24 hours'`;
    }
    const attempts = received.filter((r) => r.id === id).length;
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(await alertRow(id!)).toMatchObject({ status: 'dead', attempts, last_status: 503, last_error: 'HTTP 503' });
    const [{ health }] = await db.sql<[{ health: { alerts: { dead: number }; reasons: string[] } }]>`select kpi.health_report() as health`;
    const [{ dead }] = await db.sql<[{ dead: number }]>`select count(*)::int as dead from kpi.alerts where status = 'dead'`;
    expect(dead).toBeGreaterThanOrEqual(1);
    expect(health.alerts).toMatchObject({ dead });
    expect(health.reasons).toContain(`${dead} alerts are dead (not delivered within the retry window, or refused): see kpi.alerts`);
  });
});

describe('a receiver is trusted no further than its status', () => {
  let target: Server;
  let targetUrl: string;
  let targetHits: string[] = [];
  beforeAll(async () => {
    target = createServer((request, response) => {
      targetHits.push(request.url ?? '');
      response.writeHead(200).end('reset done');
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetUrl = `http://127.0.0.1:${(target.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => target.close(resolve)));

  it.each([
    [307, () => `${targetUrl}/admin/reset`],
    [302, () => '/login'],
  ])('a %i redirect is not followed, nor counted as delivered: retried, naming the redirect', async (status, location) => {
    targetHits = [];
    const redirecting = createServer((_request, response) => response.writeHead(status, { Location: location() }).end());
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    const [id] = await enqueue(1);
    const delivery = worker({ webhookUrl: `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/hook` });
    try {
      await delivery.drain();
    } finally {
      await delivery.stop();
      await new Promise((resolve) => redirecting.close(resolve));
    }
    expect(targetHits).toEqual([]);
    expect(await alertRow(id!)).toMatchObject({ status: 'pending', last_status: status, last_error: expect.stringContaining('a redirect: not followed') });
    await db.sql`update kpi.alerts set status = 'dead', finished_at = now() where tenant_id = ${TENANT} and id = ${id!}`;
  });

  it('a 200 with an endless body is delivered after reading a few KB of it', async () => {
    let written = 0;
    let closedEarly = false;
    const flooding = createServer((_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = () => {
        while (written < 600 * 1024 * 1024) {
          written += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', pump);
        }
        response.end();
      };
      response.on('close', () => (closedEarly = written < 600 * 1024 * 1024));
      pump();
    });
    await new Promise<void>((resolve) => flooding.listen(0, '127.0.0.1', resolve));
    const [id] = await enqueue(1);
    const delivery = worker({ webhookUrl: `http://127.0.0.1:${(flooding.address() as AddressInfo).port}/hook` });
    try {
      await until(async () => (await alertRow(id!)).status === 'delivered');
    } finally {
      await delivery.stop();
      await new Promise((resolve) => setTimeout(resolve, 200));
      flooding.closeAllConnections();
      await new Promise((resolve) => flooding.close(resolve));
    }
    expect(closedEarly).toBe(true);
    expect(written).toBeLessThan(64 * 1024 * 1024);
  });

  it('an endless Retry-After is bounded by the retry window: the last attempt is made at its end, then the alert is dead', async () => {
    await db.sql`update kpi.alert_settings set retry_window = '1.5 seconds'`;
    const never = createServer((_request, response) => response.writeHead(503, { 'Retry-After': '100000000000000' }).end());
    await new Promise<void>((resolve) => never.listen(0, '127.0.0.1', resolve));
    const [id] = await enqueue(1);
    const delivery = worker({ webhookUrl: `http://127.0.0.1:${(never.address() as AddressInfo).port}/hook` });
    try {
      // The first attempt recorded (on a busy machine the worker may claim it only after a drain()).
      await until(async () => (await alertRow(id!)).last_status === 503, 10_000);
      const [row] = await db.sql`select next_attempt_at <= created_at + interval '1.5 seconds' as bounded from kpi.alerts where tenant_id = ${TENANT} and id = ${id!}`;
      expect(row).toEqual({ bounded: true });
      await until(async () => (await alertRow(id!)).status === 'dead', 10_000);
    } finally {
      await delivery.stop();
      await db.sql`update kpi.alert_settings set retry_window = '24 hours'`;
      await new Promise((resolve) => never.close(resolve));
    }
    expect(await alertRow(id!)).toMatchObject({ status: 'dead', attempts: 2, last_status: 503 });
  });

  it('an attempt that cannot be recorded makes the alert dead, saying why, instead of retrying it forever', async () => {
    behaviour = () => 599;
    await db.sql`
      create function pg_temp.refuse_599() returns trigger language plpgsql as $$
      begin raise exception 'recording refused'; end $$`;
    await db.sql`
      create trigger refuse_599 before update on kpi.alerts for each row
      when (new.last_error = 'HTTP 599') execute function pg_temp.refuse_599()`;
    try {
      const [id] = await enqueue(1);
      const delivery = worker();
      try {
        await until(async () => (await alertRow(id!)).status === 'dead');
      } finally {
        await delivery.stop();
      }
      expect(await alertRow(id!)).toMatchObject({ status: 'dead', last_status: 599, last_error: expect.stringContaining('the attempt could not be recorded: recording refused') });
    } finally {
      await db.sql`drop trigger refuse_599 on kpi.alerts`;
    }
  });
});

describe('several workers', () => {
  it('two workers and 1,000 alerts: every alert posted exactly once', async () => {
    const ids = await enqueue(1000);
    const [a, b] = [worker({ concurrency: 8 }), worker({ concurrency: 8 })];
    try {
      await until(async () => {
        const [{ n }] = await db.sql<[{ n: number }]>`select count(*)::int as n from kpi.alerts where id = any(${ids}::bigint[]) and status = 'delivered'`;
        return n === 1000;
      }, 120_000);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    const counts = new Map<string, number>();
    const ours = new Set(ids.map(String));
    for (const r of received) if (ours.has(String(r.id))) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    expect(counts.size).toBe(1000);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    const byWorker = await db.sql`select claimed_by, count(*)::int as n from kpi.alerts where id = any(${ids}::bigint[]) group by 1`;
    expect(byWorker.map((r) => r.claimed_by).sort()).toEqual([a.workerId, b.workerId].sort());
  }, 180_000);

  it('a worker killed mid-request (kill -9) loses nothing: the alert is posted again after its lease', async () => {
    behaviour = (_id, attempt) => (attempt === 1 ? 'hang' : 200);
    const [id] = await enqueue(1);
    // node itself with tsx's loader: the tsx command would run the worker in a child process of
    // its own, which a kill -9 of tsx leaves running.
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/worker.ts'], {
      cwd: projectRoot,
      env: {
        ...withoutStream(process.env),
        DATABASE_URL: db.url,
        KPI_ALERT_WEBHOOK_URL: `${baseUrl}/hook`,
        KPI_ALERT_WEBHOOK_SECRET: SECRET,
        KPI_ALERT_LEASE_SECONDS: '3',
        KPI_ALERT_TIMEOUT_SECONDS: '2',
      },
      stdio: 'ignore',
    });
    try {
      await until(async () => received.some((r) => r.id === id), 30_000);
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      expect(await alertRow(id!)).toMatchObject({ status: 'pending', attempts: 1 });
    } finally {
      child.kill('SIGKILL');
    }
    const delivery = worker({ leaseMs: 3_000 });
    try {
      await until(async () => (await alertRow(id!)).status === 'delivered', 30_000);
    } finally {
      await delivery.stop();
    }
    expect(received.filter((r) => r.id === id)).toHaveLength(2);
    expect(await alertRow(id!)).toMatchObject({ status: 'delivered', attempts: 2 });
  }, 60_000);
});

describe('keeping', () => {
  it('the daily log cleanup deletes alerts finished over 90 days ago, never pending ones', async () => {
    const [old, pending] = await enqueue(2);
    await db.sql`update kpi.alerts set status = 'delivered', finished_at = now() - interval '91 days' where tenant_id = ${TENANT} and id = ${old!}`;
    await db.sql`update kpi.alerts set created_at = now() - interval '91 days' where tenant_id = ${TENANT} and id = ${pending!}`;
    const [{ result }] = await db.sql<[{ result: { alerts_deleted: number } }]>`select kpi.clean_up_run_history() as result`;
    expect(Number(result.alerts_deleted)).toBe(1);
    expect(await db.sql`select id::text from kpi.alerts where tenant_id = ${TENANT} and id = any(${[old!, pending!]}::bigint[])`).toEqual([{ id: pending }]);
    await db.sql`update kpi.alerts set status = 'delivered', finished_at = now() where tenant_id = ${TENANT} and id = ${pending!}`;
  });
});

describe('configuration and logging', () => {
  it.each([
    [{ secret: 'short' }, /at least 32 characters/],
    [{ webhookUrl: 'ftp://example.test' }, /http\(s\) URL/],
    [{ leaseMs: 5_000, timeoutMs: 10_000 }, /leaseMs must be longer than timeoutMs/],
  ])('%j is INVALID_INPUT', (options, message) => {
    expect(() => worker(options as Partial<AlertDeliveryOptions>)).toThrow(message);
  });

  const runWorker = (env: NodeJS.ProcessEnv) =>
    spawnSync('npm', ['run', '--silent', 'worker'], {
      cwd: projectRoot,
      env: { ...withoutStream(process.env), DATABASE_URL: db.url, KPI_ALERT_WEBHOOK_URL: `${baseUrl}/hook`, KPI_ALERT_WEBHOOK_SECRET: SECRET, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });

  it.each([
    [{ KPI_ALERT_WEBHOOK_SECRET: '' }, 'KPI_ALERT_WEBHOOK_SECRET is not set'],
    [{ KPI_ALERT_WEBHOOK_SECRET: 'short' }, 'KPI_ALERT_WEBHOOK_SECRET must have at least 32 characters'],
    [{ KPI_ALERT_LEASE_SECONDS: 'abc' }, 'KPI_ALERT_LEASE_SECONDS must be a whole number'],
    [{ KPI_ALERT_WEBHOOK_URL: 'http://[bad' }, 'KPI_ALERT_WEBHOOK_URL is not an http(s) URL'],
    [{ KPI_ALERT_TIMEOUT_SECONDS: '120' }, 'KPI_ALERT_LEASE_SECONDS must be longer than KPI_ALERT_TIMEOUT_SECONDS'],
  ])('npm run worker with %j says what is wrong before it starts and exits 2', (env, message) => {
    const result = runWorker(env);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).not.toContain('delivering');
  });

  it('npm run worker with the database out of reach says so, where, and exits 1', () => {
    const result = runWorker({ DATABASE_URL: 'postgres://nobody@127.0.0.1:9/nowhere' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/cannot reach the database at 127\.0\.0\.1:9\/nowhere/);
    expect(result.stdout).not.toContain('delivering');
  });

  it('DEBUG=kpi-history:alerts logs each attempt (alert id, outcome, status), never the secret or the body', async () => {
    const lines: string[] = [];
    const previous = createDebug.log;
    createDebug.enable('kpi-history:alerts');
    createDebug.log = (...args: unknown[]) => void lines.push(format(...args));
    behaviour = (_id, attempt) => (attempt === 1 ? 500 : 200);
    const [id] = await enqueue(1);
    const delivery = worker();
    try {
      await until(async () => (await alertRow(id!)).status === 'delivered');
    } finally {
      await delivery.stop();
      createDebug.disable();
      createDebug.log = previous;
    }
    const mine = lines.filter((line) => line.includes(`alert ${id} `));
    expect(mine.some((line) => /attempt 1: retry 500/.test(line))).toBe(true);
    expect(mine.some((line) => /attempt 2: delivered 200/.test(line))).toBe(true);
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(lines.join('\n')).not.toContain('baseline_median');
  });
});
