// scripts/db.sh on a cluster of its own: idempotent start, pg_cron preloaded, recovery after a crash.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'kpi-dbsh-'));
const env = {
  ...process.env,
  KPI_DB_DIR: join(dir, 'pg'),
  KPI_DB_PORT: String(await freePort(54349)),
  KPI_DB_NAME: 'kpi_dbsh',
  KPI_DB_FAST: '1',
};

function dbsh(...args: string[]) {
  const result = spawnSync('bash', [`${projectRoot}scripts/db.sh`, ...args], { env, encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout.trim(), stderr: result.stderr.trim() };
}

afterAll(() => {
  dbsh('down');
  rmSync(dir, { recursive: true, force: true });
});

describe('scripts/db.sh', () => {
  it('up creates and starts the cluster; up again is a no-op', () => {
    expect(dbsh('up')).toMatchObject({ code: 0 });
    const again = dbsh('up');
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/creating|starting/);
  }, 120_000);

  it('url names the application database on 127.0.0.1 and the chosen port', () => {
    expect(dbsh('url').stdout).toBe(`postgres://postgres@127.0.0.1:${env.KPI_DB_PORT}/kpi_dbsh`);
  });

  it('psql shows pg_cron installed, preloaded, and scheduling in the application database', () => {
    const out = dbsh(
      'psql',
      '-tA',
      '-c',
      "select string_agg(extname, ',' order by extname) from pg_extension",
      '-c',
      'show shared_preload_libraries',
      '-c',
      'show cron.database_name',
      '-c',
      'show listen_addresses',
    );
    expect(out.stdout.split('\n')).toEqual(['pg_cron,plpgsql', 'pg_cron', 'kpi_dbsh', '127.0.0.1']);
  });

  it('up recovers after the server was killed (stale postmaster.pid)', () => {
    const pid = Number(readFileSync(join(env.KPI_DB_DIR, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    execFileSync('sleep', ['1']);
    expect(dbsh('status').code).toBe(3);
    const up = dbsh('up');
    expect(up.code).toBe(0);
    expect(dbsh('status')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^running/) });
  }, 120_000);

  it('down stops it, and status says so', () => {
    expect(dbsh('down').code).toBe(0);
    expect(dbsh('status')).toMatchObject({ code: 3, stdout: expect.stringMatching(/^stopped/) });
    expect(dbsh('down').code).toBe(0);
  }, 60_000);
});
