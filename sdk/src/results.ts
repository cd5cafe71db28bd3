// The JSON results of the fill functions and the health check. The database returns them as json,
// which the generated types can only call Json; their shapes are documented in the functions'
// COMMENTs, and test/sdk asserts these types against what the database really returns.
import type { Database } from './database.types.js';

export type KpiHistoryRow = Database['api']['Views']['kpi_history']['Row'];
export type KpiHistoryExportRow = Database['api']['Views']['kpi_history_export']['Row'];
/** A month of the active tenant's history: the weeks whose Thursday falls in it, summarized. */
export type KpiHistoryMonthlyRow = Database['api']['Views']['kpi_history_monthly']['Row'];
/** A quarter of the active tenant's history: the weeks whose Thursday falls in it, summarized. */
export type KpiHistoryQuarterlyRow = Database['api']['Views']['kpi_history_quarterly']['Row'];
export type RollupPeriod = 'month' | 'quarter';

/** A custom KPI's definition as the API shows it (GET /custom_kpis). */
export type CustomKpiRow = Database['api']['Views']['custom_kpis']['Row'];
export type CustomKpiAggregate = 'latest' | 'avg' | 'min' | 'max' | 'sum' | 'count';
interface CustomKpiCommon {
  /** 1–40 lower-case letters, digits or _, starting with a letter; not a built-in KPI's name. */
  key: string;
  label: string;
  unit?: string | null;
  /** A value outside [valid_min, valid_max] is stored as NULL (an INVALID_CUSTOM run warning). */
  valid_min?: number | null;
  valid_max?: number | null;
  /** Only active KPIs are computed (at most 20 per tenant by default). */
  active?: boolean;
}
/**
 * A custom KPI: a weekly aggregate of one source — a number at `path` in a clarity report's
 * metrics, or an AVI or VLI column — or the difference or ratio of two weekly KPIs (built-in, or
 * custom with a source).
 */
export type CustomKpiDefinition = CustomKpiCommon &
  (
    | { source: 'clarity'; path: string[]; aggregate: CustomKpiAggregate }
    | { source: 'avi'; field: 'aiv_pct' | 'ati_pct' | 'crs_pct' | 'elasticity_usd_per_point'; aggregate: CustomKpiAggregate }
    | { source: 'vli'; field: 'integrity_pct'; aggregate: CustomKpiAggregate }
    | { combine: 'difference' | 'ratio'; left_kpi: string; right_kpi: string }
  );
/** A change of a definition (the key stays); a new `source` or `combine` replaces the definition's shape. */
export type CustomKpiChange = Database['api']['Views']['custom_kpis']['Update'];
/** One week's value of a custom KPI (GET /custom_kpi_values). */
export type CustomKpiValueRow = Database['api']['Views']['custom_kpi_values']['Row'];
/** A week's custom values as the change feed carries them: `values` maps each active KPI's key to its value. */
export interface CustomKpiValueChange {
  as_of: string;
  values: Record<string, number | null>;
  updated_at: string;
}
/** A custom KPI's month or quarter (GET /custom_kpi_rollups). */
export type CustomKpiRollupRow = Database['api']['Views']['custom_kpi_rollups']['Row'];

export interface CustomRollupsQuery {
  period: RollupPeriod;
  /** Earliest period_start, YYYY-MM-DD (inclusive). */
  from?: string;
  /** Latest period_start, YYYY-MM-DD (inclusive). */
  to?: string;
  /** Only these custom KPIs (keys). */
  keys?: string[];
  /** Rows to return, oldest period first (default 1000). */
  limit?: number;
}

export interface CustomValuesQuery {
  /** Earliest week (as_of), YYYY-MM-DD (inclusive). */
  from?: string;
  /** Latest week (as_of), YYYY-MM-DD (inclusive). */
  to?: string;
  /** Only these custom KPIs (keys). */
  keys?: string[];
  /** Rows to return, oldest week first (default 1000). */
  limit?: number;
}
/** The KPIs of a history row, as anomalies and rules name them. */
export type KpiName = 'aiv_pct' | 'ati_pct' | 'crs_pct' | 'elasticity_usd_per_point' | 'vli_integrity_pct' | 'hrp_pct';
/**
 * What an anomaly names: a built-in KPI, or a custom KPI's key (any other string; `string & {}`
 * keeps the built-in names suggested by editors).
 */
