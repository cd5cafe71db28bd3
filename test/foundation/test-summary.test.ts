// `npm test`'s closing line counts a file that failed before its tests ran (a beforeAll that
// threw) as failures, not as skipped tests — which is how vitest's own totals count them.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';
// @ts-expect-error: a plain .mjs script without declarations
import { summarize } from '../../scripts/test-summary.mjs';

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
  const line = spawnSync('node', ['scripts/test-summary.mjs', report], { cwd: projectRoot, encoding: 'utf8' });
  expect(line.stdout.trim()).toBe('tests: 1 passed, 3 failed, 1 skipped');
});
