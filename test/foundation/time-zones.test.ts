// Times the project formats never depend on where it runs: the suites that check timestamps byte
// for byte (CSV, export, health, the server SDK, the fill) run again here with the database's
// TimeZone set to America/New_York and Node's TZ to Asia/Kolkata, on the same server.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';

const SUITES = [
  'test/api/csv.test.ts',
  'test/api/health.test.ts',
  'test/api/documented-calls.test.ts',
  'test/sdk/server.test.ts',
  'test/aggregation/fill-all.test.ts',
  // Which month a week belongs to must not depend on the session's TimeZone.
  'test/aggregation/rollups.test.ts',
  'test/api/rollups.test.ts',
];
const report = join(projectRoot, '.data', `time-zones-${process.pid}.json`);
afterAll(() => rmSync(report, { force: true }));

it('CSV, export, health, server SDK, fill and rollup suites pass with the server in America/New_York and Node in Asia/Kolkata', () => {
  const { serverUrl } = inject('testDatabase');
  const run = spawnSync(`${projectRoot}node_modules/.bin/vitest`, ['run', ...SUITES, '--reporter=json', `--outputFile=${report}`], {
    cwd: projectRoot,
    encoding: 'utf8',
    timeout: 300_000,
    env: {
      ...process.env,
      // The same server, with databases of the inner run's own; the pg_cron database stays the outer run's.
      TEST_DATABASE_URL: serverUrl,
      KPI_TEST_NO_CRON: '1',
      KPI_TEST_SERVER_TIMEZONE: 'America/New_York',
      TZ: 'Asia/Kolkata',
    },
  });
  const json = JSON.parse(readFileSync(report, 'utf8'));
  const failures = json.testResults
    .flatMap((file: { assertionResults: { status: string; fullName: string; failureMessages: string[] }[] }) => file.assertionResults)
    .filter((test: { status: string }) => test.status === 'failed')
    .map((test: { fullName: string; failureMessages: string[] }) => `${test.fullName}: ${test.failureMessages[0]?.split('\n')[0]}`);
  expect(failures).toEqual([]);
  expect(json.numFailedTestSuites).toBe(0);
  expect(json.numPassedTests).toBeGreaterThan(60);
  expect(run.status, run.stderr.slice(-2000)).toBe(0);
}, 300_000);
