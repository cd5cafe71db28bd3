// `npm run dashboard`: serves the example dashboard (examples/dashboard, bundled with esbuild) on
// 127.0.0.1 and prints its URL with a development token. The page talks to PostgREST (KPI_API_URL)
// and the worker's change stream (KPI_STREAM_URL) itself, from the browser: they are other origins,
// so their CORS is part of what the page exercises.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { parseCli } from './lib/cli.js';
import { databaseUrl } from './lib/database-url.js';
import { mintToken } from './token.js';

export interface DashboardOptions {
  apiUrl: string;
  streamUrl: string;
  /** The API is the tests' PostgREST emulation: the page says so. */
  emulation?: boolean;
  /** Default 0: a free port. */
  port?: number;
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

const pageDir = fileURLToPath(new URL('../examples/dashboard/', import.meta.url));

/** The page's script: main.ts and what it imports, the SDK's browser entry by its package name. */
export async function bundleDashboard(): Promise<string> {
  const result = await build({
    entryPoints: [`${pageDir}main.ts`],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    alias: { 'kpi-history': fileURLToPath(new URL('../sdk/src/index.ts', import.meta.url)) },
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const files: Record<string, { type: string; body: string }> = {
    '/': { type: 'text/html; charset=utf-8', body: readFileSync(`${pageDir}index.html`, 'utf8') },
    '/dashboard.css': { type: 'text/css; charset=utf-8', body: readFileSync(`${pageDir}dashboard.css`, 'utf8') },
    '/main.js': { type: 'text/javascript; charset=utf-8', body: await bundleDashboard() },
    '/config.json': {
      type: 'application/json',
      body: JSON.stringify({ apiUrl: options.apiUrl, streamUrl: options.streamUrl, emulation: options.emulation ?? false }),
    },
  };
  const server = createServer((req, res) => {
    const file = files[new URL(req.url ?? '/', 'http://dashboard').pathname];
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : file.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The tests' PostgREST emulation and the change stream, in this process, over `databaseUrl`. */
export async function startEmulatedApi(databaseUrlOfOwner: string, jwtSecret: string, corsAllowedOrigins: string[] = []) {
  // Loaded only here: the emulation is the tests' replay, not part of what the project ships.
  const { connectAsAuthenticator, createReplay, postgrestConfig } = await import('../test/helpers/postgrest.js');
  const { serveReplay } = await import('../test/helpers/postgrest/http.js');
  const { startChangeStream } = await import('../sdk/src/stream.js');
  const asAuthenticator = new URL(databaseUrlOfOwner);
  asAuthenticator.username = 'authenticator';
  asAuthenticator.password = '';
  const authenticator = connectAsAuthenticator(asAuthenticator.toString());
  const api = await serveReplay(createReplay(authenticator, { jwtSecret, config: { ...postgrestConfig(), corsAllowedOrigins } }));
  const stream = await startChangeStream({ databaseUrl: databaseUrlOfOwner, jwtSecret, port: 0 });
  return {
    apiUrl: api.url,
    streamUrl: stream.url,
    async close() {
      await stream.stop();
      await api.close();
      await authenticator.end();
    },
  };
}

/** The demo tenant with anomalies (db/seed/demo.sql). */
const HOOLI = '00000000-0000-4000-a000-0000000000a1';

export const HELP = `usage: npm run dashboard [-- --emulate] [--tenant UUID] [--port N]

Serves the example dashboard (examples/dashboard) on 127.0.0.1 and prints its URL with a
development token (npm run token) for the tenant (default: the demo tenant hooli).
  KPI_API_URL       PostgREST (default http://localhost:3000, the compose stack's)
  KPI_STREAM_URL    the worker's change stream (default http://localhost:3002/v1/stream)
  PGRST_JWT_SECRET  the secret PostgREST verifies tokens with (the compose stack's .env)
  --emulate         no PostgREST at hand: serve the tests' PostgREST emulation and the change stream
                    from this process over DATABASE_URL or the local cluster (npm start seeds it).
                    It is an emulation of PostgREST v16.2, not PostgREST; the page says so.
  --port N          the page's port (default 5173)`;

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(3000) });
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const { values } = parseCli({
    name: 'dashboard',
    help: HELP,
    options: { emulate: { type: 'boolean', default: false }, tenant: { type: 'string', default: HOOLI }, port: { type: 'string', default: '5173' } },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`dashboard: --port must be a port number (got ${values.port})\n${HELP.split('\n')[0]}`);
    process.exit(2);
  }
  let secret = process.env.PGRST_JWT_SECRET;
  let backend: { apiUrl: string; streamUrl: string; close?: () => Promise<void> };
  if (values.emulate) {
    // The emulation verifies tokens itself: without a secret, one for this session.
    secret ??= (await import('node:crypto')).randomBytes(32).toString('hex');
    backend = await startEmulatedApi(databaseUrl(), secret);
  } else {
    backend = { apiUrl: process.env.KPI_API_URL ?? 'http://localhost:3000', streamUrl: process.env.KPI_STREAM_URL ?? 'http://localhost:3002/v1/stream' };
    if (!(await answers(backend.apiUrl))) {
      console.error(`dashboard: no PostgREST answers at ${backend.apiUrl} (KPI_API_URL).
  Start the compose stack: cp .env.example .env, set its secrets, then docker compose up -d
  (PostgREST on :3000, the worker's stream on :3002); run this with PGRST_JWT_SECRET from .env.
  No Docker? npm run dashboard -- --emulate serves the tests' PostgREST emulation instead (not PostgREST).`);
      process.exit(1);
    }
    if (!(await answers(backend.streamUrl.replace(/\/v1\/stream$/, '/v1/health')))) {
      console.error(`dashboard: warning: no change stream at ${backend.streamUrl} (KPI_STREAM_URL): the page will not update live (npm run worker serves it).`);
    }
    if (!secret) {
      console.error('dashboard: PGRST_JWT_SECRET is not set: it signs the development token (the compose stack reads it from .env).');
      process.exit(1);
    }
  }
  const token = await mintToken({ secret, tenantIds: [values.tenant], sub: 'kpi-history-dashboard' });
  const dashboard = await startDashboard({ ...backend, emulation: values.emulate, port });
  console.log(`dashboard: ${dashboard.url}#token=${token}
  API     ${backend.apiUrl}${values.emulate ? '  (the tests\' PostgREST emulation: not PostgREST)' : ''}
  stream  ${backend.streamUrl}
  token   for tenant ${values.tenant}, valid 1 hour (another: npm run --silent token -- <uuid>, then #token=… in the URL)
Ctrl-C stops it.`);
  const stop = async () => {
    await dashboard.close();
    await backend.close?.();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
