// kpi-history/server — for trusted server code (a Next.js route, a worker): the fill functions
// and reads over a direct database connection, as the table owner (no row-level security).
// The names and results are those of the original programmatic API.
//
// Every call returns its data or throws a KpiHistoryError with a stable `code`.
import postgres from 'postgres';
import { codeForSqlstate, KpiHistoryError, type KpiErrorCode } from './errors.js';
import { logSql } from './log.js';
import {
  PERIODS_PER_YEAR,
  type FailedRunResult,
  type FillAllResult,
  type FillResult,
  type HealthResult,
  type HistoryQuery,
  type KpiHistoryRow,
  type KpiRollupRows,
  type RollupPeriod,
  type RollupQuery,
  type SkippedResult,
} from './results.js';

export * from './index.js';
export { alertBody, signAlert, startAlertDelivery, type AlertDelivery, type AlertDeliveryOptions } from './alerts.js';
export { startChangeStream, type ChangeStream, type ChangeStreamOptions } from './stream.js';
export { watchKpiHistory, type KpiHistoryWatch, type LoggedChange, type WatchKpiHistoryOptions } from './follow.js';

export interface KpiHistoryServerOptions {
  /** A postgres.js instance to use (and not to end). */
  sql?: postgres.Sql;
  /** Otherwise a connection URL; default: the DATABASE_URL environment variable. */
  databaseUrl?: string;
}

export interface BackfillOptions {
  /** One tenant; all tenants when omitted. */
  tenantId?: string;
  /** First week (YYYY-MM-DD, inclusive); unbounded when omitted. */
  from?: string;
  /** Last week (inclusive); unbounded when omitted. */
  to?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
// postgres.js's and Node's codes for "could not reach or lost the server".
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED']);

function invalid(message: string): KpiHistoryError {
  return new KpiHistoryError({ code: 'INVALID_INPUT', message });
}

/** PostgreSQL's error → KpiHistoryError: our KH SQLSTATEs by kpi.error_codes, others by class. */
export function toKpiHistoryError(error: unknown): KpiHistoryError {
  if (error instanceof KpiHistoryError) return error;
  if (error instanceof postgres.PostgresError) {
    const code: KpiErrorCode =
      codeForSqlstate(error.code) ??
      (error.code === '42501' ? 'FORBIDDEN' : error.code.startsWith('22') || error.code.startsWith('23') ? 'INVALID_INPUT' : 'INTERNAL_ERROR');
    return new KpiHistoryError({ code, message: error.message, details: error.detail ?? null, hint: error.hint ?? null, serverCode: error.code, cause: error });
  }
  const systemCode = (error as { code?: string } | null)?.code;
  if (systemCode && NETWORK_CODES.has(systemCode)) {
    return new KpiHistoryError({ code: 'NETWORK_ERROR', message: `database unreachable: ${(error as Error).message}`, serverCode: systemCode, cause: error });
  }
  return new KpiHistoryError({ code: 'INTERNAL_ERROR', message: (error as Error)?.message ?? String(error), cause: error });
}

/** What a fill answers when it fails (kpi.try_fill_kpi_history). */
interface FailedFill {
  ok: false;
  code: KpiErrorCode;
  sqlstate: string;
  message: string;
  run_id: number;
}

/** An all-tenant run's answer as the database gives it: it may have failed. */
type RunResult = FillAllResult | SkippedResult | FailedRunResult;

/**
 * A failed run changed nothing and is logged; the caller gets an error naming it, as over HTTP
 * (INTERNAL_ERROR), never `{ status: 'failed' }` as data.
 */
function completed(result: RunResult): FillAllResult | SkippedResult {
  if (result.status === 'failed') {
    throw new KpiHistoryError({
      code: 'INTERNAL_ERROR',
      message: `the run failed and changed nothing; see run ${result.run_id} in kpi.kpi_runs`,
      details: result.errors.map((error) => `${error.code}${error.sqlstate ? ` (${error.sqlstate})` : ''}: ${error.message}`).join('; ') || null,
    });
  }
  return result;
}

export function createKpiHistoryServer(options: KpiHistoryServerOptions = {}) {
  const url = options.databaseUrl ?? process.env.DATABASE_URL;
  if (!options.sql && !url) {
    throw invalid('no database: pass { sql } or { databaseUrl }, or set DATABASE_URL');
  }
  const sql = options.sql ?? postgres(url!, { onnotice: () => {}, connection: { application_name: 'kpi-history' } });
  const ownsConnection = !options.sql;

  /** Runs one query, logging its name and duration, and mapping its errors. */
  async function call<T>(name: string, query: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      const result = await query();
      logSql('%s ok %dms', name, Date.now() - started);
      return result;
    } catch (error) {
      const mapped = toKpiHistoryError(error);
      logSql('%s %s %dms', name, mapped.code, Date.now() - started);
      throw mapped;
    }
  }

