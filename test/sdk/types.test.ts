// The public types are pinned here: `npm test` type-checks this file, so a wrong column name or
// argument that compiled would fail the run (each @ts-expect-error must meet an error).
import { readFileSync } from 'node:fs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { PostgrestClient } from '@supabase/postgrest-js';
import { useTestDatabase } from '../helpers/database.js';
import { generateTypes, TYPES_FILE } from '../../scripts/gen-types.js';
import {
  createKpiCronClient,
  createKpiHistoryClient,
  KPI_ERROR_CODES,
  type Database,
  type FillAllResult,
  type FillResult,
  type KpiErrorCode,
  type KpiAnomalyRow,
  type KpiHistoryMonthlyRow,
  type KpiHistoryQuarterlyRow,
  type KpiHistoryRow,
  type SkippedResult,
} from '../../sdk/src/index.js';
import { fillKpiHistory, backfillKpiHistory, readKpiRollup } from '../../sdk/src/server.js';

const db = useTestDatabase();

describe('generated types', () => {
  it('sdk/src/database.types.ts is what `npm run gen:types` makes from the migrations (run it to refresh)', async () => {
    expect(readFileSync(TYPES_FILE, 'utf8')).toBe(await generateTypes(db.sql));
  });

  it('the error codes come from kpi.error_codes, plus the client-side ones', async () => {
    const rows = await db.sql`select code from kpi.error_codes order by code`;
    expect([...KPI_ERROR_CODES].sort()).toEqual([...rows.map((r) => r.code), 'NETWORK_ERROR', 'RATE_LIMITED', 'UNAUTHORIZED', 'UNEXPECTED_RESPONSE'].sort());
  });
});

