// What custom KPIs cost the fill: every tenant defines five (mixed sources and aggregates, one
// combine), the first run derives them over every week the history has, and then the full fill
// (cold: an empty history) runs with them and without them — each variant in a transaction rolled
// back afterwards, the two taking turns. The definitions are then removed, the emptied table
// vacuumed and analyzed (statistics that say "empty" once planned the per-row checks as scans of a
// table growing within the statement), and the same definitions written again: the define step
// twice on the same data, which must cost the same. They are removed at the end, so the later
// measurements run on the data they always ran on.
import type postgres from 'postgres';
import { takeTurnsRolledBack, timed } from './measure.js';

export interface CustomKpiCost {
  definitions: number;
  defineMs: number;
  /** The same definitions again, after they were removed and the empty table vacuumed and analyzed. */
  defineAgainMs: number;
  /** The first run after defining: every definition derived over the history's weeks. */
  derive: { ms: number; valuesWritten: number };
  /** The cold full fill: values computed and written with the KPIs (one row a week holds them), and the medians of both variants. */
  valuesWritten: number;
  withMs: number;
  withoutMs: number;
  /** with / without: the target is ≤ 1.5. */
  ratio: number;
}

export async function measureCustomKpis(sql: postgres.Sql, repeat: number): Promise<CustomKpiCost> {
  const defineAll = () => timed(
    () => sql`
      insert into kpi.custom_kpis (tenant_id, key, label, source, path, field, aggregate, combine, left_kpi, right_kpi)
      select t.id, d.key, d.label, d.source, d.path::text[], d.field, d.aggregate, d.combine, d.left_kpi, d.right_kpi
      from kpi.tenants t
      cross join (values
        ('worst_hrp', 'Worst HRP of the week', 'clarity', '{hrp}', null, 'max', null, null, null),
        ('clarity_reports', 'Clarity reports', 'clarity', '{tokens_sampled}', null, 'count', null, null, null),
        ('integrity_avg', 'Mean audited integrity', 'vli', null, 'integrity_pct', 'avg', null, null, null),
        ('aiv_latest', 'AIV', 'avi', null, 'aiv_pct', 'latest', null, null, null),
        ('aiv_minus_ati', 'AIV − ATI', null, null, null, null, 'difference', 'aiv_pct', 'ati_pct')
      ) d (key, label, source, path, field, aggregate, combine, left_kpi, right_kpi)
      order by t.id, d.key`,
  );
  const define = await defineAll();
  const [{ definitions }] = await sql<[{ definitions: number }]>`select count(*)::int as definitions from kpi.custom_kpis`;
  const derive = await timed(async () => (await sql<[{ r: { custom_values?: number } }]>`select kpi.fill_all_kpi_history() as r`)[0].r);

  const turns = await takeTurnsRolledBack(sql, repeat, async (tx, withCustom) => {
    await tx`truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts`;
    if (!withCustom) {
      // Inactive without the triggers (their values are gone with the truncate anyway).
      await tx`alter table kpi.custom_kpis disable trigger user`;
      await tx`update kpi.custom_kpis set active = false`;
    }
    return timed(async () => (await tx<[{ r: { custom_values?: number } }]>`select kpi.fill_all_kpi_history(full => true) as r`)[0].r);
  });
  await sql`truncate kpi.custom_kpis, kpi.custom_kpi_weeks`;
  await sql`vacuum analyze kpi.custom_kpis`;
  const defineAgain = await defineAll();
  await sql`truncate kpi.custom_kpis, kpi.custom_kpi_weeks`;
  return {
    definitions,
    defineMs: define.ms,
    defineAgainMs: defineAgain.ms,
    derive: { ms: derive.ms, valuesWritten: derive.result.custom_values ?? 0 },
    valuesWritten: turns.withResult.custom_values ?? 0,
    withMs: turns.withMs,
    withoutMs: turns.withoutMs,
    ratio: turns.withMs / turns.withoutMs,
  };
}
