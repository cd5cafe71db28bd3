// npm run worker — the process beside the database: delivers the alerts the fill enqueues
// (kpi.alerts) to a webhook, and serves the change feed as Server-Sent Events (GET /v1/stream),
// until stopped (Ctrl-C, SIGTERM). Each part runs when it is configured; run as many workers as you
// like: they never post the same alert at the same time.
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { startAlertDelivery, type AlertDelivery } from '../sdk/src/alerts.js';
import { KpiHistoryError } from '../sdk/src/errors.js';
import { startChangeStream, type ChangeStream } from '../sdk/src/stream.js';
import { databaseUrl } from './lib/database-url.js';
import { parseCli } from './lib/cli.js';

export const USAGE = `usage: npm run worker [-- --help]

Delivers alerts, serves the change stream, or both, as configured by the environment:
  KPI_ALERT_WEBHOOK_URL      where alerts go (a tenant's row in kpi.alert_webhooks overrides it)
  KPI_ALERT_WEBHOOK_SECRET   signs each request (KPI-Signature), at least 32 characters
  KPI_ALERT_LEASE_SECONDS    how long a claimed alert is this worker's (default 60)
  KPI_ALERT_TIMEOUT_SECONDS  how long to wait for the receiver's answer (default 10; less than the lease)
  PGRST_JWT_SECRET           PostgREST's JWT secret: with it, the stream is served
  KPI_STREAM_PORT, KPI_STREAM_HOST  where the stream listens (default 3002 on 127.0.0.1)
  KPI_STREAM_MAX_PER_TOKEN, KPI_STREAM_MAX_PER_TENANT  streams open at once (default 5 and 200)
  KPI_STREAM_MAX_BUFFER_KB   unsent output past which a live client catches up again (default 1024)
  DATABASE_URL               the database (default: the local cluster of scripts/db.sh)
  DEBUG=kpi-history:alerts,kpi-history:stream   logs each attempt and each client (never secrets or bodies)`;

class ConfigError extends Error {}

/** A positive whole number from the environment, or the default; anything else is a ConfigError naming the variable. */
function wholeNumber(env: NodeJS.ProcessEnv, name: string, fallback: number, max = 86_400 * 7): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < 1 || Number(raw) > max) {
    throw new ConfigError(`${name} must be a whole number from 1 to ${max} (got ${JSON.stringify(raw)})`);
  }
  return Number(raw);
}

export interface WorkerConfig {
  alerts: { webhookUrl: string; secret: string; leaseMs: number; timeoutMs: number } | null;
  stream: { jwtSecret: string; port: number; host: string; maxStreamsPerToken: number; maxStreamsPerTenant: number; maxBufferedBytes: number } | null;
}

/** Everything the worker needs, checked before anything starts: a clear error names the variable. */
export function workerConfig(env: NodeJS.ProcessEnv): WorkerConfig {
  let alerts: WorkerConfig['alerts'] = null;
  // Empty is unset (compose passes an optional variable of .env as empty).
  if (env.KPI_ALERT_WEBHOOK_URL || env.KPI_ALERT_WEBHOOK_SECRET) {
    const webhookUrl = env.KPI_ALERT_WEBHOOK_URL ?? '';
    if (!webhookUrl) throw new ConfigError('KPI_ALERT_WEBHOOK_URL is not set (where alerts go)');
    if (!/^https?:\/\//.test(webhookUrl) || !URL.canParse(webhookUrl)) throw new ConfigError('KPI_ALERT_WEBHOOK_URL is not an http(s) URL');
    const secret = env.KPI_ALERT_WEBHOOK_SECRET ?? '';
    if (!secret) throw new ConfigError('KPI_ALERT_WEBHOOK_SECRET is not set (it signs every alert; generate one with: openssl rand -hex 32)');
    if (secret.length < 32) throw new ConfigError(`KPI_ALERT_WEBHOOK_SECRET must have at least 32 characters (it has ${secret.length})`);
    const leaseMs = wholeNumber(env, 'KPI_ALERT_LEASE_SECONDS', 60) * 1000;
    const timeoutMs = wholeNumber(env, 'KPI_ALERT_TIMEOUT_SECONDS', 10) * 1000;
    if (leaseMs <= timeoutMs) throw new ConfigError('KPI_ALERT_LEASE_SECONDS must be longer than KPI_ALERT_TIMEOUT_SECONDS (or a slow request could be posted twice at once)');
    alerts = { webhookUrl, secret, leaseMs, timeoutMs };
  }
  let stream: WorkerConfig['stream'] = null;
  if (env.PGRST_JWT_SECRET !== undefined) {
    if (env.PGRST_JWT_SECRET.length < 32) throw new ConfigError(`PGRST_JWT_SECRET must have at least 32 characters (it has ${env.PGRST_JWT_SECRET.length})`);
    stream = {
      jwtSecret: env.PGRST_JWT_SECRET,
      port: env.KPI_STREAM_PORT === '0' ? 0 : wholeNumber(env, 'KPI_STREAM_PORT', 3002, 65_535),
      host: env.KPI_STREAM_HOST || '127.0.0.1',
      maxStreamsPerToken: wholeNumber(env, 'KPI_STREAM_MAX_PER_TOKEN', 5, 10_000),
      maxStreamsPerTenant: wholeNumber(env, 'KPI_STREAM_MAX_PER_TENANT', 200, 100_000),
      maxBufferedBytes: wholeNumber(env, 'KPI_STREAM_MAX_BUFFER_KB', 1024, 1_048_576) * 1024,
    };
  }
  if (!alerts && !stream) {
    throw new ConfigError('nothing to do: set KPI_ALERT_WEBHOOK_URL and KPI_ALERT_WEBHOOK_SECRET (alerts), PGRST_JWT_SECRET (the stream), or both');
  }
  return { alerts, stream };
}


/** Where a database URL points, without its password. */
function where(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}`;
  } catch {
    return 'the database';
  }
}

async function main(): Promise<void> {
  parseCli({ name: 'worker', help: USAGE, options: {} });
  let config: WorkerConfig;
  try {
    config = workerConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`worker: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const url = databaseUrl();
  // The database first, with its own words when it cannot be reached.
  const probe = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await probe`select 1`;
  } catch (error) {
    console.error(`worker: cannot reach the database at ${where(url)}: ${(error as Error).message}`);
    process.exit(1);
  } finally {
    await probe.end({ timeout: 1 });
  }

  let delivery: AlertDelivery | undefined;
  let stream: ChangeStream | undefined;
  try {
    if (config.alerts) {
      // Said once a minute at most while it lasts: a database gone away is worth knowing without DEBUG.
      let lastSaid = 0;
      const onError = (error: Error) => {
        if (Date.now() - lastSaid < 60_000) return;
        lastSaid = Date.now();
        console.error(`worker: claiming alerts failed (trying again): ${error.message}`);
      };
      delivery = startAlertDelivery({ databaseUrl: url, ...config.alerts, onError });
      // The URL's origin only: a path or query may carry a token.
      console.log(`worker ${delivery.workerId}: delivering alerts to ${new URL(config.alerts.webhookUrl).origin}`);
    }
    if (config.stream) {
      stream = await startChangeStream({ databaseUrl: url, ...config.stream });
      console.log(`worker: serving the change stream at ${stream.url}`);
    }
  } catch (error) {
    await Promise.all([delivery?.stop(), stream?.stop()]);
    if (error instanceof KpiHistoryError) {
      console.error(`worker: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  console.log('worker: Ctrl-C stops');
  const stop = () => {
    console.log('worker: stopping after the requests under way');
    void Promise.all([delivery?.stop(), stream?.stop()]).then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
