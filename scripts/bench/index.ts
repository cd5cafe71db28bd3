// npm run bench — the fill and the reads at scale, every figure a ratio to a baseline measured in
// the same run on the same data (these machines are noisy; absolute times are only context).
//
//   npm run bench [-- --tenants 100000] [--weeks 52] [--json PATH] [--quick] [--repeat 3]
//
// The database: BENCH_DATABASE_URL (a server and a database name the benchmark may drop and
// re-create), or a cluster of its own in .data/bench-pg (port 54359), started by scripts/db.sh.
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import postgres from 'postgres';
import { measureDetection } from './anomalies.js';
import { measureCleanup } from './cleanup.js';
import { measureCustomKpis } from './custom-kpis.js';
import { runCurve } from './curve.js';
import { benchDatabase, prepare, resetToGenerated } from './database.js';
import { measureFills, type FillResult } from './fills.js';
import { deepenHistory } from './generate.js';
import { distribution, sampler, takeTurns, timed } from './measure.js';
import { printReport, type Report } from './report.js';
import { measureRollupReads } from './rollup-reads.js';
import { measureSourceWrites } from './source-writes.js';
import { measureStream } from './stream.js';
import { parseCli } from '../lib/cli.js';

const { values: args } = parseCli({
  name: 'bench',
  help: `usage: npm run bench [-- --tenants 100000] [--weeks 52] [--json PATH] [--quick] [--repeat 3] [--curve]

The fill and the reads at scale, each figure a ratio to a baseline measured in the same run on the
same data, against its targets. --quick: 2,000 tenants × 8 weeks, once (what the tests run).
--curve: the fill's cost from 1,000 to --tenants tenants. --json: the report as JSON too.
The database: BENCH_DATABASE_URL (a server and a database name it may drop and re-create), or a
cluster of its own in .data/bench-pg (port 54359). It never touches the project's own database.`,
  options: {
    tenants: { type: 'string' },
    weeks: { type: 'string' },
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
    repeat: { type: 'string' },
    curve: { type: 'boolean', default: false },
  },
});
const quick = args.quick!;
const tenants = Number(args.tenants ?? (quick ? 2000 : 100_000));
const weeks = Number(args.weeks ?? (quick ? 8 : 52));
const repeat = Number(args.repeat ?? (quick ? 1 : 3));
const baselineSample = Math.min(quick ? 200 : 2000, tenants);
const readSample = Math.min(quick ? 100 : 1000, tenants);
// Five years: the rollup reads aggregate a tenant's 260 weeks into 60 months.
const READ_WEEKS = 260;
if (![tenants, weeks, repeat].every((n) => Number.isInteger(n) && n > 0)) {
  console.error('bench: --tenants, --weeks and --repeat take positive integers');
  process.exit(2);
}