export type AnomalyKpi = KpiName | (string & {});
/**
 * An anomaly of the active tenant: a week whose KPI is far from the previous 12 weeks. `score` is
 * a number, or "Infinity" / "-Infinity" (JSON has no infinite numbers) when the baseline had no
 * spread at all.
 */
export type KpiAnomalyRow = Omit<Database['api']['Views']['kpi_anomalies']['Row'], 'kpi' | 'direction' | 'score'> & {
  kpi: AnomalyKpi;
  direction: 'up' | 'down';
  score: number | 'Infinity' | '-Infinity';
};

export interface AnomalyQuery {
  /** Earliest week (as_of), YYYY-MM-DD (inclusive). */
  from?: string;
  /** Latest week (as_of), YYYY-MM-DD (inclusive). */
  to?: string;
  /** One KPI only: built-in, or a custom KPI's key. */
  kpi?: AnomalyKpi;
  /** Anomalies to return, newest week first unless `order` is 'asc' (default 100). */
  limit?: number;
  order?: 'asc' | 'desc';
}
/** The row type of each period. */
export interface KpiRollupRows {
  month: KpiHistoryMonthlyRow;
  quarter: KpiHistoryQuarterlyRow;
}

export interface TenantProblem {
  tenant_id: string;
  /** The tenant's slug (errors). */
  tenant?: string;
  code: string;
  message: string;
  /** What to do about it (NO_AVI: insert an AVI report first). */
  hint?: string;
  /** PostgreSQL's SQLSTATE, for INTERNAL_ERROR: a tenant whose write failed. */
  sqlstate?: string;
  /** The week concerned, for warnings. */
  as_of?: string;
  /** The custom KPI concerned, for INVALID_CUSTOM warnings. */
  kpi?: string;
}

/** `fillKpiHistory(tenantId)`: the tenant's latest week was written (or already right). */
export interface FillResult {
  ok: true;
  status: 'ok';
  /** The Monday of the week written, YYYY-MM-DD. */
  as_of: string;
  rows_written: number;
  /** Always empty: a tenant's error (NO_AVI, a failed write) is thrown instead. */
  errors: [];
  warnings: TenantProblem[];
  /** Anomalies the write inserted or changed (kpi.kpi_anomalies), each with an alert enqueued. */
  anomalies: number;
  run_id: number;
}

export type RunStatus = 'ok' | 'partial' | 'failed' | 'skipped';

/** `fillAllKpiHistory()` and `backfillKpiHistory()`. */
export interface FillAllResult {
  /** Tenants written (or already right). */
  ok: number;
  /** Tenants considered. */
  total: number;
  errors: TenantProblem[];
  warnings: TenantProblem[];
  rows_written: number;
  /** A failed run is never a result: the calls throw INTERNAL_ERROR naming it. */
  status: 'ok' | 'partial';
  /**
   * All-tenant fills: `incremental` (the default) read only the tenants whose sources changed;
   * `full` every tenant. (Absent for backfills.)
   */
  mode?: 'incremental' | 'full';
  /** All-tenant fills: the tenants whose sources were read. */
  tenants_considered?: number;
  /** Full fills: rows the change tracking had missed and this run corrected; should be 0. */
  corrected?: number;
  run_id: number;
  /** The tenant-weeks computed. */
  weeks: number;
  /** Anomalies the run's writes inserted or changed (kpi.kpi_anomalies), each with an alert enqueued. */
  anomalies: number;
  /**
   * History weeks left as they are because their sources are, or may be, gone (source retention):
   * never recomputed, so the history never changes when sources expire.
   */
  weeks_kept: number;
  /**
   * `errors` and `warnings` hold at most 100 each; these count every one by code, and
   * `complete_lists` says where the whole lists are (the run's row in kpi.kpi_runs) when cut.
   */
  error_counts?: Record<string, number>;
  warning_counts?: Record<string, number>;
  complete_lists?: string;
  /** Custom KPIs: weeks whose values were written, values computed, definitions derived anew. */
  custom_weeks_written?: number;
  custom_values?: number;
  custom_kpis_derived?: number;
}

/** What the database answers for a failed all-tenant run; the SDK turns it into INTERNAL_ERROR. */
export interface FailedRunResult {
  ok: 0;
  /** Unknown: the run failed before it counted the tenants. */
  total: null;
  errors: { code: string; sqlstate?: string; message: string }[];
  warnings: TenantProblem[];
  rows_written: 0;
  status: 'failed';
  run_id: number;
}

