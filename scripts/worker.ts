// npm run worker — the process beside the database: delivers the alerts the fill enqueues
// (kpi.alerts) to a webhook, and serves the change feed as Server-Sent Events (GET /v1/stream),
// until stopped (Ctrl-C, SIGTERM). Each part runs when it is configured; run as many workers as you
// like: they never post the same alert at the same time.
//
//   KPI_ALERT_WEBHOOK_URL      where alerts go (a tenant's row in kpi.alert_webhooks overrides it)
//   KPI_ALERT_WEBHOOK_SECRET   signs each request (KPI-Signature), at least 32 characters
//   KPI_ALERT_LEASE_SECONDS    how long a claimed alert is this worker's (default 60)
//   KPI_ALERT_TIMEOUT_SECONDS  how long to wait for the receiver's answer (default 10; less than the lease)
//   PGRST_JWT_SECRET           PostgREST's JWT secret: with it, the stream is served
//   KPI_STREAM_PORT, KPI_STREAM_HOST  where the stream listens (default 3002 on 127.0.0.1)
//   DATABASE_URL               the database (default: the local cluster of scripts/db.sh)
//   DEBUG=kpi-history:alerts,kpi-history:stream   logs each attempt and each client (never secrets or bodies)
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startAlertDelivery, type AlertDelivery } from '../sdk/src/alerts.js';
import { KpiHistoryError } from '../sdk/src/errors.js';
import { startChangeStream, type ChangeStream } from '../sdk/src/stream.js';

function databaseUrl(): string {
  return (
    process.env.DATABASE_URL ??
    execFileSync('bash', [fileURLToPath(new URL('./db.sh', import.meta.url)), 'url'], { encoding: 'utf8' }).trim()
  );
}

const env = process.env;
let delivery: AlertDelivery | undefined;
let stream: ChangeStream | undefined;

try {
  const url = databaseUrl();
  if (env.KPI_ALERT_WEBHOOK_URL !== undefined || env.KPI_ALERT_WEBHOOK_SECRET !== undefined) {
    delivery = startAlertDelivery({
      databaseUrl: url,
      webhookUrl: env.KPI_ALERT_WEBHOOK_URL ?? '',
      secret: env.KPI_ALERT_WEBHOOK_SECRET ?? '',
      leaseMs: Number(env.KPI_ALERT_LEASE_SECONDS ?? 60) * 1000,
      timeoutMs: Number(env.KPI_ALERT_TIMEOUT_SECONDS ?? 10) * 1000,
    });
    // The URL's origin only: a path or query may carry a token.
    console.log(`worker ${delivery.workerId}: delivering alerts to ${new URL(env.KPI_ALERT_WEBHOOK_URL!).origin}`);
  }
  if (env.PGRST_JWT_SECRET !== undefined) {
    stream = await startChangeStream({
      databaseUrl: url,
      jwtSecret: env.PGRST_JWT_SECRET,
      port: Number(env.KPI_STREAM_PORT ?? 3002),
      host: env.KPI_STREAM_HOST ?? '127.0.0.1',
    });
    console.log(`worker: serving the change stream at ${stream.url}`);
  }
  if (!delivery && !stream) {
    throw new KpiHistoryError({
      code: 'INVALID_INPUT',
      message: 'nothing to do: set KPI_ALERT_WEBHOOK_URL and KPI_ALERT_WEBHOOK_SECRET (alerts), PGRST_JWT_SECRET (the stream), or both',
    });
  }
  console.log('worker: Ctrl-C stops');
  const stop = () => {
    console.log('worker: stopping after the requests under way');
    void Promise.all([delivery?.stop(), stream?.stop()]).then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (error) {
  if (error instanceof KpiHistoryError) {
    console.error(`worker: ${error.message}`);
    await Promise.all([delivery?.stop(), stream?.stop()]);
    process.exit(2);
  }
  throw error;
}
