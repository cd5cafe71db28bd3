// npm run soak, end to end and briefly: it builds its own database, runs the worker under its
// 2,000 clients, stops by itself, and reports what it measured. The figures themselves are for
// `npm run soak` on a quiet machine (docs/performance.md), never asserted here.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import postgres from 'postgres';
import { databaseUrl, projectRoot } from '../helpers/dbmate.js';

const info = inject('testDatabase');
const name = `kpi_soak_${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'kpi-soak-'));

afterAll(async () => {
  const admin = postgres(info.serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
});

it('runs for the seconds asked, then stops by itself with the worker, reporting memory, opens and the catch-up', { timeout: 180_000 }, () => {
  const json = join(dir, 'soak.json');
  const run = spawnSync('npm', ['run', '--silent', 'soak', '--', '--seconds', '5', '--json', json], {
    cwd: projectRoot,
    env: { ...process.env, SOAK_DATABASE_URL: databaseUrl(info.serverUrl, name) },
    encoding: 'utf8',
    timeout: 170_000,
  });
  expect(run.status, run.stderr).toBe(0);
  expect(run.stdout).toMatch(/worker resident memory: \d+ MiB at start, peak \d+ MiB/);
  expect(run.stdout).toMatch(/stream open: p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms/);
  const report = JSON.parse(readFileSync(json, 'utf8'));
  expect(report).toMatchObject({ seconds: 5, clients: { readers: 1300, slow: 200, catchingUp: 1 } });
  expect(report.worker.peakRssMiB).toBeGreaterThan(0);
  expect(report.open.samples).toBeGreaterThan(0);
  expect(report.caughtUp.events).toBeGreaterThan(0);
  // The worker is gone: nothing is left listening on the soak's database.
  const left = spawnSync('psql', [databaseUrl(info.serverUrl, name), '-XAtc', "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"], { encoding: 'utf8' });
  expect(left.stdout.trim()).toBe('0');
});

it('--help says what it does and touches nothing; a bad --seconds is refused', () => {
  const help = spawnSync('npm', ['run', '--silent', 'soak', '--', '--help'], { cwd: projectRoot, encoding: 'utf8' });
  expect(help.status).toBe(0);
  expect(help.stdout).toContain('usage: npm run soak');
  const bad = spawnSync('npm', ['run', '--silent', 'soak', '--', '--seconds', '9999'], { cwd: projectRoot, encoding: 'utf8' });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toContain('--seconds is a whole number from 5 to 600');
});