/** Another all-tenant run held the lock; nothing was done. */
export interface SkippedResult {
  skipped: true;
  status: 'skipped';
  /** Names the session holding the lock, and since when. */
  message: string;
  /** The session that held the all-tenant lock, when it could be seen. */
  holder: { pid: number; since: string; run_id: number | null; application_name: string | null } | null;
  run_id: number;
}

/** What anyone learns from the health endpoint: the status and its freshness. */
export interface HealthSummary {
  status: 'healthy' | 'degraded';
  timestamp: string;
  last_success_at: string | null;
}

/**
 * The whole health report (the cron secret over HTTP, or the server SDK): every reason an operator
 * must act on, the last run, tenants failing run after run, the schedule, the alert outbox.
 */
export interface HealthResult extends HealthSummary {
  reasons: string[];
  last_run: { run_id: number; status: RunStatus | 'running'; trigger: 'pg_cron' | 'api' | 'sql'; started_at: string; finished_at: string | null } | null;
  /** Tenants whose fill failed in each of the last three runs. */
  failing_tenants: { count: number; by_code: Record<string, number>; tenants: string[]; run_id: number } | null;
  /** The pg_cron jobs of this database (null where pg_cron runs elsewhere). */
  schedule: { job: string; cron: string; timezone: string; active: boolean; last_status?: 'succeeded' | 'failed'; last_start?: string }[] | null;
  /** Alerts waiting, waiting over an hour (is a worker running?), and given up on. */
  alerts: { pending: number; overdue: number; dead: number };
}

export interface HistoryQuery {
  /** Weeks to return, newest first unless `order` is 'asc' (default 52). */
  limit?: number;
  /** Earliest as_of, YYYY-MM-DD (inclusive). */
  from?: string;
  /** Latest as_of, YYYY-MM-DD (inclusive). */
  to?: string;
  order?: 'asc' | 'desc';
}

export interface RollupQuery<P extends RollupPeriod = RollupPeriod> {
  /** Months or quarters: a week counts in the period of its Thursday (ISO 8601). */
  period: P;
  /** Periods to return, newest first unless `order` is 'asc' (default: a year, 12 months or 4 quarters). */
  limit?: number;
  /** Earliest period_start, YYYY-MM-DD (inclusive). */
  from?: string;
  /** Latest period_start, YYYY-MM-DD (inclusive). */
  to?: string;
  order?: 'asc' | 'desc';
}

/** Periods in a year: the default number of rollup rows. */
export const PERIODS_PER_YEAR: Record<RollupPeriod, number> = { month: 12, quarter: 4 };

export interface CsvQuery {
  /**
   * `week` (the default): one row per week, file `kpi-history-<tenant>-<date>.csv`. `month` or
   * `quarter`: one row per period with period_start in [from, to] (every period when both are
   * omitted), file `kpi-history-<tenant>-<period>-<date>.csv`; `weeks` is refused with these.
   */
  period?: 'week' | RollupPeriod;
  /** The latest `weeks` weeks (1–1000, default 52). */
  weeks?: number;
  /**
   * @deprecated Use `weeks`. Sent as `weeks`: PostgREST keeps a `limit` query key for itself, so
   * the server never saw it (it was ignored before 0.2).
   */
  limit?: number;
  /** First week (or period_start) to include, YYYY-MM-DD. */
  from?: string;
  /** Last week (or period_start) to include, YYYY-MM-DD. */
  to?: string;
  /** Weekly export only: one more column `custom.<key>` per active custom KPI, by key. */
  custom?: boolean;
}

/** One change of the feed (GET /rpc/kpi_history_changes). */
export interface KpiChange {
  /** Its position: pass the page's `next` (or this) as `after` to go on from here. */
  cursor: string;
  entity: 'history' | 'anomaly' | 'custom_values';
  op: 'insert' | 'update' | 'delete';
  as_of: string;
  /** Anomalies: which KPI (built-in, or a custom KPI's key). */
  kpi: string | null;
  /**
   * The row after the change, as the API shows it (history rows with their `revision`: keep the
   * highest); null for a delete.
   */
  data: (KpiHistoryRow & { revision: number }) | KpiAnomalyRow | CustomKpiValueChange | null;
  changed_at: string;
}

export interface KpiChangePage {
  changes: KpiChange[];
  /** The cursor to ask with next time (the same as `after` when nothing was new). */
  next: string;
  /** True when the page is full: ask again at once. */
  has_more: boolean;
}
