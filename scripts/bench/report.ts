// Prints the benchmark's figures as a table, each target marked met or not met.
import type { Distribution } from './measure.js';
import type { DetectionCost } from './anomalies.js';
import type { CustomKpiCost } from './custom-kpis.js';
import type { RollupReads } from './rollup-reads.js';
import type { StreamLoad } from './stream.js';

export interface Report {
  machine: { cores: number; memoryGiB: number; postgres: string; settings: { name: string; setting: string; unit: string | null }[] };
  scale: { tenants: number; weeks: number; repeat: number; quick: boolean; baselineSample: number; readSample: number; readWeeks: number };
  generationMs: number | null;
  fullFill: { ms: number; runsMs: number[]; rowsWritten: number; usPerTenant: number; ratio: number };
  floor: { ms: number; runsMs: number[]; ratio: number };
  /** The daily, incremental run when nothing changed. */
  unchanged: { ms: number; rowsWritten: number; ratio: number; floorRatio: number; tenantsConsidered: number | null };
  /** The weekly full run (reconciliation) when nothing changed: `corrected` should be 0. */
  fullRerun: { ms: number; rowsWritten: number; corrected: number | null; ratio: number };
  /** A bulk source insert with the change-tracking triggers / without. */
  sourceWrites: {
    rows: number;
    oneStatement: { withMs: number; withoutMs: number; ratio: number };
    statementsOf100: { withMs: number; withoutMs: number; ratio: number };
    triggerRatio: number;
  };
  onePercent: { ms: number; changedTenants: number; rowsWritten: number; ratio: number; floorRatio: number };
  perTenant: {
    sample: number;
    clientLoopUsPerTenant: number;
    singleFillUsPerTenant: number;
    setBasedUsPerTenant: number;
    clientLoopRatio: number;
    singleFillRatio: number;
    originalDesignSpeedup: number;
  };
  backfill: { ms: number; rowsWritten: number; floorMs: number; ratio: number };
  /** The daily fill of a new week for every tenant, with anomaly detection and without. */
  anomalies: DetectionCost;
  customKpis: CustomKpiCost;
  /** Commit-to-event latency of the change stream, and the worker's memory. */
  stream: StreamLoad;
  reads: { history: Distribution; csv: Distribution; ownerNoRls: Distribution; rlsRatioP50: number; rollups: RollupReads };
  /** The source cleanup on a copy of the data with every tenant on the 90-day plan. */
  cleanup: { ms: number; deleted: Record<string, number>; batches: number; batchSize: number; longestBatchMs: number; meanBatchMs: number };
}

