// The change stream under load: the worker (npm run worker, its own process) serving `clients`
// Server-Sent Events connections across `tenants` tenants, and the time from a write's commit to
// its event at every client of that tenant — p50/p99 — and the worker's resident memory before
// and with the clients.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type postgres from 'postgres';
import { serverSentEvents } from '../../sdk/src/watch.js';
import { mintToken } from '../token.js';
import { distribution, type Distribution } from './measure.js';

export interface StreamLoad {
  clients: number;
  tenants: number;
  writes: number;
  latency: Distribution;
  /** Resident memory of the worker process, in MiB. */
  workerRssMiB: { idle: number; withClients: number };
}

const root = fileURLToPath(new URL('../..', import.meta.url));

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) / 1024;
}

export async function measureStream(sql: postgres.Sql, databaseUrl: string, clients: number, tenants: number, writes: number): Promise<StreamLoad> {
  const secret = randomBytes(36).toString('base64url');
  // The stream only: no alert settings (a developer's shell may have them).
  const { KPI_ALERT_WEBHOOK_URL: _url, KPI_ALERT_WEBHOOK_SECRET: _secret, ...env } = process.env;
  const worker = spawn(process.execPath, ['--import', 'tsx', 'scripts/worker.ts'], {
    cwd: root,
    env: { ...env, DATABASE_URL: databaseUrl, PGRST_JWT_SECRET: secret, KPI_STREAM_PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const aborts: AbortController[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      worker.stdout!.on('data', (chunk: Buffer) => {
        const served = /serving the change stream at http:\/\/[^:]+:(\d+)\//.exec(chunk.toString());
        if (served) resolve(Number(served[1]));
      });
      worker.once('exit', (code) => reject(new Error(`the worker exited (${code})`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idle = rssMiB(worker.pid!);

    const ids = (await sql<{ id: string }[]>`
      select t.id from kpi.tenants t where exists (select from kpi.kpi_history h where h.tenant_id = t.id) order by t.id limit ${tenants}`).map((r) => r.id);
    // Each client remembers when each change reached it.
    const arrivals = new Map<string, Map<string, bigint>>(); // tenant → "client#cursor" → time
    let connected = 0;
    for (let i = 0; i < clients; i++) {
      const tenant = ids[i % ids.length]!;
      // A token per client: the stream caps the streams of one token (sdk/src/stream.ts).
      const token = await mintToken({ secret, tenantIds: [tenant], sub: `bench-client-${i}` });
      const abort = new AbortController();
      aborts.push(abort);
      const response = await fetch(`http://127.0.0.1:${port}/v1/stream`, { headers: { Authorization: `Bearer ${token}` }, signal: abort.signal });
      if (!response.ok) throw new Error(`the stream answered ${response.status}`);
      connected += 1;
      const seen = arrivals.get(tenant) ?? new Map<string, bigint>();
      arrivals.set(tenant, seen);
      void (async () => {
        try {
          for await (const event of serverSentEvents(response.body!)) {
            if (event.id) seen.set(`${i}#${event.id}`, process.hrtime.bigint());
          }
        } catch {
          // closed
        }
      })();
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    const withClients = rssMiB(worker.pid!);

    // One write at a time, to one tenant's latest week; every client of that tenant must see it.
    const latencies: number[] = [];
    const perTenant = Math.ceil(clients / ids.length);
    for (let n = 0; n < writes; n++) {
      const tenant = ids[n % ids.length]!;
      await sql`
        with latest as (select as_of from kpi.kpi_history where tenant_id = ${tenant} order by as_of desc limit 1)
        update kpi.kpi_history h set aiv_pct = case when h.aiv_pct >= 50 then h.aiv_pct - 0.01 else h.aiv_pct + 0.01 end
        from latest where h.tenant_id = ${tenant} and h.as_of = latest.as_of`;
      const committed = process.hrtime.bigint();
      // Its position: the tenant's newest history change (writes go one at a time).
      const [row] = await sql<[{ cursor: string }]>`
        select txid::text || '.' || seq as cursor from kpi.kpi_changes
        where tenant_id = ${tenant} and entity = 'history' order by txid desc, seq desc limit 1`;
      const seen = arrivals.get(tenant)!;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const times = [...seen.entries()].filter(([key]) => key.endsWith(`#${row.cursor}`)).map(([, time]) => time);
        if (times.length >= perTenant || Date.now() > deadline) {
          for (const time of times) latencies.push(Number(time - committed) / 1e6);
          break;
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    return { clients: connected, tenants: ids.length, writes, latency: distribution(latencies), workerRssMiB: { idle, withClients } };
  } finally {
    for (const abort of aborts) abort.abort();
    worker.kill('SIGTERM');
    await new Promise((resolve) => worker.once('exit', resolve));
  }
}
