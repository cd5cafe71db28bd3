// `npm run bench -- --quick` keeps working: it runs end to end on a small data set in a database
// of its own on the test server. Its timings are not asserted (speed is judged by the full
// benchmark's ratios, never by a test); the row counts it reports are facts and are.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { connect } from '../helpers/database.js';
import { databaseUrl, projectRoot } from '../helpers/dbmate.js';

const info = inject('testDatabase');
const name = `kpi_bench_quick_${randomBytes(4).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'kpi-bench-'));

afterAll(async () => {
  const admin = connect(info.serverUrl, { max: 1 });
  await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
});

it('npm run bench -- --quick runs every measurement and writes its JSON', () => {
  const json = join(dir, 'bench.json');
  const result = spawnSync(`${projectRoot}node_modules/.bin/tsx`, ['scripts/bench/index.ts', '--quick', '--json', json], {
    cwd: projectRoot,
    encoding: 'utf8',
    env: { ...process.env, BENCH_DATABASE_URL: databaseUrl(info.serverUrl, name) },
  });
  expect(result.status, result.stderr).toBe(0);
  expect(result.stdout).toContain('full fill / floor');
  const report = JSON.parse(readFileSync(json, 'utf8'));
  expect(Object.keys(report).sort()).toEqual(
    ['anomalies', 'backfill', 'cleanup', 'customKpis', 'floor', 'fullFill', 'fullRerun', 'generationMs', 'machine', 'onePercent', 'perTenant', 'reads', 'scale', 'sourceWrites', 'stream', 'unchanged'].sort(),
  );
  expect(report.scale).toMatchObject({ tenants: 2000, weeks: 8, quick: true });
  expect(report.fullFill.rowsWritten).toBe(1960); // every tenant but the 2 % without reports
  expect(report.unchanged.rowsWritten).toBe(0);
  expect(report.unchanged.tenantsConsidered).toBe(0); // the incremental run read no tenant
  // The Monday measured for detection: a new week for every tenant with reports, scored.
  expect(report.anomalies).toMatchObject({ rowsWritten: 1960, withMs: expect.any(Number), withoutMs: expect.any(Number) });
  // Five custom KPIs for each of the 2,000 tenants: derived over the history there was, then
  // computed with the latest week of each of the 1,960 tenants with reports.
  expect(report.customKpis).toMatchObject({ definitions: 10_000, valuesWritten: 1960 * 5 });
  expect(report.customKpis.derive.valuesWritten).toBe((1960 + report.onePercent.changedTenants) * 5);
  expect(report.customKpis.ratio).toBeGreaterThan(0);
  expect(report.reads.rollups.monthly.samples).toBe(100);
  // Every one of the 20 writes reached all 10 clients of its tenant.
  expect(report.stream).toMatchObject({ clients: 100, tenants: 10, writes: 20, latency: { samples: 200 } });
  expect(report.fullRerun.corrected).toBe(0);
  expect(report.sourceWrites.rows).toBe(8000);
  expect(report.sourceWrites.triggerRatio).toBeGreaterThan(0);
  expect(report.onePercent.changedTenants).toBeGreaterThan(0);
  expect(report.onePercent.rowsWritten).toBe(report.onePercent.changedTenants);
  // Each daily run also as a ratio to the floor, so that a slower full fill cannot flatter it.
  expect(report.unchanged.floorRatio).toBeCloseTo(report.unchanged.ms / report.floor.ms, 6);
  expect(report.onePercent.floorRatio).toBeCloseTo(report.onePercent.ms / report.floor.ms, 6);
  expect(report.backfill.rowsWritten).toBe(1960 * 8 + report.onePercent.changedTenants);
  expect(report.reads.history.samples).toBe(100);
  // One batch at least per source table, however little expired.
  expect(report.cleanup.batches).toBeGreaterThanOrEqual(3);
  expect(Object.keys(report.cleanup.deleted).sort()).toEqual(['avi_reports', 'clarity_reports', 'vli_audits']);
  for (const figure of [report.fullFill.ms, report.floor.ms, report.reads.history.p99, report.perTenant.clientLoopUsPerTenant]) {
    expect(Number.isFinite(figure) && figure > 0).toBe(true);
  }
}, 300_000);
