// The fills at one scale: the full fill (cold) against its floor, the daily incremental run when
// nothing changed, the weekly full run when nothing changed, and the incremental run after 1 % of
// the tenants got a new week. Used by `npm run bench` and by its scaling curve.
import type postgres from 'postgres';
import { addNextWeek } from './generate.js';
import { median, timed } from './measure.js';

export type FillResult = {
  rows_written: number;
  ok: number;
  total: number;
  status: string;
  weeks?: number;
  tenants_considered?: number;
  corrected?: number;
};

export interface Fills {
  fullFill: { ms: number; runsMs: number[]; rowsWritten: number };
  floor: { ms: number; runsMs: number[] };
  unchanged: { ms: number; result: FillResult };
  fullRerun: { ms: number; result: FillResult };
  onePercent: { ms: number; result: FillResult; changedTenants: number };
}

export async function measureFills(sql: postgres.Sql, tenants: number, repeat: number): Promise<Fills> {
  // The daily fill is incremental (the change records); the full one re-derives every tenant.
  const fillAll = async () => (await sql<[{ r: FillResult }]>`select kpi.fill_all_kpi_history() as r`)[0].r;
  const fillFull = async () => (await sql<[{ r: FillResult }]>`select kpi.fill_all_kpi_history(full => true) as r`)[0].r;
  const columns = sql`tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct`;

  // The floor: the same rows written into an empty copy of kpi_history (same indexes, checks
  // and foreign key), with nothing computed.
  await sql`drop table if exists public.bench_floor`;
  await sql`create table public.bench_floor (like kpi.kpi_history including all)`;
  await sql`alter table public.bench_floor add foreign key (tenant_id) references kpi.tenants (id)`;

  // 1–2. Full fill (cold: empty history) against the floor, interleaved, medians of `repeat`.
  const fillMs: number[] = [];
  const floorMs: number[] = [];
  let fillRows = 0;
  for (let i = 0; i < repeat; i++) {
    await sql`truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts`;
    await sql`checkpoint`;
    const fill = await timed(fillFull);
    fillMs.push(fill.ms);
    fillRows = fill.result.rows_written;
    await sql`truncate public.bench_floor`;
    await sql`checkpoint`;
    floorMs.push((await timed(() => sql`insert into public.bench_floor (${columns}) select ${columns} from kpi.kpi_history`)).ms);
  }
  const fullFill = median(fillMs);
  const floor = median(floorMs);

  // 3. Nothing changed: the daily (incremental) run, and the weekly full one.
  const unchanged = await timed(fillAll);
  const fullRerun = await timed(fillFull);
  // 4. 1 % of the tenants got a new week.
  const changedTenants = await addNextWeek(sql, tenants, Math.max(1, Math.round(tenants / 100)));
  const onePercent = await timed(fillAll);

  return {
    fullFill: { ms: fullFill, runsMs: fillMs, rowsWritten: fillRows },
    floor: { ms: floor, runsMs: floorMs },
    unchanged,
    fullRerun,
    onePercent: { ...onePercent, changedTenants },
  };
}
