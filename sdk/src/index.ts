// kpi-history — the browser-safe entry: typed calls to the PostgREST API. No Node built-ins and no
// database driver here (a test bundles this file for browsers to keep it so).
//
// Every call returns its data or throws a KpiHistoryError with a stable `code`.
import { PostgrestClient } from '@supabase/postgrest-js';
import type { Database } from './database.types.js';
import { codeForHttpError, KpiHistoryError } from './errors.js';
import { logHttp, pathOf } from './log.js';
import { watchChanges, type WatchOptions } from './watch.js';
import {
  PERIODS_PER_YEAR,
  type AnomalyQuery,
  type CsvQuery,
  type CustomKpiChange,
  type CustomKpiDefinition,
  type CustomKpiRollupRow,
  type CustomKpiRow,
  type CustomKpiValueRow,
  type CustomRollupsQuery,
  type CustomValuesQuery,
  type FillAllResult,
  type FillResult,
  type HealthResult,
  type HealthSummary,
  type HistoryQuery,
  type KpiAnomalyRow,
  type KpiChangePage,
  type KpiHistoryRow,
  type KpiRollupRows,
  type RollupPeriod,
  type RollupQuery,
  type SkippedResult,
} from './results.js';

export { KPI_ERROR_CODES, KpiHistoryError, type KpiErrorCode } from './errors.js';
export { DATABASE_ERRORS, type Database, type DatabaseErrorCode, type Json } from './database.types.js';
export type * from './results.js';
export { PERIODS_PER_YEAR } from './results.js';
export type { WatchOptions } from './watch.js';

type Fetch = typeof fetch;

interface CommonOptions {
  /** PostgREST's base URL, e.g. https://api.example.com or http://localhost:3000. */
  url: string;
  /** Defaults to the global fetch. */
  fetch?: Fetch;
  /** Extra headers sent with every call (an API gateway key, say). */
  headers?: Record<string, string>;
  /** Retry GETs on network errors and 503/520 (1 s, 2 s, 4 s), as postgrest-js does. Default true. */
  retry?: boolean;
}

export interface KpiHistoryClientOptions extends CommonOptions {
  /** A JWT with role "authenticated" and the user's "tenant_ids". */
  token: string;
  /** The tenant to act for (the x-tenant header); needed when the token grants several. */
  tenantId?: string;
  /** The worker's change stream, e.g. https://stream.example.com/v1/stream: needed by watch(). */
  streamUrl?: string;
}

export interface KpiCronClientOptions extends CommonOptions {
  /** The CRON_SECRET installed in the database. Server-side code only: never ship it to a browser. */
  cronSecret: string;
}

/** Logs method, path, status and duration of each call; never headers or bodies. */
function loggingFetch(base: Fetch): Fetch {
  return async (input, init) => {
    const method = init?.method ?? 'GET';
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const started = Date.now();
    try {
      const response = await base(input, init);
      logHttp('%s %s %d %dms', method, pathOf(url), response.status, Date.now() - started);
      return response;
    } catch (error) {
      logHttp('%s %s network error after %dms', method, pathOf(url), Date.now() - started);
      throw error;
    }
  };
}

interface PostgrestErrorLike {
  code?: string;
  message?: string;
  details?: string | null;
  hint?: string | null;
}

/** Turns a postgrest-js error (status 0: no answer at all) into a KpiHistoryError. */
function toError(error: PostgrestErrorLike, status: number, what: string): KpiHistoryError {
  if (status === 0) {
    return new KpiHistoryError({ code: 'NETWORK_ERROR', message: `${what}: ${error.message ?? 'no answer'}`, details: error.details });
  }
  return new KpiHistoryError({
    code: codeForHttpError(error.code, status),
    message: error.message ?? `${what} answered ${status}`,
    status,
    details: error.details,
    hint: error.hint,
    serverCode: error.code,
  });
}

function unwrap<T>(result: { data: T | null; error: PostgrestErrorLike | null; status: number }, what: string): T {
  if (result.error) throw toError(result.error, result.status, what);
  if (result.data === null) {
    throw new KpiHistoryError({ code: 'UNEXPECTED_RESPONSE', message: `${what} answered ${result.status} without a body`, status: result.status });
  }
  return result.data;
}