async function main(): Promise<void> {
  const database = benchDatabase();
  console.error(`bench: ${tenants} tenants × ${weeks} weeks on ${database.source}${quick ? ' (quick)' : ''}`);
  const { generatedMs } = await prepare(database.url, tenants, weeks);
  console.error(generatedMs === null ? 'bench: reusing the generated data' : `bench: generated in ${(generatedMs / 1000).toFixed(1)} s`);

  const sql = postgres(database.url, { max: 1, onnotice: () => {} });
  const pool = postgres(database.url, { max: 1, onnotice: () => {}, connection: { application_name: 'kpi-history-bench' } });
  const columns = sql`tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct`;

  try {
    await resetToGenerated(sql);
    const fills = await measureFills(sql, tenants, repeat);
    const fullFill = fills.fullFill.ms;
    const floor = fills.floor.ms;
    const { unchanged, fullRerun, onePercent } = fills;
    const changedTenants = onePercent.changedTenants;

    // 4b. Five custom KPIs per tenant: defining them, deriving them, and the full fill with them
    // against the same fill without them (removed afterwards).
    const customKpis = await measureCustomKpis(sql, repeat);

    // 5a. What the change tracking costs a bulk write: 100,000 source rows (or one per tenant at
    // small scales) in one statement and in statements of 100, with and without the tracking
    // triggers, each in a transaction rolled back, the two variants taking turns.
    const sourceWrites = await measureSourceWrites(sql, tenants, repeat);

    // Autovacuum would have analyzed the history after writes this size; without fresh statistics
    // the planner takes the 98,000-row table for empty and the per-tenant numbers mean nothing.
    await sql`vacuum analyze kpi.kpi_history`;

    // 5. The per-tenant approach, on a sample: the client reads the latest rows and upserts, one
    // tenant at a time; and the single-tenant fill called once per tenant.
    const random = sampler(42);
    const allIds = (await sql<{ id: string }[]>`
      select t.id from kpi.tenants t where exists (select from kpi.avi_reports r where r.tenant_id = t.id) order by t.id`).map((r) => r.id);
    const pick = (n: number) => Array.from({ length: n }, () => allIds[Math.floor(random() * allIds.length)]!);
    const sample = pick(baselineSample);
    const clientLoop = await timed(async () => {
      for (const id of sample) {
        const [avi] = await pool`
          select week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point from kpi.avi_reports
          where tenant_id = ${id} order by week_start desc limit 1`;
        const end = pool`(${avi!.week_start}::date + 7)::timestamp at time zone 'UTC'`;
        const [vli] = await pool`
          select integrity_pct from kpi.vli_audits where tenant_id = ${id} and audited_at < ${end}
          order by audited_at desc, id desc limit 1`;
        const [clarity] = await pool`
          select metrics -> 'hrp' as hrp from kpi.clarity_reports where tenant_id = ${id} and measured_at < ${end}
          order by measured_at desc, id desc limit 1`;
        const hrp = typeof clarity?.hrp === 'number' && clarity.hrp >= 0 && clarity.hrp <= 1 ? Math.round(clarity.hrp * 10000) / 100 : null;
        await pool`
          insert into kpi.kpi_history as h (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
          values (${id}, ${avi!.week_start}, ${avi!.aiv_pct}, ${avi!.ati_pct}, ${avi!.crs_pct}, ${avi!.elasticity_usd_per_point},
                  ${vli?.integrity_pct ?? 100}, ${vli === undefined}, ${hrp})
          on conflict (tenant_id, as_of) do update set aiv_pct = excluded.aiv_pct, ati_pct = excluded.ati_pct, crs_pct = excluded.crs_pct,
            elasticity_usd_per_point = excluded.elasticity_usd_per_point, vli_integrity_pct = excluded.vli_integrity_pct,
            vli_is_fallback = excluded.vli_is_fallback, hrp_pct = excluded.hrp_pct, updated_at = now()`;
      }
    });
    const singleFillLoop = await timed(async () => {
      for (const id of sample) await pool`select kpi.fill_kpi_history(${id})`;
    });

    // 6. Backfill of every week of every tenant, against the floor for the same rows.
    await sql`truncate kpi.kpi_history, kpi.custom_kpi_weeks, kpi.kpi_anomalies, kpi.alerts`;
    await sql`checkpoint`;
    const backfill = await timed(async () => (await sql<[{ r: FillResult }]>`select kpi.backfill_kpi_history() as r`)[0].r);
    await sql`truncate public.bench_floor`;
    await sql`checkpoint`;
    const backfillFloor = await timed(() => sql`insert into public.bench_floor (${columns}) select ${columns} from kpi.kpi_history`);

    // 6b. Anomaly detection's cost to the daily fill, on the full history the backfill left.
    await sql`vacuum analyze kpi.kpi_history, kpi.kpi_anomalies`;
    const anomalies = await measureDetection(sql, repeat);

    // 7. Reads through the API path (role, claims, x-tenant, row-level security), as PostgREST
    // runs them, and the same query as the owner without row-level security.
    const readers = pick(readSample);
    await deepenHistory(sql, [...new Set(readers)], READ_WEEKS);
    const asApi = async (tenantId: string, query: (tx: postgres.TransactionSql) => Promise<unknown>) =>
      pool.begin('read only', async (tx) => {
        await tx`
          select set_config('search_path', '"api", "public"', true), set_config('role', 'authenticated', true),
                 set_config('request.jwt.claims', ${JSON.stringify({ role: 'authenticated', sub: 'bench', tenant_ids: [tenantId] })}, true),
                 set_config('request.method', 'GET', true), set_config('request.path', '/kpi_history', true),
                 set_config('request.headers', ${JSON.stringify({ 'x-tenant': tenantId })}, true)`;
        return (await timed(() => query(tx))).ms;
      });
    const historyQuery = (tx: postgres.TransactionSql) =>
      tx`select coalesce(json_agg(t), '[]') as body from (select * from api.kpi_history order by as_of desc limit 52) t`;
    const csvQuery = (tx: postgres.TransactionSql) => tx`select api.kpi_history_csv(weeks => '52') as body`;
    const ownerQuery = (tenantId: string) =>
      pool`select coalesce(json_agg(t), '[]') as body from (
             select as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct, updated_at
             from kpi.kpi_history where tenant_id = ${tenantId} order by as_of desc limit 52) t`;
    const reads = await takeTurns(
      readers,
      (id) => asApi(id, historyQuery),
      async (id) => (await timed(() => ownerQuery(id))).ms,
      (id) => asApi(id, csvQuery),
    );
    const [historyMs, ownerMs, csvMs] = [reads.first, reads.second, reads.after];

    // 7b. Monthly and quarterly rollups of the same tenants' five years.
    const rollups = await measureRollupReads(sql, pool, readers, asApi);

    // 7c. The change stream: 1,000 clients across 100 tenants (quick: 100 across 10).
    const stream = await measureStream(pool, database.url, quick ? 100 : 1000, quick ? 10 : 100, quick ? 20 : 200);

    // 8. Where it ran.
    const [{ version }] = await sql<[{ version: string }]>`select version()`;
    const settings = await sql<{ name: string; setting: string; unit: string | null }[]>`
      select name, setting, unit from pg_settings
      where name in ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'effective_cache_size', 'max_wal_size',
                     'fsync', 'synchronous_commit', 'max_parallel_workers_per_gather', 'jit')
      order by name`;

    // 9. The source cleanup, on a copy of the data (it deletes), every tenant on the 90-day plan.
    const cleanup = await measureCleanup(database.url, [sql, pool]);

    const perTenantSetUs = (fullFill * 1000) / tenants;
    const history = distribution(historyMs);
    const owner = distribution(ownerMs);
    const report: Report = {
      machine: { cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), postgres: version, settings },
      scale: { tenants, weeks, repeat, quick, baselineSample, readSample, readWeeks: READ_WEEKS },
      generationMs: generatedMs,
      fullFill: { ...fills.fullFill, usPerTenant: perTenantSetUs, ratio: fullFill / floor },
      floor: { ...fills.floor, ratio: fullFill / floor },
      unchanged: {
        ms: unchanged.ms,
        rowsWritten: unchanged.result.rows_written,
        ratio: unchanged.ms / fullFill,
        floorRatio: unchanged.ms / floor,
        tenantsConsidered: unchanged.result.tenants_considered ?? null,
      },
      fullRerun: { ms: fullRerun.ms, rowsWritten: fullRerun.result.rows_written, corrected: fullRerun.result.corrected ?? null, ratio: fullRerun.ms / fullFill },
      sourceWrites,
      onePercent: { ms: onePercent.ms, changedTenants, rowsWritten: onePercent.result.rows_written, ratio: onePercent.ms / fullFill, floorRatio: onePercent.ms / floor },
      perTenant: {
        sample: baselineSample,
        clientLoopUsPerTenant: (clientLoop.ms * 1000) / baselineSample,
        singleFillUsPerTenant: (singleFillLoop.ms * 1000) / baselineSample,
        setBasedUsPerTenant: perTenantSetUs,
        clientLoopRatio: (clientLoop.ms * 1000) / baselineSample / perTenantSetUs,
        singleFillRatio: (singleFillLoop.ms * 1000) / baselineSample / perTenantSetUs,
        originalDesignSpeedup: 100_000 / perTenantSetUs,
      },
      backfill: { ms: backfill.ms, rowsWritten: backfill.result.rows_written, floorMs: backfillFloor.ms, ratio: backfill.ms / backfillFloor.ms },
      anomalies,
      customKpis,
      stream,
      reads: { history, csv: distribution(csvMs), ownerNoRls: owner, rlsRatioP50: history.p50 / owner.p50, rollups },
      cleanup,
    };
    printReport(report);
    if (args.json) {
      writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`\nwrote ${args.json}`);
    }
  } finally {
    // Already ended when the cleanup was measured; ending twice is harmless.
    await sql.end();
    await pool.end();
  }
}

if (args.curve) await runCurve(benchDatabase());
else await main();
