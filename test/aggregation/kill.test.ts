// kill -9 mid-fill, on a cluster of its own (a killed backend makes PostgreSQL restart every
// session of its server): the backend doing the daily fill, then the postmaster itself. Afterwards
// kpi_history holds exactly the rows of before — never part of a run — the log shows the run as
// never finished, health says so, and the next run heals it.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, type Sql } from '../helpers/database.js';
import { migrate, projectRoot } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';
import { historySnapshot, insertGeneratedTenants } from '../fixtures/sources.js';

const dir = mkdtempSync(join(tmpdir(), 'kpi-kill-'));
chmodSync(dir, 0o755);
const cluster = { KPI_DB_DIR: join(dir, 'pg'), KPI_DB_PORT: String(await freePort(54389)), KPI_DB_NAME: 'kpi_kill', KPI_DB_FAST: '0' };
const url = `postgres://postgres@127.0.0.1:${cluster.KPI_DB_PORT}/kpi_kill`;
const TENANTS = 300;
const dbsh = (command: string) => spawnSync('bash', ['scripts/db.sh', command], { cwd: projectRoot, env: { ...process.env, ...cluster }, encoding: 'utf8' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A connection once the server accepts them again (after crash recovery). */
async function reconnect(): Promise<Sql> {
  for (let i = 0; i < 120; i++) {
    const sql = connect(url, { max: 1 });
    try {
      await sql`select 1`;
      return sql;
    } catch {
      await sql.end({ timeout: 0 });
      await sleep(250);
    }
  }
  throw new Error('the server did not come back');
}

let sql: Sql;

beforeAll(async () => {
  const up = dbsh('up');
  expect(up.status, up.stderr).toBe(0);
  await migrate(url);
  sql = connect(url, { max: 1 });
  await insertGeneratedTenants(sql, TENANTS, 2);
  await sql`select kpi.fill_all_kpi_history()`;
}, 120_000);

afterAll(async () => {
  await sql?.end({ timeout: 0 });
  dbsh('down');
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  // Every tenant's latest week changes: a complete run rewrites every row.
  await sql`update kpi.avi_reports set crs_pct = (crs_pct + 11) % 100 where week_start = '2024-03-25'`;
});

/**
 * Starts the daily procedure, lets it write every row but the last tenant's (another session holds
 * that one), then kills: `kill` receives the backend's pid. Returns once the server answers again.
 */
async function killMidFill(kill: (backendPid: number) => void): Promise<void> {
  const blocker = connect(url, { max: 1 });
  const procedure = connect(url, { max: 1 });
  const [{ pid }] = await procedure<[{ pid: number }]>`select pg_backend_pid() as pid`;
  let killed = false;
  // Every session of the server goes down with the kill: only errors after it are expected.
  await blocker
    .begin(async (tx) => {
      await tx`select 1 from kpi.kpi_history where tenant_id = (select tenant_id from kpi.kpi_history order by tenant_id desc limit 1) for update`;
      const running = procedure`call kpi.run_scheduled_kpi_fill()`.execute().catch((error: unknown) => {
        if (!killed) throw error;
      });
      let waiting = false;
      for (let i = 0; i < 400 && !waiting; i++) {
        const [row] = await sql<{ waiting: boolean }[]>`select coalesce(wait_event_type = 'Lock', false) as waiting from pg_stat_activity where pid = ${pid}`;
        waiting = row?.waiting ?? false;
        if (!waiting) await sleep(25);
      }
      expect(waiting, 'the fill waits for the last row').toBe(true);
      killed = true;
      kill(pid);
      await running;
    })
    .catch((error: unknown) => {
      if (!killed) throw error;
    });
  await Promise.all([blocker.end({ timeout: 0 }), procedure.end({ timeout: 0 }), sql.end({ timeout: 0 })]);
}

async function expectUnfinishedThenHealed(before: Awaited<ReturnType<typeof historySnapshot>>) {
  // Exactly the rows of before: the run's writes, all but one tenant's, are gone with it.
  expect(await historySnapshot(sql)).toEqual(before);
  const [run] = await sql`select status, finished_at from kpi.kpi_runs where kind = 'fill_all' order by id desc limit 1`;
  expect(run).toEqual({ status: 'running', finished_at: null });
  const [{ health }] = (await sql`select kpi.health_report() as health`) as unknown as [{ health: unknown }];
  expect(health).toMatchObject({ status: 'degraded', reasons: expect.arrayContaining([expect.stringMatching(/^the last run never finished/)]) });
  // The next run heals it: every tenant's row rewritten, healthy again.
  await sql`call kpi.run_scheduled_kpi_fill()`;
  const [healed] = await sql`select status, rows_written from kpi.kpi_runs where kind = 'fill_all' order by id desc limit 1`;
  expect(healed).toEqual({ status: 'ok', rows_written: TENANTS });
  const after = await historySnapshot(sql);
  expect(after.filter((row, i) => row.crs_pct !== before[i]!.crs_pct && row.as_of === '2024-03-25')).toHaveLength(TENANTS);
  const [{ health: again }] = (await sql`select kpi.health_report() as health`) as unknown as [{ health: unknown }];
  expect(again).toMatchObject({ status: 'healthy', reasons: [] });
}

describe('kill -9 in the middle of the daily fill', () => {
  it('of the backend running it: the server recovers by itself; nothing of the run remains', async () => {
    const before = await historySnapshot(sql);
    await killMidFill((pid) => process.kill(pid, 'SIGKILL'));
    sql = await reconnect();
    await expectUnfinishedThenHealed(before);
  }, 120_000);

  it('of the postmaster itself, then scripts/db.sh up: the same', async () => {
    const before = await historySnapshot(sql);
    const postmaster = Number(readFileSync(join(cluster.KPI_DB_DIR, 'postmaster.pid'), 'utf8').split('\n')[0]);
    await killMidFill(() => process.kill(postmaster, 'SIGKILL'));
    await sleep(500);
    const up = dbsh('up');
    expect(up.status, up.stderr).toBe(0);
    sql = await reconnect();
    await expectUnfinishedThenHealed(before);
  }, 120_000);
});
