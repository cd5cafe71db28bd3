// What anomaly detection costs the daily fill: every tenant gets a new week (a Monday's run, the
// heaviest day; each new report repeats the tenant's latest one, so anomalies stay as rare as
// they are in practice) and the incremental fill writes and scores it against the previous 12 weeks —
// with the history triggers, and with them disabled — on the same data: each variant runs in a
// transaction rolled back afterwards, the two taking turns.
import type postgres from 'postgres';
import { takeTurnsRolledBack, timed } from './measure.js';

export interface DetectionCost {
  rowsWritten: number;
  anomalies: number;
  withMs: number;
  withoutMs: number;
  /** with / without: the target is ≤ 1.3. */
  ratio: number;
}

export async function measureDetection(sql: postgres.Sql, repeat: number): Promise<DetectionCost> {
  const turns = await takeTurnsRolledBack(sql, repeat, async (tx, detect) => {
    if (!detect) {
      await tx`alter table kpi.kpi_history disable trigger kpi_history_scored_insert, disable trigger kpi_history_scored_update`;
    }
    // A new week for every tenant with reports, like its latest one: an ordinary Monday, few
    // anomalies (the scoring is the cost measured, not a flood of alerts).
    await tx`
      insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
      select distinct on (r.tenant_id) r.tenant_id, r.week_start + 7, r.aiv_pct, r.ati_pct, r.crs_pct, r.elasticity_usd_per_point
      from kpi.avi_reports r
      order by r.tenant_id, r.week_start desc`;
    return timed(async () => (await tx<[{ r: { rows_written: number; anomalies?: number } }]>`select kpi.fill_all_kpi_history() as r`)[0].r);
  });
  return {
    rowsWritten: turns.withResult.rows_written,
    anomalies: turns.withResult.anomalies ?? 0,
    withMs: turns.withMs,
    withoutMs: turns.withoutMs,
    ratio: turns.withMs / turns.withoutMs,
  };
}