  const single = async <T>(name: string, query: () => Promise<{ result: T }[]>) => (await call(name, query))[0]!.result;

  return {
    /**
     * Writes the tenant's latest AVI week. Throws UNKNOWN_TENANT, NO_AVI, INVALID_INPUT — and the
     * failure is in kpi.kpi_runs as a failed run (kpi.try_fill_kpi_history logs it, then answers).
     */
    async fillKpiHistory(tenantId: string): Promise<FillResult> {
      if (typeof tenantId !== 'string' || !UUID.test(tenantId)) throw invalid('tenantId must be a UUID');
      const result = await single('fill_kpi_history', () => sql<{ result: FillResult | FailedFill }[]>`select kpi.try_fill_kpi_history(${tenantId}) as result`);
      if (result.ok === false) {
        throw new KpiHistoryError({ code: result.code, message: result.message, details: `run ${result.run_id} in kpi.kpi_runs`, serverCode: result.sqlstate });
      }
      return result;
    },

    /**
     * Brings every tenant's history up to date in one set-based statement: the tenants whose
     * sources changed (incremental, the default), or with `{ full: true }` every tenant, reporting
     * in `corrected` what the change tracking missed. Throws INTERNAL_ERROR when the run failed.
     */
    async fillAllKpiHistory(options: { full?: boolean } = {}): Promise<FillAllResult | SkippedResult> {
      const full = options.full === true;
      return completed(
        await single('fill_all_kpi_history', () => sql<{ result: RunResult }[]>`select kpi.fill_all_kpi_history(full => ${full}) as result`),
      );
    },

    /** Writes every AVI week in [from, to] for one tenant or all, as of each week. */
    backfillKpiHistory(backfill: BackfillOptions = {}): Promise<FillAllResult | SkippedResult> {
      const { tenantId = null, from = null, to = null } = backfill;
      if (tenantId !== null && !UUID.test(tenantId)) return Promise.reject(invalid('tenantId must be a UUID'));
      for (const [name, value] of [['from', from], ['to', to]] as const) {
        if (value !== null && !DATE.test(value)) return Promise.reject(invalid(`${name} must be a date, YYYY-MM-DD`));
      }
      return single('backfill_kpi_history', () => sql<{ result: RunResult }[]>`
        select kpi.backfill_kpi_history(${tenantId}::text, ${from}::date, ${to}::date) as result`).then(completed);
    },

    /** A tenant's weeks, newest first (52 by default), shaped exactly like the HTTP API's rows. */
    readKpiHistory(tenantId: string, query: HistoryQuery = {}): Promise<KpiHistoryRow[]> {
      if (!UUID.test(tenantId)) return Promise.reject(invalid('tenantId must be a UUID'));
      const { limit = 52, from = null, to = null, order = 'desc' } = query;
      if (!Number.isInteger(limit) || limit < 1) return Promise.reject(invalid('limit must be a positive integer'));
      // json_agg serializes as PostgREST does: numeric as JSON numbers, times in ISO 8601 (here in UTC).
      return single('read_kpi_history', () => sql<{ result: KpiHistoryRow[] }[]>`
        select coalesce(json_agg(row_to_json(h) order by h.as_of ${order === 'asc' ? sql`asc` : sql`desc`}), '[]') as result
        from (
          select as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct,
                 kpi.utc_iso(updated_at) as updated_at -- UTC, whatever the session's TimeZone
          from kpi.kpi_history
          where tenant_id = ${tenantId} and as_of >= coalesce(${from}::date, '-infinity') and as_of <= coalesce(${to}::date, 'infinity')
          order by as_of ${order === 'asc' ? sql`asc` : sql`desc`}
          limit ${limit}
        ) h`);
    },

    /**
     * A tenant's months or quarters, newest first (a year by default), shaped exactly like the
     * rows of GET /kpi_history_monthly and /kpi_history_quarterly.
     */
    readKpiRollup<P extends RollupPeriod>(tenantId: string, query: RollupQuery<P>): Promise<KpiRollupRows[P][]> {
      if (!UUID.test(tenantId)) return Promise.reject(invalid('tenantId must be a UUID'));
      const { period, from = null, to = null, order = 'desc' } = query ?? {};
      if (period !== 'month' && period !== 'quarter') return Promise.reject(invalid('period must be month or quarter'));
      const limit = query.limit ?? PERIODS_PER_YEAR[period];
      if (!Number.isInteger(limit) || limit < 1) return Promise.reject(invalid('limit must be a positive integer'));
      for (const [name, value] of [['from', from], ['to', to]] as const) {
        if (value !== null && !DATE.test(value)) return Promise.reject(invalid(`${name} must be a date, YYYY-MM-DD`));
      }
      const direction = order === 'asc' ? sql`asc` : sql`desc`;
      // From the rollup view by tenant_id (the API view has no tenant_id to narrow by), each row
      // poured into the API view's row type: the columns, their order and their JSON are those
      // HTTP answers, and cannot drift from them.
      const rowType = period === 'month' ? sql`api.kpi_history_monthly` : sql`api.kpi_history_quarterly`;
      return single(`read_kpi_rollup_${period}`, () => sql<{ result: KpiRollupRows[P][] }[]>`
        select coalesce(json_agg(
                 row_to_json(jsonb_populate_record(null::${rowType}, to_jsonb(r) || jsonb_build_object('tenant', slug.value)))
                 order by r.period_start ${direction}), '[]') as result
        from (
          select * from kpi.kpi_history_rollups
          where tenant_id = ${tenantId} and period = ${period}
            and period_start >= coalesce(${from}::date, '-infinity') and period_start <= coalesce(${to}::date, 'infinity')
          order by period_start ${direction}
          limit ${limit}
        ) r
        cross join (select t.slug as value from kpi.tenants t where t.id = ${tenantId}) slug`);
    },

    /** Health of the daily fill, as GET /rpc/kpi_history_health answers it. */
    health(): Promise<HealthResult> {
      return single('health', () => sql<{ result: HealthResult }[]>`select kpi.health_report() as result`);
    },

    /** Closes the connection pool, unless it was passed in. */
    async end(): Promise<void> {
      if (ownsConnection) await sql.end();
    },
  };
}

export type KpiHistoryServer = ReturnType<typeof createKpiHistoryServer>;

// The original programmatic API: functions on a shared connection from DATABASE_URL, made on
// first use. closeKpiHistory() ends it so that a script can exit.
let shared: KpiHistoryServer | undefined;
const server = () => (shared ??= createKpiHistoryServer());

export const fillKpiHistory = (tenantId: string) => server().fillKpiHistory(tenantId);
export const fillAllKpiHistory = (options?: { full?: boolean }) => server().fillAllKpiHistory(options);
export const backfillKpiHistory = (options?: BackfillOptions) => server().backfillKpiHistory(options);
export const readKpiHistory = (tenantId: string, query?: HistoryQuery) => server().readKpiHistory(tenantId, query);
export const readKpiRollup = <P extends RollupPeriod>(tenantId: string, query: RollupQuery<P>) => server().readKpiRollup(tenantId, query);
export async function closeKpiHistory(): Promise<void> {
  await shared?.end();
  shared = undefined;
}
