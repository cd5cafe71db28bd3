// What the change tracking costs a bulk write of source reports: the same inserts with the
// tracking triggers and without, in one statement and in statements of 100 rows.
import type postgres from 'postgres';
import { LAST_WEEK } from './generate.js';
import { median, timed } from './measure.js';
import type { Report } from './report.js';

/**
 * A bulk write of `rows` new AVI reports (the week after the generated ones, one per tenant,
 * wrapping around) with the change-tracking triggers and without, in one statement and in
 * statements of 100 rows. Each variant runs in a transaction that is rolled back.
 */
export async function measureSourceWrites(sql: postgres.Sql, tenants: number, repeat: number): Promise<Report['sourceWrites']> {
  const rows = Math.min(100_000, tenants * 4);
  const insert = (tx: postgres.TransactionSql, from: number, count: number) => tx`
    insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
    select md5('bench-' || (1 + (i - 1) % ${tenants}::int))::uuid, ${LAST_WEEK}::date + 7 * (2 + (i - 1) / ${tenants}::int), 40, 40, 40, 1000
    from generate_series(${from}::int, ${from + count - 1}::int) i
    where (1 + (i - 1) % ${tenants}::int) % 50 <> 0`;
  const variant = async (tracking: boolean, statementRows: number) => {
    let ms = 0;
    await sql
      .begin(async (tx) => {
        if (!tracking) {
          await tx`alter table kpi.avi_reports disable trigger avi_reports_track_insert`;
        }
        ms = (
          await timed(async () => {
            for (let from = 1; from <= rows; from += statementRows) await insert(tx, from, Math.min(statementRows, rows - from + 1));
          })
        ).ms;
        throw new Error('rollback');
      })
      .catch((error: Error) => {
        if (error.message !== 'rollback') throw error;
      });
    return ms;
  };
  const measure = async (statementRows: number) => {
    const withMs: number[] = [];
    const withoutMs: number[] = [];
    await variant(true, statementRows); // warm-up
    for (let i = 0; i < repeat; i++) {
      if (i % 2 === 0) {
        withMs.push(await variant(true, statementRows));
        withoutMs.push(await variant(false, statementRows));
      } else {
        withoutMs.push(await variant(false, statementRows));
        withMs.push(await variant(true, statementRows));
      }
    }
    return { withMs: median(withMs), withoutMs: median(withoutMs), ratio: median(withMs) / median(withoutMs) };
  };
  const oneStatement = await measure(rows);
  const statementsOf100 = await measure(100);
  return { rows, oneStatement, statementsOf100, triggerRatio: oneStatement.ratio };
}