describe('public API types', () => {
  const client = createKpiHistoryClient({ url: 'http://x', token: 't' });
  const cron = createKpiCronClient({ url: 'http://x', cronSecret: 's' });

  it('history rows are the view’s columns with their SQL types', () => {
    expectTypeOf<KpiHistoryRow>().toEqualTypeOf<{
      as_of: string;
      aiv_pct: number;
      ati_pct: number;
      crs_pct: number;
      elasticity_usd_per_point: number;
      vli_integrity_pct: number;
      vli_is_fallback: boolean;
      hrp_pct: number | null;
      updated_at: string;
    }>();
    // @ts-expect-error: no such column
    type _Missing = KpiHistoryRow['tenant_id'];
    // Compiled, never called: the point is what the compiler accepts.
    void (() => {
      expectTypeOf(client.history()).resolves.toEqualTypeOf<KpiHistoryRow[]>();
      expectTypeOf(client.history({ period: 'week', limit: 4 })).resolves.toEqualTypeOf<KpiHistoryRow[]>();
      // @ts-expect-error: `order` is 'asc' or 'desc'
      void client.history({ order: 'newest' });
      // @ts-expect-error: limit is a number
      void client.history({ limit: '52' });
    });
  });

  it('history({ period }) is typed per period: monthly and quarterly rows from the generated views', () => {
    expectTypeOf<KpiHistoryMonthlyRow['aiv_pct_avg']>().toEqualTypeOf<number>();
    expectTypeOf<KpiHistoryMonthlyRow['hrp_pct_avg']>().toEqualTypeOf<number | null>();
    expectTypeOf<KpiHistoryMonthlyRow['hrp_pct_last']>().toEqualTypeOf<number | null>();
    expectTypeOf<KpiHistoryQuarterlyRow['complete']>().toEqualTypeOf<boolean>();
    expectTypeOf<KpiHistoryQuarterlyRow['weeks']>().toEqualTypeOf<number>();
    // @ts-expect-error: rollups have no as_of; they have period_start
    type _NoAsOf = KpiHistoryMonthlyRow['as_of'];
    void (() => {
      expectTypeOf(client.history({ period: 'month' })).resolves.toEqualTypeOf<KpiHistoryMonthlyRow[]>();
      expectTypeOf(client.history({ period: 'quarter', from: '2026-01-01', order: 'asc' })).resolves.toEqualTypeOf<KpiHistoryQuarterlyRow[]>();
      expectTypeOf(readKpiRollup('t', { period: 'month' })).resolves.toEqualTypeOf<KpiHistoryMonthlyRow[]>();
      // @ts-expect-error: no such period
      void client.history({ period: 'year' });
      // @ts-expect-error: limit is a number
      void client.history({ period: 'month', limit: '12' });
      // @ts-expect-error: the server read needs a period
      void readKpiRollup('t', {});
      void client.exportCsv({ period: 'quarter', from: '2026-01-01' });
      // @ts-expect-error: no such period
      void client.exportCsv({ period: 'year' });
    });
  });

  it('anomalies() rows: a built-in KPI or a custom KPI\'s key, a closed set of directions, a score that may be infinite', () => {
    // /kpi_anomalies answers custom KPIs' keys too: the type says so, and still suggests the built-in names.
    expectTypeOf<'aiv_pct'>().toMatchTypeOf<KpiAnomalyRow['kpi']>();
    expectTypeOf<'p95_latency_ms'>().toMatchTypeOf<KpiAnomalyRow['kpi']>();
    expectTypeOf<KpiAnomalyRow['direction']>().toEqualTypeOf<'up' | 'down'>();
    expectTypeOf<KpiAnomalyRow['score']>().toEqualTypeOf<number | 'Infinity' | '-Infinity'>();
    void (() => {
      expectTypeOf(client.anomalies({ kpi: 'hrp_pct', from: '2026-01-01' })).resolves.toEqualTypeOf<KpiAnomalyRow[]>();
      expectTypeOf(client.anomalies({ kpi: 'p95_latency_ms' })).resolves.toEqualTypeOf<KpiAnomalyRow[]>();
      // @ts-expect-error: a KPI is a string
      void client.anomalies({ kpi: 42 });
    });
  });

  it('the cron client’s run() has the two original shapes', () => {
    expectTypeOf(cron.run).toBeCallableWith();
    void (() => {
      // Type-level only: calling run() would send a request.
      expectTypeOf(cron.run({ tenantId: 'x' })).resolves.toEqualTypeOf<FillResult>();
      expectTypeOf(cron.run()).resolves.toEqualTypeOf<FillAllResult | SkippedResult>();
      // @ts-expect-error: the body field is tenantId
      void cron.run({ tenant_id: 'x' });
    });
  });

  it('server calls keep the original names and results', () => {
    expectTypeOf(fillKpiHistory).parameters.toEqualTypeOf<[string]>();
    expectTypeOf(fillKpiHistory).returns.resolves.toEqualTypeOf<FillResult>();
    void (() => {
      // @ts-expect-error: dates are YYYY-MM-DD strings
      void backfillKpiHistory({ from: new Date() });
    });
  });

  it('error codes are a closed union', () => {
    expectTypeOf<'NO_AVI'>().toMatchTypeOf<KpiErrorCode>();
    // @ts-expect-error: not a code
    const _wrong: KpiErrorCode = 'NOT_FOUND';
    void _wrong;
  });

  it('postgrest-js with the generated Database type refuses unknown columns and arguments', () => {
    const raw = new PostgrestClient<Database, { PostgrestVersion: '16.2' }, 'api'>('http://x', { schema: 'api' });
    const columns = raw.from('kpi_history').select('as_of, hrp_pct');
    expectTypeOf(columns).resolves.toMatchTypeOf<{ data: { as_of: string; hrp_pct: number | null }[] | null }>();
    void (() => {
      // @ts-expect-error: no such view
      void raw.from('kpi_history_secret');
      void raw.rpc('kpi_history_csv', { weeks: '5' });
      // @ts-expect-error: limit is PostgREST's own query key, never an argument
      void raw.rpc('kpi_history_csv', { limit: 5 });
    });
  });
});
