// Every `npm run …` script exists and runs: the database commands and `npm start` on a throwaway
// cluster of their own, the rest by the test named for it. And the checks that come before npm.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';

// Where Docker runs, test:e2e would start the whole stack: CI runs it on its own (.github/workflows/ci.yml).
const dockerAnswers = spawnSync('docker', ['info'], { encoding: 'utf8' }).status === 0;
if (dockerAnswers) console.warn('[kpi-history tests] test:e2e refusal test — not run: a Docker engine answers here, and CI runs `npm run test:e2e` itself');
const scripts = JSON.parse(readFileSync(`${projectRoot}package.json`, 'utf8')).scripts as Record<string, string>;

/** Scripts this file does not run itself, and the test that does. */
const RUN_ELSEWHERE: Record<string, string> = {
  test: 'scripts/test.sh: this very run',
  typecheck: 'scripts/test.sh (tsc --noEmit before vitest)',
  token: 'test/api/scripts.test.ts',
  'cron-secret': 'test/api/scripts.test.ts',
  'gen:types': 'test/sdk/types.test.ts',
  build: 'test/sdk/package.test.ts',
  prepack: 'test/sdk/package.test.ts',
  bench: 'test/bench/bench-quick.test.ts',
  worker: 'test/alerts/delivery.test.ts',
  export: 'test/export/export.test.ts',
  soak: 'test/stream/soak.test.ts',
  dashboard: 'test/browser/dashboard-command.test.ts',
};

const dir = mkdtempSync(join(tmpdir(), 'kpi-scripts-'));
chmodSync(dir, 0o755);
const cluster = { KPI_DB_DIR: join(dir, 'pg'), KPI_DB_PORT: String(await freePort(54369)), KPI_DB_NAME: 'kpi_scripts', KPI_DB_FAST: '1' };

function npmRun(script: string, args: string[] = [], env: Record<string, string | undefined> = {}) {
  const result = spawnSync('npm', ['run', '--silent', script, ...(args.length ? ['--', ...args] : [])], {
    cwd: projectRoot,
    encoding: 'utf8',
    env: { ...process.env, DATABASE_URL: undefined, ...cluster, ...env },
    timeout: 240_000,
  });
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

afterAll(() => {
  spawnSync('bash', ['scripts/db.sh', 'down'], { cwd: projectRoot, env: { ...process.env, ...cluster } });
  rmSync(dir, { recursive: true, force: true });
});

describe('package.json scripts', () => {
  it('each one names files that exist', () => {
    for (const [name, command] of Object.entries(scripts)) {
      for (const [file] of command.matchAll(/\b(scripts|db|test)\/[\w./-]+\.(sh|ts|sql)\b/g)) {
        expect(existsSync(`${projectRoot}${file}`), `${name}: ${file}`).toBe(true);
      }
    }
  });

  it('each one runs, here or in the test named for it', () => {
    const here = ['start', 'db:up', 'db:down', 'db:migrate', 'db:seed', 'db:psql', 'test:e2e'];
    for (const name of Object.keys(scripts)) {
      expect(here.includes(name) || name in RUN_ELSEWHERE, `npm run ${name} is run by no test`).toBe(true);
    }
    for (const where of Object.values(RUN_ELSEWHERE)) {
      const file = /^(test\/\S+\.ts|scripts\/\S+\.sh)/.exec(where)?.[1];
      if (file) expect(existsSync(`${projectRoot}${file}`), where).toBe(true);
    }
  });

  it('db:up, npm start, db:seed, db:migrate, db:psql and db:down on a cluster of their own', () => {
    expect(npmRun('db:up')).toMatchObject({ code: 0 });
    const start = npmRun('start');
    expect(start.code, start.out).toBe(0);
    // The main job: demo tenants, the fill, its result.
    expect(start.out).toContain('== Demo tenants and their source reports');
    expect(start.out).toMatch(/acme\s+\| Acme Corp/);
    expect(start.out).toMatch(/partial\s+\|\s+4\s+\|\s+5/);
    // hooli's last week: AIV down, HRP up, each with its alert.
    expect(start.out).toMatch(/hooli\s+\| 2026-11-23 \| aiv_pct\s+\|\s+31\.00 .*\| down\s+\|/);
    expect(start.out).toMatch(/hooli\s+\| 2026-11-23 \| hrp_pct\s+\|\s+40\.00 .*\| up\s+\|/);
    expect(start.out).toContain(`postgres://postgres@127.0.0.1:${cluster.KPI_DB_PORT}/kpi_scripts`);
    expect(npmRun('db:seed')).toMatchObject({ code: 0, out: expect.stringContaining('seeded: acme, globex, initech, umbrella, hooli') });
    // --no-dump-schema: the committed dump is the schema-dump test's to compare, not this test's to rewrite.
    expect(npmRun('db:migrate', ['--no-dump-schema', 'up'])).toMatchObject({ code: 0 });
    const psql = npmRun('db:psql', ['-tA', '-c', 'select count(*) from kpi.tenants']);
    expect(psql).toMatchObject({ code: 0, out: expect.stringMatching(/^5$/m) });
    expect(npmRun('db:down')).toMatchObject({ code: 0 });
  }, 240_000);

  it.skipIf(dockerAnswers)('test:e2e says why it did not run where no Docker engine answers, and exits 2', () => {
    const e2e = npmRun('test:e2e');
    expect(e2e.code).toBe(2);
    expect(e2e.out).toContain('test:e2e: not run: no Docker engine answers');
  });
});

describe('scripts/check-node.sh (run by .ci/run and before every npm command)', () => {
  it('passes on this Node.js', () => {
    expect(spawnSync('bash', ['scripts/check-node.sh'], { cwd: projectRoot }).status).toBe(0);
  });

  it('names the version needed and the one found when Node.js is too old', () => {
    // An old Node.js, as far as the script can tell: a `node` that answers like Node 18 does.
    const bin = join(dir, 'old-node-bin');
    rmSync(bin, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', bin]);
    writeFileSync(join(bin, 'node'), '#!/bin/sh\ncase "$1" in -p) echo 18 ;; --version) echo v18.20.4 ;; esac\n', { mode: 0o755 });
    const result = spawnSync('bash', ['scripts/check-node.sh'], {
      cwd: projectRoot,
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('kpi-history needs Node.js 20 or newer; this is v18.20.4');
  });
});
