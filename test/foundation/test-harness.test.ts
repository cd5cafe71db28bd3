// The test harness writes only to databases it created. Pointed (TEST_DATABASE_URL) at a server
// whose application database holds real data and runs pg_cron, a whole run — the scheduling suite,
// which rolls migrations back and deletes tenants in the pg_cron database, among it — leaves that
// database exactly as it was, and says so. A role that cannot create databases is refused.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../helpers/database.js';
import { migrate, projectRoot } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'kpi-harness-'));
chmodSync(dir, 0o755);
const cluster = { KPI_DB_DIR: join(dir, 'pg'), KPI_DB_PORT: String(await freePort(54379)), KPI_DB_NAME: 'real_app', KPI_DB_FAST: '1' };
const realUrl = `postgres://postgres@127.0.0.1:${cluster.KPI_DB_PORT}/real_app`;
const dbsh = (command: string) => spawnSync('bash', ['scripts/db.sh', command], { cwd: projectRoot, env: { ...process.env, ...cluster }, encoding: 'utf8' });

/** Everything a test run could have touched in the real database. */
async function stateOfRealDatabase() {
  const sql = connect(realUrl, { max: 1 });
  try {
    return {
      tenants: await sql`select id, slug from kpi.tenants order by id`,
      migrations: await sql`select version from public.schema_migrations order by version`,
      history: await sql`select count(*)::int as n from kpi.kpi_history`,
      runs: await sql`select id, status from kpi.kpi_runs order by id`,
      jobs: await sql`select jobname, schedule, command from cron.job order by jobname`,
    };
  } finally {
    await sql.end();
  }
}

function innerRun(testDatabaseUrl: string, files: string[]) {
  const result = spawnSync(`${projectRoot}node_modules/.bin/vitest`, ['run', ...files], {
    cwd: projectRoot,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, TEST_DATABASE_URL: testDatabaseUrl, KPI_TEST_NO_CRON: undefined, KPI_TEST_SERVER_TIMEZONE: undefined },
  });
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

beforeAll(async () => {
  const up = dbsh('up');
  expect(up.status, up.stderr).toBe(0);
  await migrate(realUrl);
  const seeded = spawnSync('psql', [realUrl, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', 'db/seed/demo.sql', '-c', 'select kpi.backfill_kpi_history()'], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  expect(seeded.status, seeded.stderr).toBe(0);
}, 120_000);

afterAll(() => {
  dbsh('down');
  rmSync(dir, { recursive: true, force: true });
});

describe('TEST_DATABASE_URL', () => {
  it('a whole run against a real pg_cron database leaves it exactly as it was, and says so', async () => {
    const before = await stateOfRealDatabase();
    expect(before.tenants).toHaveLength(5);
    expect(before.jobs).toHaveLength(4);
    const run = innerRun(realUrl, ['test/aggregation/schedule.test.ts', 'test/aggregation/fill-all.test.ts']);
    expect(run.code, run.out.slice(-3000)).toBe(0);
    expect(run.out).toContain(`TEST_DATABASE_URL: creating the tests' own databases`);
    expect(run.out).toContain('"real_app" is not written to');
    expect(run.out).toContain('pg_cron suite not run: pg_cron runs in "real_app" on the server of TEST_DATABASE_URL, a database these tests did not create');
    expect(await stateOfRealDatabase()).toEqual(before);
    // Nothing of the run is left behind but its databases' absence.
    const admin = connect(realUrl, { max: 1 });
    const left = await admin`select datname from pg_database where datname like 'kpi_test%'`;
    await admin.end();
    expect(left).toEqual([]);
  }, 240_000);

  it('a role that cannot create databases is refused with what to do', async () => {
    const admin = connect(realUrl, { max: 1 });
    await admin.unsafe('create role kpi_reader login nocreatedb');
    await admin.end();
    const run = innerRun(`postgres://kpi_reader@127.0.0.1:${cluster.KPI_DB_PORT}/real_app`, ['test/aggregation/fill-all.test.ts']);
    expect(run.code).not.toBe(0);
    expect(run.out).toContain('TEST_DATABASE_URL: role kpi_reader cannot create databases');
  }, 120_000);
});
