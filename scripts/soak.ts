// npm run soak — the worker's change stream under hostile and ordinary clients at once, on
// loopback, for a bounded time, then it stops by itself:
//   2,000 stream clients: 1,300 that read, 200 that read almost nothing (a few bytes now and then),
//   500 that connect and close at once; fills writing every 2 s; one tenant catching up 30,000
//   changes from the start of its log.
// It prints the worker's peak resident memory (VmHWM) and how long a well-behaved tenant waits for
// its stream to open (p50/p95/p99), against the targets: peak RSS ≤ 256 MiB, p99 open ≤ 100 ms.
//
//   npm run soak [-- --seconds 60] [--json PATH]
//
// The database: SOAK_DATABASE_URL (a server and a database name the soak may drop and re-create),
// or a database kpi_soak on the local cluster of scripts/db.sh. The worker is `npm run worker`
// itself, a process of its own, so that its memory is its alone.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { applyDefinitions } from './definitions.js';
import { parseCli } from './lib/cli.js';
import { mintToken } from './token.js';

const USAGE = 'usage: npm run soak [-- --seconds 60] [--json PATH]';
const root = fileURLToPath(new URL('..', import.meta.url));
const JWT_SECRET = 'kpi-history-soak-jwt-secret-0123456789abcdef';
const READERS = 1300;
const SLOW = 200;
const EARLY_CLOSERS = 500;
const TENANTS = 100;
const CATCH_UP = 30_000;
const TARGETS = { peakRssMiB: 256, p99OpenMs: 100 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tenantId = (i: number) => `00000000-0000-4000-a000-${String(i).padStart(12, '0')}`;

const HELP = `${USAGE}

Runs the worker's change stream for --seconds (default 60, at most 600) under 2,000 clients — 1,300
that read, 200 that read almost nothing, 500 that close at once — while fills write and one tenant
catches up 30,000 changes; prints the worker's peak memory and a well-behaved tenant's p99 stream
open. Loopback only; it stops by itself. The database: SOAK_DATABASE_URL, or kpi_soak on the local
cluster (dropped and re-created: never point it at data you keep).`;

function parse(): { seconds: number; json?: string } {
  const { values } = parseCli({ name: 'soak', help: HELP, options: { seconds: { type: 'string' }, json: { type: 'string' } } });
  const seconds = Number(values.seconds ?? 60);
  if (!Number.isInteger(seconds) || seconds < 5 || seconds > 600) {
    console.error(`soak: --seconds is a whole number from 5 to 600\n${USAGE}`);
    process.exit(2);
  }
  return { seconds, json: values.json };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The soak's own database, migrated, with its tenants and the catching-up tenant's long log. */
async function prepare(): Promise<string> {
  let url = process.env.SOAK_DATABASE_URL;
  if (!url) {
    execFileSync('bash', ['scripts/db.sh', 'up'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    url = execFileSync('bash', ['scripts/db.sh', 'url'], { cwd: root, encoding: 'utf8' }).trim().replace(/\/[^/]*$/, '/kpi_soak');
  }
  const server = new URL(url);
  const name = server.pathname.slice(1);
  server.pathname = '/postgres';
  const admin = postgres(server.toString(), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const dbmateUrl = new URL(url);
  dbmateUrl.searchParams.set('sslmode', 'disable');
  execFileSync(`${root}node_modules/.bin/dbmate`, ['--migrations-dir', 'db/migrations', '--no-dump-schema', 'up'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: dbmateUrl.toString() },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await applyDefinitions(url);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`
      insert into kpi.tenants (id, slug, name)
      select ('00000000-0000-4000-a000-' || lpad(i::text, 12, '0'))::uuid, 'soak-' || i, 'Soak ' || i
      from generate_series(0, ${TENANTS}::int) i`;
    // The catching-up tenant (0): 30,000 weeks of history, each a change in the log.
    await sql`
      insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
      select ${tenantId(0)}, date '1900-01-01' + 7 * w, 50, 50, 50, 1000, 100, true, null from generate_series(0, ${CATCH_UP - 1}::int) w`;
  } finally {
    await sql.end();
  }
  return url;
}

/** Peak and current resident memory of a process, in MiB (Linux /proc). */
function memoryOf(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { peak: kib('VmHWM') / 1024, now: kib('VmRSS') / 1024 };
}

/** A stream client over a raw socket: reads (all, or a little now and then), or closes at once. */
function rawClient(port: number, token: string, headers: Record<string, string>, mode: 'read' | 'slow' | 'close'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1', () => {
      socket.write(`GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
      if (mode === 'close') socket.destroy();
      else if (mode === 'slow') socket.pause();
      resolve(socket);
    });
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.once('error', reject);
  });
}

/** Opens a stream and resolves with the time to its headers (ms), then closes it. */
async function timedOpen(url: string, token: string): Promise<number | null> {
  const controller = new AbortController();
  const started = performance.now();
  try {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: controller.signal });
    const ms = performance.now() - started;
    controller.abort();
    return response.status === 200 ? ms : null;
  } catch {
    return null;
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function main(): Promise<void> {
  const { seconds, json } = parse();
  console.error('soak: preparing the database');
  const url = await prepare();
  const port = await freePort();
  // node itself with tsx's loader: the tsx command runs the worker in a child process of its own,
  // whose memory would not be the one measured.
  const worker: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'scripts/worker.ts'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url, PGRST_JWT_SECRET: JWT_SECRET, KPI_STREAM_PORT: String(port), KPI_ALERT_WEBHOOK_URL: undefined, KPI_ALERT_WEBHOOK_SECRET: undefined },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  const sockets: Socket[] = [];
  const streamUrl = `http://127.0.0.1:${port}/v1/stream`;
  try {
    await new Promise<void>((resolve, reject) => {
      worker.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('serving the change stream') && resolve());
      worker.once('exit', (code) => reject(new Error(`the worker exited (${code})`)));
    });
    const memoryAtStart = memoryOf(worker.pid!);
    // Tokens: one per client (the cap is per token), every tenant but 0 shared by 20 clients.
    const token = (tenant: number, sub: string) => mintToken({ secret: JWT_SECRET, tenantIds: [tenantId(tenant)], sub, ttlSeconds: seconds + 600 });
    console.error(`soak: ${seconds} s — ${READERS} readers, ${SLOW} slow readers, ${EARLY_CLOSERS} early closers, fills every 2 s, one tenant catching up ${CATCH_UP} changes`);
    const deadline = Date.now() + seconds * 1000;

    // The tenant catching up from the start of its log: its events counted as they arrive.
    const catchingUp = await rawClient(port, await token(0, 'catching-up'), { 'Last-Event-ID': '1.0' }, 'read');
    let caughtUp = 0;
    let carry = '';
    catchingUp.on('data', (chunk: Buffer) => {
      const text = carry + chunk.toString('utf8');
      caughtUp += text.match(/^event: change$/gm)?.length ?? 0;
      carry = text.slice(text.lastIndexOf('\n') + 1);
    });
    sockets.push(catchingUp);
    for (let i = 0; i < READERS; i++) sockets.push(await rawClient(port, await token(1 + (i % (TENANTS - 1)), `reader-${i}`), {}, 'read'));
    for (let i = 0; i < SLOW; i++) {
      const socket = await rawClient(port, await token(1 + (i % (TENANTS - 1)), `slow-${i}`), {}, 'slow');
      sockets.push(socket);
    }
    // The slow ones read a little now and then.
    const trickle = setInterval(() => {
      for (const socket of sockets) {
        if (socket.isPaused()) {
          socket.resume();
          setTimeout(() => socket.pause(), 5);
        }
      }
    }, 5_000);

    // Early closers, spread over the run.
    let closed = 0;
    const closers = (async () => {
      const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => token(TENANTS, `closer-${i}`)));
      while (closed < EARLY_CLOSERS && Date.now() < deadline) {
        await rawClient(port, tokens[closed % tokens.length]!, {}, 'close').catch(() => undefined);
        closed += 1;
        await sleep(Math.max(1, (seconds * 1000) / EARLY_CLOSERS / 2));
      }
    })();

    // Fills: a new week for 50 tenants every 2 s.
    let writes = 0;
    let week = 0;
    const fills = (async () => {
      while (Date.now() < deadline) {
        week += 1;
        await sql`
          insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
          select ('00000000-0000-4000-a000-' || lpad(i::text, 12, '0'))::uuid, date '2030-01-07' + 7 * ${week}::int, 50 + ${week}::int % 10, 40, 30, 1000
          from generate_series(1, 50) i`;
        const [{ run }] = await sql<[{ run: { rows_written: number } }]>`select kpi.fill_all_kpi_history() as run`;
        writes += run.rows_written;
        await sleep(2_000);
      }
    })();

    // A well-behaved tenant (its own tokens) opens a stream every 200 ms: how long until it answers.
    const opens: number[] = [];
    const probeTokens = await Promise.all(Array.from({ length: 3 }, (_, i) => token(TENANTS - 1, `probe-${i}`)));
    let failedOpens = 0;
    let peak = memoryAtStart.peak;
    while (Date.now() < deadline) {
      const ms = await timedOpen(streamUrl, probeTokens[opens.length % probeTokens.length]!);
      if (ms === null) failedOpens += 1;
      else opens.push(ms);
      peak = Math.max(peak, memoryOf(worker.pid!).peak);
      await sleep(200);
    }
    clearInterval(trickle);
    await Promise.all([closers, fills]);
    peak = Math.max(peak, memoryOf(worker.pid!).peak);
    const sorted = [...opens].sort((a, b) => a - b);
    const report = {
      seconds,
      clients: { readers: READERS, slow: SLOW, earlyClosers: closed, catchingUp: 1 },
      caughtUp: { events: caughtUp, of: CATCH_UP },
      rowsWritten: writes,
      worker: { rssAtStartMiB: Math.round(memoryAtStart.now), peakRssMiB: Math.round(peak) },
      open: { samples: sorted.length, failed: failedOpens, p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99) },
      targets: TARGETS,
      met: { peakRss: peak <= TARGETS.peakRssMiB, p99Open: percentile(sorted, 99) <= TARGETS.p99OpenMs },
    };
    console.log(`soak: ${seconds} s, ${READERS + SLOW + 1} streams held, ${closed} early closers, ${writes} history rows written by fills`);
    console.log(`  the catching-up tenant received ${caughtUp} of its ${CATCH_UP} changes`);
    console.log(`  worker resident memory: ${report.worker.rssAtStartMiB} MiB at start, peak ${report.worker.peakRssMiB} MiB (target ≤ ${TARGETS.peakRssMiB}) — ${report.met.peakRss ? 'met' : 'NOT MET'}`);
    console.log(`  a well-behaved tenant's stream open: p50 ${report.open.p50.toFixed(1)} ms, p95 ${report.open.p95.toFixed(1)} ms, p99 ${report.open.p99.toFixed(1)} ms over ${sorted.length} opens${failedOpens ? ` (${failedOpens} failed)` : ''} (target p99 ≤ ${TARGETS.p99OpenMs}) — ${report.met.p99Open ? 'met' : 'NOT MET'}`);
    if (json) writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  } finally {
    for (const socket of sockets) socket.destroy();
    // Stopped, and waited for: nothing of the soak outlives it.
    const exited = new Promise((resolve) => (worker.exitCode !== null ? resolve(null) : worker.once('exit', resolve)));
    worker.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000).then(() => worker.kill('SIGKILL'))]);
    await sql.end();
  }
}

await main();
