// Monthly and quarterly rollups read through the API path (role, claims, row-level security), as
// PostgREST runs them: a tenant's five years, computed on read from the weekly rows. The baseline
// is what keeping the rollups in a table would buy at best: the same rows read by primary key
// from a table that holds them already (built here, outside the timing, as the owner).
import type postgres from 'postgres';
import { distribution, takeTurns, timed, type Distribution } from './measure.js';

export type ApiReader = (tenantId: string, query: (tx: postgres.TransactionSql) => Promise<unknown>) => Promise<number>;

export interface RollupReads {
  monthly: Distribution;
  quarterly: Distribution;
  /** The same monthly rows from a table kept up to date (the alternative not chosen). */
  materializedMonthly: Distribution;
  /** p50 computed on read / read from the table. */
  onReadRatioP50: number;
  /** Months in one read (five years: 60). */
  monthsPerRead: number;
}

const FIVE_YEARS_OF_MONTHS = 60;

export async function measureRollupReads(sql: postgres.Sql, pool: postgres.Sql, readers: string[], asApi: ApiReader): Promise<RollupReads> {
  await sql`drop table if exists public.bench_rollups_materialized`;
  await sql`
    create table public.bench_rollups_materialized as
    select * from kpi.kpi_history_rollups where tenant_id = any(${readers}::uuid[])`;
  await sql`alter table public.bench_rollups_materialized add primary key (tenant_id, period, period_start)`;
  await sql`vacuum analyze public.bench_rollups_materialized`;

  const rollupQuery = (view: 'kpi_history_monthly' | 'kpi_history_quarterly', periods: number) => (tx: postgres.TransactionSql) =>
    tx`select coalesce(json_agg(t), '[]') as body from (
         select * from ${tx('api')}.${tx(view)} order by period_start desc limit ${periods}) t`;
  const materializedQuery = (tenantId: string) =>
    pool`select coalesce(json_agg(t), '[]') as body from (
           select * from public.bench_rollups_materialized
           where tenant_id = ${tenantId} and period = 'month' order by period_start desc limit ${FIVE_YEARS_OF_MONTHS}) t`;

  const monthly = rollupQuery('kpi_history_monthly', FIVE_YEARS_OF_MONTHS);
  const quarterly = rollupQuery('kpi_history_quarterly', FIVE_YEARS_OF_MONTHS / 3);
  const times = await takeTurns(
    readers,
    (id) => asApi(id, monthly),
    async (id) => (await timed(() => materializedQuery(id))).ms,
    (id) => asApi(id, quarterly),
  );
  const [monthlyMs, materializedMs, quarterlyMs] = [times.first, times.second, times.after];
  await sql`drop table public.bench_rollups_materialized`;

  const result = { monthly: distribution(monthlyMs), quarterly: distribution(quarterlyMs), materializedMonthly: distribution(materializedMs) };
  return { ...result, onReadRatioP50: result.monthly.p50 / result.materializedMonthly.p50, monthsPerRead: FIVE_YEARS_OF_MONTHS };
}
