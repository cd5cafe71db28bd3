// npm run bench -- --curve: the fills at 10k, 30k, 100k and 300k tenants (8 weeks each), drawn
// log-log into docs/bench-curve.svg — the full fill and its floor grow with the tenants; the
// incremental runs with what changed.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { logLogChart } from './chart.js';
import { prepare, resetToGenerated } from './database.js';
import { measureFills } from './fills.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const CURVE_TENANTS = [10_000, 30_000, 100_000, 300_000];
const CURVE_WEEKS = 8;

export interface CurvePoint {
  tenants: number;
  fullFillMs: number;
  floorMs: number;
  unchangedMs: number;
  onePercentMs: number;
  onePercentRows: number;
}

export async function runCurve(database: { url: string; source: string }, scales = CURVE_TENANTS): Promise<CurvePoint[]> {
  const points: CurvePoint[] = [];
  for (const tenants of scales) {
    // A database per scale beside the main one, so each keeps its generated data.
    const url = new URL(database.url);
    url.pathname = `${url.pathname}_curve_${tenants}`;
    console.error(`bench --curve: ${tenants} tenants × ${CURVE_WEEKS} weeks`);
    await prepare(url.toString(), tenants, CURVE_WEEKS);
    const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
    try {
      await resetToGenerated(sql);
      const fills = await measureFills(sql, tenants, 1);
      points.push({
        tenants,
        fullFillMs: fills.fullFill.ms,
        floorMs: fills.floor.ms,
        unchangedMs: fills.unchanged.ms,
        onePercentMs: fills.onePercent.ms,
        onePercentRows: fills.onePercent.result.rows_written,
      });
    } finally {
      await sql.end();
    }
  }
  const svg = drawCurve(points);
  mkdirSync(`${root}docs`, { recursive: true });
  writeFileSync(`${root}docs/bench-curve.svg`, svg);
  mkdirSync(`${root}.data`, { recursive: true });
  writeFileSync(`${root}.data/bench-curve.json`, `${JSON.stringify(points, null, 2)}\n`);
  console.log('tenants     full fill    floor        1 % changed  nothing changed');
  for (const p of points) {
    console.log(
      `${String(p.tenants).padEnd(11)} ${`${p.fullFillMs.toFixed(0)} ms`.padEnd(12)} ${`${p.floorMs.toFixed(0)} ms`.padEnd(12)} ${`${p.onePercentMs.toFixed(1)} ms`.padEnd(12)} ${p.unchangedMs.toFixed(1)} ms`,
    );
  }
  console.log('\nwrote docs/bench-curve.svg and .data/bench-curve.json');
  return points;
}

/** The chart of the curve, log-log. */
export function drawCurve(points: CurvePoint[]): string {
  return logLogChart(
    [
      { name: 'full fill', color: '#c0392b', points: points.map((p) => ({ x: p.tenants, y: p.fullFillMs })) },
      { name: 'floor (bare insert)', color: '#7f8c8d', dashed: true, points: points.map((p) => ({ x: p.tenants, y: p.floorMs })) },
      { name: 'daily, 1 % changed', color: '#2980b9', points: points.map((p) => ({ x: p.tenants, y: p.onePercentMs })) },
      // What remains when nothing changed is listing the tenants without any report: 2 % here.
      { name: 'daily, nothing changed *', color: '#27ae60', points: points.map((p) => ({ x: p.tenants, y: p.unchangedMs })) },
    ],
    {
      title: `kpi-history fill time by tenant count (${CURVE_WEEKS} weeks each, log-log)`,
      xLabel: 'tenants   (* what remains: listing the 2 % of tenants without reports as NO_AVI)',
      yLabel: 'time',
    },
  );
}
