// `npm test`'s closing line counts a file that failed before its tests ran (a beforeAll that
// threw) as failures, not as skipped tests — which is how vitest's own totals count them.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';
// @ts-expect-error: a plain .mjs script without declarations
import { skippedSuites, summarize } from '../../scripts/test-summary.mjs';

// The summary as a plain run gives it, whatever this run's own setting (CI sets KPI_TESTS_MAY_SKIP).
const { KPI_TESTS_MAY_SKIP: _ci, ...plainEnv } = process.env;

// Inside the project, so that the fixtures resolve vitest from its node_modules; git-ignored.
const dir = join(projectRoot, '.data', `summary-fixture-${process.pid}`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a beforeAll that throws makes every test of its file a failure; skipped tests stay skipped', () => {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'vitest.config.mjs'), "export default { test: { include: ['*.check.mjs'] } };\n");
  writeFileSync(
    join(dir, 'broken.check.mjs'),
    "import { beforeAll, it } from 'vitest';\nbeforeAll(() => { throw new Error('no database'); });\nit('a', () => {});\nit('b', () => {});\nit('c', () => {});\n",
  );
  writeFileSync(join(dir, 'fine.check.mjs'), "import { it } from 'vitest';\nit('passes', () => {});\nit.skip('is skipped', () => {});\n");
  const report = join(dir, 'report.json');
  const run = spawnSync(`${projectRoot}node_modules/.bin/vitest`, ['run', '--root', dir, '--reporter=json', `--outputFile=${report}`], {
    cwd: dir,
    encoding: 'utf8',
  });
  expect(run.status).toBe(1);
  const json = JSON.parse(readFileSync(report, 'utf8'));
  // What vitest's totals say: nothing failed.
  expect(json.numFailedTests).toBe(0);
  expect(summarize(json)).toEqual({ passed: 1, failed: 3, skipped: 1 });
  const line = spawnSync('node', ['scripts/test-summary.mjs', report], { cwd: projectRoot, encoding: 'utf8', env: plainEnv });
  expect(line.stdout.trim().split('\n').at(-1)).toBe('tests: 1 passed, 3 failed, 1 skipped');
});

it('names each skipped suite with its reason; KPI_TESTS_MAY_SKIP fails the run for a skip elsewhere', () => {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'vitest.config.mjs'), "export default { test: { include: ['**/*.check.mjs'] } };\n");
  mkdirSync(join(dir, 'e2e'), { recursive: true });
  writeFileSync(join(dir, 'e2e', 'gated.check.mjs'), "import { describe, it } from 'vitest';\ndescribe.skip('server — not run: no Docker engine', () => { it('a', () => {}); it('b', () => {}); });\n");
  writeFileSync(join(dir, 'local.check.mjs'), "import { describe, it } from 'vitest';\nit('passes', () => {});\ndescribe.skip('pg_cron — not run: no pg_cron', () => { it('c', () => {}); });\n");
  const report = join(dir, 'skips.json');
  spawnSync(`${projectRoot}node_modules/.bin/vitest`, ['run', '--root', dir, '--reporter=json', `--outputFile=${report}`, 'gated', 'local'], { cwd: dir, encoding: 'utf8' });
  const json = JSON.parse(readFileSync(report, 'utf8'));
  expect(skippedSuites(json, dir).sort((a: { file: string }, b: { file: string }) => (a.file < b.file ? -1 : 1))).toEqual([
    { file: 'e2e/gated.check.mjs', tests: 2, reasons: ['no Docker engine'] },
    { file: 'local.check.mjs', tests: 1, reasons: ['no pg_cron'] },
  ]);
  const run = (env: Record<string, string>) => spawnSync('node', [join(projectRoot, 'scripts/test-summary.mjs'), report], { cwd: dir, encoding: 'utf8', env: { ...plainEnv, ...env } });
  const plain = run({});
  expect(plain.status).toBe(0);
  expect(plain.stdout).toContain('skipped: local.check.mjs (1 tests): no pg_cron');
  const strict = run({ KPI_TESTS_MAY_SKIP: 'e2e/' });
  expect(strict.status).toBe(1);
  expect(strict.stdout).toContain('tests: local.check.mjs may not be skipped here (KPI_TESTS_MAY_SKIP=e2e/)');
});

