// npm run worker — delivers the alerts the fill enqueues (kpi.alerts) to a webhook until stopped
// (Ctrl-C, SIGTERM). Run as many as you like: they never post the same alert at the same time.
//
//   KPI_ALERT_WEBHOOK_URL      where alerts go (a tenant's row in kpi.alert_webhooks overrides it)
//   KPI_ALERT_WEBHOOK_SECRET   signs each request (KPI-Signature), at least 32 characters
//   DATABASE_URL               the database (default: the local cluster of scripts/db.sh)
//   KPI_ALERT_LEASE_SECONDS    how long a claimed alert is this worker's (default 60)
//   KPI_ALERT_TIMEOUT_SECONDS  how long to wait for the receiver's answer (default 10; less than the lease)
//   DEBUG=kpi-history:alerts   logs each attempt: alert id, outcome, status, duration
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startAlertDelivery } from '../sdk/src/alerts.js';
import { KpiHistoryError } from '../sdk/src/errors.js';

function databaseUrl(): string {
  return (
    process.env.DATABASE_URL ??
    execFileSync('bash', [fileURLToPath(new URL('./db.sh', import.meta.url)), 'url'], { encoding: 'utf8' }).trim()
  );
}

const webhookUrl = process.env.KPI_ALERT_WEBHOOK_URL ?? '';
const secret = process.env.KPI_ALERT_WEBHOOK_SECRET ?? '';
const leaseSeconds = Number(process.env.KPI_ALERT_LEASE_SECONDS ?? 60);
const timeoutSeconds = Number(process.env.KPI_ALERT_TIMEOUT_SECONDS ?? 10);

try {
  const delivery = startAlertDelivery({ databaseUrl: databaseUrl(), webhookUrl, secret, leaseMs: leaseSeconds * 1000, timeoutMs: timeoutSeconds * 1000 });
  // The URL's origin only: a path or query may carry a token.
  console.log(`worker ${delivery.workerId}: delivering alerts to ${new URL(webhookUrl).origin} (Ctrl-C stops)`);
  const stop = () => {
    console.log('worker: stopping after the requests under way');
    void delivery.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (error) {
  if (error instanceof KpiHistoryError) {
    console.error(`worker: ${error.message}`);
    process.exit(2);
  }
  throw error;
}