const ms = (value: number) => (value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(value < 10 ? 3 : 1)} ms`);
const x = (value: number) => `${value.toFixed(2)}×`;
const target = (met: boolean, text: string) => `${met ? 'met' : 'NOT MET'} (${text})`;

export function printReport(r: Report): void {
  const rows: [string, string, string][] = [
    ['full fill, all tenants (cold)', `${ms(r.fullFill.ms)}, ${r.fullFill.rowsWritten} rows, ${r.fullFill.usPerTenant.toFixed(1)} µs/tenant`, ''],
    ['floor: bare INSERT … SELECT of the same rows', ms(r.floor.ms), ''],
    ['  full fill / floor', x(r.floor.ratio), target(r.floor.ratio <= 3, '≤ 3×; 1.5× the moonshot')],
    ['daily (incremental) run, nothing changed', `${ms(r.unchanged.ms)}, ${r.unchanged.rowsWritten} rows written`, target(r.unchanged.rowsWritten === 0, '0 rows')],
    ['  / full fill', x(r.unchanged.ratio), target(r.unchanged.ratio <= 0.02, '≤ 0.02')],
    ['  / floor (a slower full fill cannot flatter it)', x(r.unchanged.floorRatio), ''],
    [
      'weekly full run (reconciliation), nothing changed',
      `${ms(r.fullRerun.ms)}, ${r.fullRerun.corrected ?? '?'} rows corrected`,
      target(r.fullRerun.corrected === 0, '0 corrected'),
    ],
    ['  / full fill', x(r.fullRerun.ratio), ''],
    [
      `re-run, ${r.onePercent.changedTenants} tenants (1 %) with a new week`,
      `${ms(r.onePercent.ms)}, ${r.onePercent.rowsWritten} rows written`,
      target(r.onePercent.rowsWritten === r.onePercent.changedTenants, `${r.onePercent.changedTenants} rows`),
    ],
    ['  / full fill', x(r.onePercent.ratio), target(r.onePercent.ratio <= 0.05, '≤ 0.05')],
    ['  / floor', x(r.onePercent.floorRatio), ''],
    [
      `bulk insert of ${r.sourceWrites.rows} AVI reports, one statement`,
      `${ms(r.sourceWrites.oneStatement.withMs)} tracked, ${ms(r.sourceWrites.oneStatement.withoutMs)} without`,
      target(r.sourceWrites.triggerRatio <= 1.15, `${x(r.sourceWrites.triggerRatio)} ≤ 1.15×`),
    ],
    [
      `  the same in statements of 100`,
      `${ms(r.sourceWrites.statementsOf100.withMs)} tracked, ${ms(r.sourceWrites.statementsOf100.withoutMs)} without`,
      x(r.sourceWrites.statementsOf100.ratio),
    ],
    [`per-tenant client loop (${r.perTenant.sample} tenants)`, `${r.perTenant.clientLoopUsPerTenant.toFixed(0)} µs/tenant`, `${x(r.perTenant.clientLoopRatio)} the set-based fill`],
    [`single-tenant fill per tenant (${r.perTenant.sample})`, `${r.perTenant.singleFillUsPerTenant.toFixed(0)} µs/tenant`, `${x(r.perTenant.singleFillRatio)} the set-based fill`],
    [
      'set-based vs the original 100 ms/tenant',
      `${r.perTenant.originalDesignSpeedup.toFixed(0)}× faster`,
      target(r.perTenant.originalDesignSpeedup >= 1000, '≥ 1000×'),
    ],
    ['backfill, every week of every tenant', `${ms(r.backfill.ms)}, ${r.backfill.rowsWritten} rows`, ''],
    ['  floor for the same rows', ms(r.backfill.floorMs), ''],
    ['  backfill / floor', x(r.backfill.ratio), target(r.backfill.ratio <= 3, '≤ 3×')],
    [
      `anomalies: daily fill, a new week for all ${r.scale.tenants} tenants`,
      `${ms(r.anomalies.withMs)} with detection, ${ms(r.anomalies.withoutMs)} without; ${r.anomalies.rowsWritten} rows, ${r.anomalies.anomalies} anomalies`,
      target(r.anomalies.ratio <= 1.3, `${x(r.anomalies.ratio)} ≤ 1.3×`),
    ],
    [
      `custom KPIs: defining ${r.customKpis.definitions} (5 per tenant)`,
      `${ms(r.customKpis.defineMs)}; the first run derives them: ${ms(r.customKpis.derive.ms)}, ${r.customKpis.derive.valuesWritten} values`,
      '',
    ],
    [
      '  defined again (removed, empty table vacuumed and analyzed)',
      `${ms(r.customKpis.defineAgainMs)}`,
      target(r.customKpis.defineAgainMs / r.customKpis.defineMs <= 2, `${x(r.customKpis.defineAgainMs / r.customKpis.defineMs)} the first ≤ 2×`),
    ],
    [
      '  full fill with them / without',
      `${ms(r.customKpis.withMs)} with (${r.customKpis.valuesWritten} values), ${ms(r.customKpis.withoutMs)} without`,
      target(r.customKpis.ratio <= 1.5, `${x(r.customKpis.ratio)} ≤ 1.5×`),
    ],
    [
      `history via the API path (${r.reads.history.samples} tenants, RLS)`,
      `p50 ${ms(r.reads.history.p50)}  p95 ${ms(r.reads.history.p95)}  p99 ${ms(r.reads.history.p99)}`,
      target(r.reads.history.p99 <= 2, 'p99 ≤ 2 ms'),
    ],
    ['same query as owner, no RLS', `p50 ${ms(r.reads.ownerNoRls.p50)}  p95 ${ms(r.reads.ownerNoRls.p95)}  p99 ${ms(r.reads.ownerNoRls.p99)}`, ''],
    ['  RLS / no RLS (p50)', x(r.reads.rlsRatioP50), target(r.reads.rlsRatioP50 <= 1.2, '≤ 1.2×')],
    ['CSV export via the API path', `p50 ${ms(r.reads.csv.p50)}  p95 ${ms(r.reads.csv.p95)}  p99 ${ms(r.reads.csv.p99)}`, ''],
    [
      `reads.monthly: ${r.reads.rollups.monthsPerRead} months via the API path`,
      `p50 ${ms(r.reads.rollups.monthly.p50)}  p95 ${ms(r.reads.rollups.monthly.p95)}  p99 ${ms(r.reads.rollups.monthly.p99)}`,
      target(r.reads.rollups.monthly.p99 <= 5, 'p99 ≤ 5 ms'),
    ],
    [
      `reads.quarterly: ${r.reads.rollups.monthsPerRead / 3} quarters via the API path`,
      `p50 ${ms(r.reads.rollups.quarterly.p50)}  p95 ${ms(r.reads.rollups.quarterly.p95)}  p99 ${ms(r.reads.rollups.quarterly.p99)}`,
      target(r.reads.rollups.quarterly.p99 <= 5, 'p99 ≤ 5 ms'),
    ],
    [
      '  the same months kept in a table (not chosen)',
      `p50 ${ms(r.reads.rollups.materializedMonthly.p50)}  p95 ${ms(r.reads.rollups.materializedMonthly.p95)}  p99 ${ms(r.reads.rollups.materializedMonthly.p99)}`,
      `on read / table (p50) ${x(r.reads.rollups.onReadRatioP50)}`,
    ],
    [
      `stream: commit → event, ${r.stream.clients} clients, ${r.stream.tenants} tenants`,
      `p50 ${ms(r.stream.latency.p50)}  p95 ${ms(r.stream.latency.p95)}  p99 ${ms(r.stream.latency.p99)} (${r.stream.latency.samples} events)`,
      '',
    ],
    [
      '  worker memory (resident)',
      `${r.stream.workerRssMiB.idle.toFixed(0)} MiB idle, ${r.stream.workerRssMiB.withClients.toFixed(0)} MiB with the clients`,
      '',
    ],
    [
      'source cleanup, every tenant on 90 days',
      `${ms(r.cleanup.ms)}, ${Object.values(r.cleanup.deleted).reduce((a, b) => a + b, 0)} rows in ${r.cleanup.batches} batches of ≤ ${r.cleanup.batchSize}`,
      '',
    ],
    ['  longest batch (locks held)', `${ms(r.cleanup.longestBatchMs)}, mean ${ms(r.cleanup.meanBatchMs)}`, target(r.cleanup.longestBatchMs <= 100, '≤ 100 ms')],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const valueWidth = Math.max(...rows.map(([, value]) => value.length));
  console.log(`\nkpi-history benchmark — ${r.scale.tenants} tenants × ${r.scale.weeks} weeks${r.scale.quick ? ' (quick)' : ''}`);
  console.log(`machine: ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB; ${r.machine.postgres.split(' on ')[0]}`);
  console.log(`settings: ${r.machine.settings.map((s) => `${s.name}=${s.setting}${s.unit ?? ''}`).join(', ')}`);
  if (r.generationMs !== null) console.log(`data generation (not compared): ${ms(r.generationMs)}`);
  console.log(`medians of ${r.scale.repeat} run(s) for the full fill and its floor; read times are the main query's round trip on loopback\n`);
  for (const [label, value, verdict] of rows) console.log(`${label.padEnd(width)}  ${value.padEnd(valueWidth)}  ${verdict}`);
}