function postgrest(options: CommonOptions, headers: Record<string, string>) {
  return new PostgrestClient<Database, { PostgrestVersion: '16.2' }, 'api'>(options.url.replace(/\/+$/, ''), {
    schema: 'api',
    headers: { ...options.headers, ...headers },
    fetch: loggingFetch(options.fetch ?? ((...args) => fetch(...args))),
    retry: options.retry,
  });
}

/** The file name from `Content-Disposition: attachment; filename="…"`. */
function filenameOf(contentDisposition: string | null): string | null {
  return /filename="([^"]+)"/.exec(contentDisposition ?? '')?.[1] ?? null;
}

export function createKpiHistoryClient(options: KpiHistoryClientOptions) {
  const auth: Record<string, string> = { Authorization: `Bearer ${options.token}` };
  if (options.tenantId) auth['x-tenant'] = options.tenantId;
  const client = postgrest(options, auth);
  const baseUrl = options.url.replace(/\/+$/, '');
  const fetchLogged = loggingFetch(options.fetch ?? ((...args) => fetch(...args)));

  /** The CSV with its headers: postgrest-js hides response headers, so this is a plain GET. */
  async function requestCsv(query: CsvQuery): Promise<{ text: string; filename: string | null }> {
    const params = new URLSearchParams();
    const weeks = query.weeks ?? query.limit;
    if (query.period) params.set('period', query.period);
    if (weeks !== undefined) params.set('weeks', String(weeks));
    if (query.from) params.set('from', query.from);
    if (query.to) params.set('to', query.to);
    if (query.custom) params.set('custom', 'true');
    const url = `${baseUrl}/rpc/kpi_history_csv${params.size ? `?${params}` : ''}`;
    let response: Response;
    try {
      response = await fetchLogged(url, { method: 'GET', headers: { ...options.headers, ...auth, Accept: 'text/csv' } });
    } catch (cause) {
      throw new KpiHistoryError({ code: 'NETWORK_ERROR', message: `CSV export: ${(cause as Error).message}`, cause });
    }
    const text = await response.text();
    if (!response.ok) {
      let body: PostgrestErrorLike = {};
      try {
        body = JSON.parse(text) as PostgrestErrorLike;
      } catch {
        body = { message: `CSV export answered ${response.status}` };
      }
      throw toError(body, response.status, 'CSV export');
    }
    return { text, filename: filenameOf(response.headers.get('content-disposition')) };
  }

  /**
   * The file name the server would give, when Content-Disposition is out of reach (a cross-origin
   * browser app: PostgREST's CORS does not expose it): the tenant column of the CSV's first row,
   * or, for an export without rows, the active tenant's slug. The date is today's in UTC, as the
   * server names it.
   */
  async function fallbackFilename(text: string, period: CsvQuery['period']): Promise<string> {
    const today = new Date().toISOString().slice(0, 10);
    // The first field of the second line; slugs are plain, so never quoted.
    let slug = /^[^\r\n]*\r\n([a-z0-9][a-z0-9-]*),/.exec(text)?.[1] ?? null;
    if (!slug) {
      const tenant = unwrap(await client.from('active_tenant').select('slug').limit(1), 'active tenant');
      slug = tenant[0]?.slug ?? null;
    }
    if (!slug) throw new KpiHistoryError({ code: 'UNKNOWN_TENANT', message: 'the active tenant does not exist', status: 404 });
    // The weekly file keeps its original name; months and quarters say which they are.
    return `kpi-history-${slug}-${period && period !== 'week' ? `${period}-` : ''}${today}.csv`;
  }

  async function weeks(query: HistoryQuery): Promise<KpiHistoryRow[]> {
    let request = client
      .from('kpi_history')
      .select('*')
      .order('as_of', { ascending: query.order === 'asc' })
      .limit(query.limit ?? 52);
    if (query.from) request = request.gte('as_of', query.from);
    if (query.to) request = request.lte('as_of', query.to);
    return unwrap(await request, 'history');
  }

  async function periods<P extends RollupPeriod>(query: RollupQuery<P>): Promise<KpiRollupRows[P][]> {
    const view = query.period === 'month' ? 'kpi_history_monthly' : 'kpi_history_quarterly';
    let request = client
      .from(view)
      .select('*')
      .order('period_start', { ascending: query.order === 'asc' })
      .limit(query.limit ?? PERIODS_PER_YEAR[query.period]);
    if (query.from) request = request.gte('period_start', query.from);
    if (query.to) request = request.lte('period_start', query.to);
    return unwrap(await request, `${query.period}ly history`) as KpiRollupRows[P][];
  }

  /**
   * The active tenant's weeks, newest first (52 by default); with `period: 'month' | 'quarter'`,
   * its months or quarters (a year by default), each row typed for its period.
   */
  function history(query?: HistoryQuery & { period?: 'week' }): Promise<KpiHistoryRow[]>;
  function history<P extends RollupPeriod>(query: RollupQuery<P>): Promise<KpiRollupRows[P][]>;
  function history(query: (HistoryQuery & { period?: 'week' }) | RollupQuery = {}): Promise<unknown[]> {
    const period = query.period ?? 'week';
    if (period === 'week') return weeks(query as HistoryQuery);
    if (period !== 'month' && period !== 'quarter') {
      return Promise.reject(new KpiHistoryError({ code: 'INVALID_INPUT', message: `period must be week, month or quarter, got ${String(period)}` }));
    }
    return periods(query as RollupQuery);
  }

  /** The fields that give a definition its shape: a new source or combine clears the others. */
  const SHAPE = ['source', 'path', 'field', 'aggregate', 'combine', 'left_kpi', 'right_kpi'] as const;

  const customKpis = {
    /** The active tenant's custom KPI definitions, by key. */
    async list(): Promise<CustomKpiRow[]> {
      return unwrap(await client.from('custom_kpis').select('*').order('key'), 'custom KPIs');
    },
    /**
     * Defines a custom KPI (tenant admins only: FORBIDDEN otherwise). Invalid definitions throw
     * INVALID_INPUT naming the field. The next fill computes it for every week.
     */
    async define(definition: CustomKpiDefinition): Promise<CustomKpiRow> {
      const row: Database['api']['Views']['custom_kpis']['Insert'] = definition;
      const rows = unwrap(await client.from('custom_kpis').insert(row).select('*'), 'define custom KPI');
      return rows[0]!;
    },
    /**
     * Changes a definition (admins only); the next fill re-derives its every week. Returns the
     * definition, or null when the active tenant has no custom KPI with this key.
     */
    async update(key: string, change: CustomKpiChange): Promise<CustomKpiRow | null> {
      const body: CustomKpiChange = { ...change };
      if ('source' in change || 'combine' in change) {
        for (const field of SHAPE) if (!(field in change)) (body as Record<string, unknown>)[field] = null;
      }
      const rows = unwrap(await client.from('custom_kpis').update(body).eq('key', key).select('*'), 'update custom KPI');
      return rows[0] ?? null;
    },
    /** Deletes a custom KPI and its values (admins only). False when there was none with this key. */
    async remove(key: string): Promise<boolean> {
      const rows = unwrap(await client.from('custom_kpis').delete().eq('key', key).select('key'), 'remove custom KPI');
      return rows.length > 0;
    },
  };

  return {
    history,

    /** Custom KPI definitions: every member lists them; tenant admins define, update and remove. */
    customKpis,

    /** The active tenant's custom KPI values, oldest week first, by week range and keys. */
    async customValues(query: CustomValuesQuery = {}): Promise<CustomKpiValueRow[]> {
      let request = client
        .from('custom_kpi_values')
        .select('*')
        .order('as_of')
        .order('key')
        .limit(query.limit ?? 1000);
      if (query.from) request = request.gte('as_of', query.from);
      if (query.to) request = request.lte('as_of', query.to);
      if (query.keys) request = request.in('key', query.keys);
      return unwrap(await request, 'custom values');
    },

    /** The active tenant's custom KPIs by month or quarter, oldest first, by period_start range and keys. */
    async customRollups(query: CustomRollupsQuery): Promise<CustomKpiRollupRow[]> {
      let request = client
        .from('custom_kpi_rollups')
        .select('*')
        .eq('period', query.period)
        .order('period_start')
        .order('key')
        .limit(query.limit ?? 1000);
      if (query.from) request = request.gte('period_start', query.from);
      if (query.to) request = request.lte('period_start', query.to);
      if (query.keys) request = request.in('key', query.keys);
      return unwrap(await request, `custom ${query.period}ly rollups`);
    },

    /** The CSV export (RFC 4180) as text. */
    async exportCsv(query: CsvQuery = {}): Promise<string> {
      return (await requestCsv(query)).text;
    },

    /**
     * The CSV export as a Blob and its file name, `kpi-history-<tenant>-<date>.csv` (with
     * `-month` or `-quarter` before the date for those periods), ready for a download link — in a
     * cross-origin browser app too.
     */
    async exportCsvFile(query: CsvQuery = {}): Promise<{ blob: Blob; filename: string }> {
      const { text, filename } = await requestCsv(query);
      return { blob: new Blob([text], { type: 'text/csv' }), filename: filename ?? (await fallbackFilename(text, query.period)) };
    },

    /** The active tenant's anomalies, newest week first (100 by default), by week range and KPI. */
    async anomalies(query: AnomalyQuery = {}): Promise<KpiAnomalyRow[]> {
      const ascending = query.order === 'asc';
      let request = client
        .from('kpi_anomalies')
        .select('*')
        .order('as_of', { ascending })
        .order('kpi', { ascending: true })
        .limit(query.limit ?? 100);
      if (query.from) request = request.gte('as_of', query.from);
      if (query.to) request = request.lte('as_of', query.to);
      if (query.kpi) request = request.eq('kpi', query.kpi);
      return unwrap(await request, 'anomalies') as KpiAnomalyRow[];
    },

    /**
     * The active tenant's changes after `after` (from the oldest kept without it), up to 1,000:
     * each change once, in order. Throws CURSOR_EXPIRED when the feed no longer reaches back that far.
     */
    async changes(query: { after?: string } = {}): Promise<KpiChangePage> {
      const args = query.after === undefined ? {} : { after: query.after };
      return unwrap(await client.rpc('kpi_history_changes', args, { get: true }), 'changes') as unknown as KpiChangePage;
    },

    /**
     * Follows the active tenant's changes as they are committed (the worker's Server-Sent Events):
     * `onChange` for each, in order, reconnecting and resuming after a dropped connection, until
     * `signal` aborts. Rejects on a refusal (UNAUTHORIZED, FORBIDDEN, CURSOR_EXPIRED…).
     */
    watch(watchOptions: WatchOptions): Promise<void> {
      if (!options.streamUrl) {
        return Promise.reject(new KpiHistoryError({ code: 'INVALID_INPUT', message: 'watch() needs the streamUrl option (the worker’s /v1/stream)' }));
      }
      return watchChanges({ streamUrl: options.streamUrl, headers: { ...options.headers, ...auth }, fetch: fetchLogged }, watchOptions);
    },

    /** Health of kpi-history as anyone sees it: the status and its freshness (the whole report: the cron client's health()). */
    async health(): Promise<HealthSummary> {
      return unwrap(await client.rpc('kpi_history_health', {}, { get: true }), 'health') as unknown as HealthSummary;
    },
  };
}

export type KpiHistoryClient = ReturnType<typeof createKpiHistoryClient>;

export interface KpiCronClient {
  /** Fills every tenant's latest week. */
  run(): Promise<FillAllResult | SkippedResult>;
  /** Fills one tenant's latest week. */
  run(input: { tenantId: string }): Promise<FillResult>;
  /** The whole health report (the cron secret unlocks it). */
  health(): Promise<HealthResult>;
}

export function createKpiCronClient(options: KpiCronClientOptions): KpiCronClient {
  const client = postgrest(options, { 'x-cron-secret': options.cronSecret });
  async function run(input?: { tenantId: string }): Promise<FillResult | FillAllResult | SkippedResult> {
    const body = input ? { tenantId: input.tenantId } : {};
    const result = unwrap(await client.rpc('kpi_history_cron', body), 'cron run');
    return result as unknown as FillResult | FillAllResult | SkippedResult;
  }
  /** The whole health report: every reason to act, the last run, failing tenants, the schedule, the alerts. */
  async function health(): Promise<HealthResult> {
    return unwrap(await client.rpc('kpi_history_health', {}, { get: true }), 'health') as unknown as HealthResult;
  }
  return { run, health } as KpiCronClient;
}
