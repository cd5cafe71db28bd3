// Alert delivery: posts the alerts the fill enqueued (kpi.alerts, a transactional outbox) to a
// webhook, signed, at least once. Any number of workers may run: each claims due alerts with
// FOR UPDATE SKIP LOCKED and a lease (the claim moves the alert's next_attempt_at past the lease),
// so no alert is posted by two workers at once, and one whose worker died is due again when the
// lease ends. Retries back off exponentially with jitter, for the retry window of
// kpi.alert_settings (24 hours by default); a 4xx other than 429 is final.
//
// A receiver is not trusted further than its status code: redirects are never followed (a 3xx
// is a failure to retry, since correcting the webhook URL then delivers the alert; following one
// could post the signed alert anywhere, and a 302 to a login page would count as delivered), at
// most a few KB of its reply are read, and its Retry-After is bounded by the retry window.
import { createHmac, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import createDebug from 'debug';
import postgres from 'postgres';
import { KpiHistoryError } from './errors.js';

const log = createDebug('kpi-history:alerts');

export interface AlertDeliveryOptions {
  /** A postgres.js instance to use (and not to end); otherwise databaseUrl, or DATABASE_URL. */
  sql?: postgres.Sql;
  databaseUrl?: string;
  /** Where alerts go unless their tenant has its own URL in kpi.alert_webhooks. */
  webhookUrl: string;
  /** Signs every request (KPI-Signature); at least 32 characters. */
  secret: string;
  /** Alerts posted at the same time by this worker (default 8). */
  concurrency?: number;
  /** How long a claimed alert is this worker's (default 60 s; more than the request timeout). */
  leaseMs?: number;
  /** A request without an answer by then is a failure to retry (default 10 s). */
  timeoutMs?: number;
  /** The first retry's delay; each further one doubles, up to an hour, with jitter (default 5 s). */
  retryBaseMs?: number;
  /** How often to look for due alerts when no notification came (default 5 s). */
  pollIntervalMs?: number;
  /** Names this worker in kpi.alerts.claimed_by (default host, pid and a random suffix). */
  workerId?: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Called when claiming or recording fails (the database went away…); delivery goes on trying. */
  onError?: (error: Error) => void;
}

export interface AlertDelivery {
  /** Stops claiming, waits for the requests under way, and closes its own connection. */
  stop(): Promise<void>;
  /** Posts until nothing is due now; resolves with how many attempts it made. */
  drain(): Promise<number>;
  readonly workerId: string;
}

interface ClaimedAlert {
  tenant_id: string;
  id: string;
  payload: AlertPayload;
  attempts: number;
  webhook_url: string | null;
}

interface AlertPayload {
  tenant: { id: string; slug: string };
  as_of: string;
  kpi: string;
  value: number;
  baseline_median: number;
  baseline_mad: number;
  score: number | 'Infinity' | '-Infinity';
  threshold: number;
  direction: 'up' | 'down';
  detected_at: string;
}

type Outcome = { kind: 'delivered'; status: number } | { kind: 'retry'; status: number | null; error: string; retryAfterMs?: number } | { kind: 'refused'; status: number };

function invalid(message: string): KpiHistoryError {
  return new KpiHistoryError({ code: 'INVALID_INPUT', message });
}

/** The most of a receiver's reply that is read (the rest is not waited for). */
const MAX_REPLY_BYTES = 4096;
/** A Retry-After is never followed past this (the retry window then decides: dead). */
const LONGEST_RETRY_MS = 7 * 24 * 3_600_000;

/** Reads at most MAX_REPLY_BYTES of the reply, then lets the rest go (the connection is freed). */
async function readSomeOf(response: Response): Promise<void> {
  const reader = response.body?.getReader();
  if (!reader) return;
  let read = 0;
  try {
    while (read < MAX_REPLY_BYTES) {
      const { value, done } = await reader.read();
      if (done) return;
      read += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** Retry-After in milliseconds: seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  const ms = /^\d+$/.test(trimmed) ? Number(trimmed) * 1000 : Date.parse(trimmed) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(LONGEST_RETRY_MS, Math.max(0, ms));
}

/**
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it with the
 * shared secret and rejects a stale `t`, so a captured request cannot be replayed later.
 */
export function signAlert(secret: string, body: string, unixSeconds = Math.floor(Date.now() / 1000)): string {
  const digest = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${digest}`;
}

/** The JSON posted for an alert, its fields in a fixed order. */
export function alertBody(id: string, payload: AlertPayload): string {
  const { tenant, as_of, kpi, value, baseline_median, score, direction, detected_at, baseline_mad, threshold } = payload;
  return JSON.stringify({ id, tenant, as_of, kpi, value, baseline_median, score, direction, detected_at, baseline_mad, threshold });
}

export function startAlertDelivery(options: AlertDeliveryOptions): AlertDelivery {
  if (typeof options.secret !== 'string' || options.secret.length < 32) {
    throw invalid('the webhook secret must have at least 32 characters (KPI_ALERT_WEBHOOK_SECRET)');
  }
  if (!/^https?:\/\/\S+$/.test(options.webhookUrl ?? '') || !URL.canParse(options.webhookUrl)) {
    throw invalid('the webhook URL must be an http(s) URL (KPI_ALERT_WEBHOOK_URL)');
  }
  for (const [name, value] of Object.entries({ leaseMs: options.leaseMs, timeoutMs: options.timeoutMs, retryBaseMs: options.retryBaseMs, pollIntervalMs: options.pollIntervalMs })) {
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) throw invalid(`${name} must be a number of milliseconds above 0 (got ${value})`);
  }
  if (options.concurrency !== undefined && !(Number.isInteger(options.concurrency) && options.concurrency > 0)) {
    throw invalid(`concurrency must be a whole number above 0 (got ${options.concurrency})`);
  }
  const url = options.databaseUrl ?? process.env.DATABASE_URL;
  if (!options.sql && !url) throw invalid('no database: pass { sql } or { databaseUrl }, or set DATABASE_URL');
  const sql = options.sql ?? postgres(url!, { max: 2, onnotice: () => {}, connection: { application_name: 'kpi-history-alerts' } });
  const ownsConnection = !options.sql;
  const concurrency = options.concurrency ?? 8;
  const leaseMs = options.leaseMs ?? 60_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retryBaseMs = options.retryBaseMs ?? 5_000;
  const pollIntervalMs = options.pollIntervalMs ?? 5_000;
  const workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const post = options.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
  if (leaseMs <= timeoutMs) throw invalid('leaseMs must be longer than timeoutMs, or a slow request could be posted twice at once');

  let running = true;
  let wake: (() => void) | null = null;

  async function claim(limit: number): Promise<ClaimedAlert[]> {
    return sql<ClaimedAlert[]>`
      with due as (
        select a.tenant_id, a.id from kpi.alerts a
        where a.status = 'pending' and a.next_attempt_at <= now()
        order by a.next_attempt_at, a.id
        limit ${limit}
        for update skip locked
      )
      update kpi.alerts a
      set next_attempt_at = now() + ${leaseMs} * interval '1 millisecond', attempts = a.attempts + 1, claimed_by = ${workerId}
      from due
      where a.tenant_id = due.tenant_id and a.id = due.id
      returning a.tenant_id, a.id::text, a.payload, a.attempts,
                (select w.url from kpi.alert_webhooks w where w.tenant_id = a.tenant_id) as webhook_url`;
  }

  async function send(alert: ClaimedAlert): Promise<Outcome> {
    const body = alertBody(alert.id, alert.payload);
    try {
      const response = await post(alert.webhook_url ?? options.webhookUrl, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': 'kpi-history-alerts',
          'KPI-Alert-Id': alert.id,
          'KPI-Signature': signAlert(options.secret, body),
        },
        body,
        // Never followed: see the top of this file.
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      await readSomeOf(response).catch(() => undefined);
      if (response.status >= 200 && response.status < 300) return { kind: 'delivered', status: response.status };
      if (response.status >= 300 && response.status < 400) {
        return { kind: 'retry', status: response.status, error: `HTTP ${response.status}, a redirect: not followed (set the webhook URL to where it points)` };
      }
      if (response.status === 429 || response.status >= 500) {
        return { kind: 'retry', status: response.status, error: `HTTP ${response.status}`, retryAfterMs: retryAfterMs(response.headers.get('retry-after')) };
      }
      return { kind: 'refused', status: response.status };
    } catch (error) {
      const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : `network error: ${(error as Error).message}`;
      return { kind: 'retry', status: null, error: reason };
    }
  }

  /** Exponential backoff from retryBaseMs, capped at an hour, with jitter (half to all of it); a Retry-After if longer. */
  function retryDelayMs(attempts: number, retryAfter?: number): number {
    const exponential = Math.min(3_600_000, retryBaseMs * 2 ** Math.min(30, Math.max(0, attempts - 1)));
    return Math.min(LONGEST_RETRY_MS, Math.max(retryAfter ?? 0, Math.round(exponential * (0.5 + Math.random() / 2))));
  }

  async function record(alert: ClaimedAlert, outcome: Outcome): Promise<void> {
    if (outcome.kind === 'delivered') {
      await sql`
        update kpi.alerts set status = 'delivered', finished_at = now(), last_status = ${outcome.status}, last_error = null
        where tenant_id = ${alert.tenant_id} and id = ${alert.id} and status = 'pending'`;
    } else if (outcome.kind === 'refused') {
      await sql`
        update kpi.alerts set status = 'dead', finished_at = now(), last_status = ${outcome.status},
               last_error = ${`refused by the receiver (HTTP ${outcome.status}); not retried`}
        where tenant_id = ${alert.tenant_id} and id = ${alert.id} and status = 'pending'`;
    } else {
      // Only the latest claim decides (attempts): a worker whose lease ran out says nothing. The
      // next attempt is never after the end of the retry window (a long Retry-After included):
      // the last one is made then, and a failure after it is final.
      const delayMs = retryDelayMs(alert.attempts, outcome.retryAfterMs);
      await sql`
        update kpi.alerts a
        set next_attempt_at = least(now() + ${delayMs} * interval '1 millisecond', a.created_at + s.retry_window),
            last_status = ${outcome.status}, last_error = ${outcome.error},
            status = case when now() >= a.created_at + s.retry_window then 'dead' else 'pending' end,
            finished_at = case when now() >= a.created_at + s.retry_window then now() end
        from kpi.alert_settings s
        where a.tenant_id = ${alert.tenant_id} and a.id = ${alert.id} and a.status = 'pending' and a.attempts = ${alert.attempts}`;
    }
  }

  async function deliver(alert: ClaimedAlert): Promise<void> {
    const started = Date.now();
    const outcome = await send(alert);
    log('alert %s attempt %d: %s %s %dms', alert.id, alert.attempts, outcome.kind, outcome.status ?? '-', Date.now() - started);
    try {
      await record(alert, outcome);
    } catch (error) {
      // An attempt that cannot be recorded would be retried at every lease forever: the alert is
      // given up on, saying why (health reports dead alerts).
      log('alert %s: recording attempt %d failed: %s', alert.id, alert.attempts, (error as Error).message);
      await sql`
        update kpi.alerts set status = 'dead', finished_at = now(), last_status = ${outcome.status},
               last_error = ${`the attempt could not be recorded: ${(error as Error).message}`.slice(0, 500)}
        where tenant_id = ${alert.tenant_id} and id = ${alert.id} and status = 'pending'`;
    }
  }

  /** Claims and posts what is due, up to `concurrency` at a time; resolves with how many were claimed. */
  async function round(): Promise<number> {
    const claimed = await claim(concurrency);
    await Promise.all(claimed.map((alert) => deliver(alert).catch((error: unknown) => log('alert %s: %s', alert.id, (error as Error).message))));
    return claimed.length;
  }

  async function loop(): Promise<void> {
    while (running) {
      let claimed = 0;
      try {
        claimed = await round();
      } catch (error) {
        log('claiming failed: %s', (error as Error).message);
        options.onError?.(error as Error);
      }
      if (claimed === 0 && running) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pollIntervalMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
    }
  }

  const listening = sql.listen('kpi_alerts', () => wake?.()).catch((error: unknown) => {
    log('LISTEN failed, polling only: %s', (error as Error).message);
    return null;
  });
  const main = loop();

  return {
    workerId,
    async drain() {
      let attempts = 0;
      for (;;) {
        const claimed = await round();
        if (claimed === 0) return attempts;
        attempts += claimed;
      }
    },
    async stop() {
      running = false;
      wake?.();
      await main;
      await (await listening)?.unlisten();
      if (ownsConnection) await sql.end({ timeout: 5 });
    },
  };
}
