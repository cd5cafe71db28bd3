// The recipes of docs/operations.md are run as written: every SQL block of the page, in order,
// with psql (as an operator would paste them), on the demo data. Blocks marked `sql pg_cron` run
// in the pg_cron database inside a transaction that is rolled back, so no other test sees a job
// paused; without pg_cron they are reported as not run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cronDatabase, useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';

const db = useTestDatabase();
const cron = cronDatabase();
const dir = mkdtempSync(join(tmpdir(), 'kpi-recipes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Block {
  heading: string;
  cron: boolean;
  sql: string;
}

/** The ```sql blocks of a page, each with the heading it is under. */
function sqlBlocks(file: string): Block[] {
  const blocks: Block[] = [];
  let heading = '';
  const lines = readFileSync(`${projectRoot}${file}`, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#{2,3} /.test(line)) heading = line.replace(/^#+ /, '');
    const fence = /^```sql( pg_cron)?$/.exec(line);
    if (!fence) continue;
    const body: string[] = [];
    while (lines[++i] !== '```') body.push(lines[i]!);
    blocks.push({ heading, cron: Boolean(fence[1]), sql: body.join('\n') });
  }
  return blocks;
}

function psql(url: string, sql: string, name: string) {
  const file = join(dir, `${name}.sql`);
  writeFileSync(file, `${sql}\n`);
  return spawnSync('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', file], { encoding: 'utf8' });
}

const blocks = sqlBlocks('docs/operations.md');
if (!cron.url) console.warn(`[kpi-history tests] docs/operations.md pg_cron recipes — not run: ${cron.reason}`);

beforeAll(() => {
  const seeded = spawnSync('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', 'db/seed/demo.sql', '-c', 'select kpi.backfill_kpi_history()'], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  expect(seeded.status, seeded.stderr).toBe(0);
});

describe('docs/operations.md, run as written', () => {
  it('has the recipes the operators asked for', () => {
    const headings = new Set(blocks.map((b) => b.heading));
    for (const task of [
      'Add a tenant, and backfill its past weeks',
      'Re-run a failed day, or one week',
      "Why is a week's VLI the 100 % fallback?",
      'See what a plan change would delete, before making it',
      'Change an anomaly rule',
      'Define a custom KPI from psql',
      'Pause and resume the schedule',
      'Delete a tenant, and purge what stays behind',
      'Health',
    ]) {
      expect(headings, task).toContain(task);
    }
  });

  it('every SQL block succeeds, in order, on the demo data; and does what its recipe says', { timeout: 120_000 }, async () => {
    let ran = 0;
    for (const [n, block] of blocks.entries()) {
      if (block.cron) continue;
      const result = psql(db.url, block.sql, `block-${n}`);
      expect(result.status, `${block.heading}:\n${block.sql}\n${result.stderr}`).toBe(0);
      ran += 1;
    }
    expect(ran).toBeGreaterThanOrEqual(10);
    // Wayne was added, backfilled, then deleted with its feed entries and runs purged.
    expect(await db.sql`select from kpi.tenants where slug = 'wayne'`).toHaveLength(0);
    expect(await db.sql`select from kpi.kpi_runs where tenant_id not in (select id from kpi.tenants)`).toHaveLength(0);
    // acme moved to the free plan, has its own AIV rule and the custom KPI, derived.
    expect(await db.sql`select plan from kpi.tenants where slug = 'acme'`).toEqual([{ plan: 'free' }]);
    expect(await db.sql`select threshold::float from kpi.tenant_anomaly_rules where kpi = 'aiv_pct'`).toEqual([{ threshold: 5 }]);
    const [{ n: values }] = await db.sql<[{ n: number }]>`select count(*)::int as n from kpi.custom_kpi_values where key = 'clarity_reports' and value is not null`;
    expect(values).toBeGreaterThan(0);
    // The deferred default was re-scored by the procedure the recipe calls.
    expect(await db.sql`select status from kpi.kpi_runs where kind = 'rescore' order by id desc limit 1`).toEqual([{ status: 'ok' }]);
  });

  it.skipIf(!cron.url)(`the pg_cron blocks succeed in the pg_cron database (rolled back)${cron.url ? '' : ` — not run: ${cron.reason}`}`, () => {
    const cronBlocks = blocks.filter((b) => b.cron);
    expect(cronBlocks.length).toBeGreaterThanOrEqual(2);
    for (const [n, block] of cronBlocks.entries()) {
      const result = psql(cron.url!, `begin;\n${block.sql}\nrollback;`, `cron-${n}`);
      expect(result.status, `${block.heading}:\n${block.sql}\n${result.stderr}`).toBe(0);
    }
  });
});
