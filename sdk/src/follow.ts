// Following the change log over a direct connection, as the table owner: the reader behind the
// stream's live changes and behind watchKpiHistory(). Like every reader of the feed it returns
// settled transactions only (older than the oldest still running), in position order, so nothing
// can appear behind its position later.
import postgres from 'postgres';
import { KpiHistoryError } from './errors.js';
import type { KpiChange } from './results.js';

/** A change of the log, with its tenant (the owner's reader sees every tenant). */
export type LoggedChange = KpiChange & { tenant_id: string };

const PAGE = 5000;

export interface ChangeLogReader {
  /** The position of the last change read, "<txid>.<seq>". */
  position(): string;
  /** Moves the position to the newest settled change: what comes after is new. */
  skipToHead(): Promise<void>;
  /** Reads every settled change after the position, in order, handing each over; returns how many. */
  read(handle: (change: LoggedChange) => void | Promise<void>): Promise<number>;
  /**
   * True when committed changes after the position are held back behind an older transaction that
   * is still running — one that may end without a notification (it wrote nothing to the history).
   */
  pending(): Promise<boolean>;
}

/**
 * Wakes `read` again while changes are held back, sooner then less often (50 ms doubling to 5 s),
 * and not at all once nothing is: no polling while idle.
 */
export function recheckWhilePending(reader: ChangeLogReader, wake: () => void): { after(): Promise<void>; stop(): void } {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let delay = 50;
  return {
    async after() {
      if (timer) return;
      if (await reader.pending()) {
        timer = setTimeout(() => {
          timer = null;
          wake();
        }, delay);
        delay = Math.min(5000, delay * 2);
      } else {
        delay = 50;
      }
    },
    stop() {
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}

export function changeLogReader(sql: postgres.Sql, options: { tenantId?: string; after?: string } = {}): ChangeLogReader {
  if (options.after !== undefined && !/^\d+\.\d+$/.test(options.after)) {
    throw new KpiHistoryError({ code: 'INVALID_INPUT', message: 'after must be a cursor ("<digits>.<digits>")' });
  }
  // NULL: the start of what the log keeps (no cursor to check against what was pruned).
  let cursor: string | null = options.after ?? null;
  const tenantId = options.tenantId ?? null;
  // The database's one reader of the log (kpi_api.read_changes): settled transactions only, the
  // cursor parsed and checked against what was pruned there, as for the API and the export.
  return {
    position: () => cursor ?? '0.0',
    async skipToHead() {
      const [{ head }] = await sql<[{ head: string | null }]>`select kpi_api.change_log_head(${tenantId}::uuid) as head`;
      if (head && (cursor === null || compareCursors(head, cursor) > 0)) cursor = head;
    },
    async pending() {
      const [row] = await sql<[{ pending: boolean }]>`select kpi_api.changes_held_back(${cursor}, ${tenantId}::uuid) as pending`;
      return row.pending;
    },
    async read(handle) {
      let count = 0;
      for (;;) {
        const rows = await sql<LoggedChange[]>`
          select tenant_id::text, cursor, entity, op, as_of::text, kpi, data, changed_at
          from kpi_api.read_changes(${cursor}, ${tenantId}::uuid, ${PAGE})`;
        for (const change of rows) {
          await handle(change);
          cursor = change.cursor;
          count += 1;
        }
        if (rows.length < PAGE) return count;
      }
    },
  };
}

/** Orders two cursors ("<txid>.<seq>") as the log does. */
export function compareCursors(a: string, b: string): number {
  const [at, as] = a.split('.').map(BigInt) as [bigint, bigint];
  const [bt, bs] = b.split('.').map(BigInt) as [bigint, bigint];
  return at === bt ? (as === bs ? 0 : as < bs ? -1 : 1) : at < bt ? -1 : 1;
}

export interface WatchKpiHistoryOptions {
  /** One tenant; every tenant when omitted. */
  tenantId?: string;
  /** Resume after this cursor; without it, only changes committed from now on. */
  after?: string;
  /** A postgres.js instance to use (and not to end); otherwise databaseUrl, or DATABASE_URL. */
  sql?: postgres.Sql;
  databaseUrl?: string;
  /** Called when reading fails; the watch goes on at the next notification or poll. */
  onError?: (error: Error) => void;
}

export interface KpiHistoryWatch {
  /** The cursor of the last change handed over: pass it as `after` to resume later. */
  position(): string;
  stop(): Promise<void>;
}

/**
 * Server code: calls `onChange` for each change of the history and anomalies (of one tenant or
 * all), in order, each once, as transactions commit — woken by NOTIFY.
 */
export async function watchKpiHistory(options: WatchKpiHistoryOptions, onChange: (change: LoggedChange) => void | Promise<void>): Promise<KpiHistoryWatch> {
  const url = options.databaseUrl ?? process.env.DATABASE_URL;
  if (!options.sql && !url) throw new KpiHistoryError({ code: 'INVALID_INPUT', message: 'no database: pass { sql } or { databaseUrl }, or set DATABASE_URL' });
  const sql = options.sql ?? postgres(url!, { max: 1, onnotice: () => {}, connection: { application_name: 'kpi-history-watch' } });
  const reader = changeLogReader(sql, { tenantId: options.tenantId, after: options.after });
  if (options.after === undefined) await reader.skipToHead();
  // One read at a time; a notification during a read asks for one more.
  let reading: Promise<unknown> | null = null;
  let again = false;
  const recheck = recheckWhilePending(reader, () => wake());
  const wake = (): void => {
    if (reading) {
      again = true;
      return;
    }
    reading = reader
      .read(onChange)
      .then(() => recheck.after())
      .catch((error: unknown) => options.onError?.(error as Error))
      .finally(() => {
        reading = null;
        if (again) {
          again = false;
          wake();
        }
      });
  };
  // Woken by each notification and each (re)connection of the listener: no polling while idle.
  const listening = await sql.listen('kpi_changes', wake, wake);
  return {
    position: () => reader.position(),
    async stop() {
      recheck.stop();
      await listening.unlisten();
      while (reading) await reading;
      if (!options.sql) await sql.end({ timeout: 5 });
    },
  };
}
