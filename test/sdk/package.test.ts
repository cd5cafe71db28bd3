// The package as users get it: built, packed, installed into a fresh project, imported from both
// entries and type-checked; and the browser entry bundled for browsers without Node or postgres.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';

const work = mkdtempSync(join(tmpdir(), 'kpi-package-'));
const consumer = join(work, 'consumer');
const sh = (command: string, args: string[], cwd: string) =>
  execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

beforeAll(() => {
  // npm pack runs the prepack script, which builds dist/.
  const tarball = sh('npm', ['pack', '--silent', '--pack-destination', work], projectRoot).trim().split('\n').at(-1)!;
  sh('mkdir', ['-p', consumer], work);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // Only the tarball and what it depends on; the TypeScript and Node types of this repository check it.
  sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, tarball)], consumer);
}, 240_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the packed package', () => {
  it('ships dist/ with both entries and no sources, tests or database files', () => {
    const files = readdirSync(join(consumer, 'node_modules/kpi-history/dist')).sort();
    expect(files).toEqual(expect.arrayContaining(['index.js', 'index.d.ts', 'server.js', 'server.d.ts', 'database.types.d.ts']));
    expect(readdirSync(join(consumer, 'node_modules/kpi-history')).sort()).toEqual(['README.md', 'dist', 'package.json']);
  });

  it('imports from both entries in Node', () => {
    writeFileSync(
      join(consumer, 'smoke.mjs'),
      `import * as browser from 'kpi-history';
       import * as server from 'kpi-history/server';
       console.log(JSON.stringify({
         browser: ['createKpiHistoryClient', 'createKpiCronClient', 'KpiHistoryError', 'KPI_ERROR_CODES'].map((n) => typeof browser[n]),
         server: ['fillKpiHistory', 'fillAllKpiHistory', 'backfillKpiHistory', 'createKpiHistoryServer', 'closeKpiHistory'].map((n) => typeof server[n]),
         codes: browser.KPI_ERROR_CODES.includes('NO_AVI'),
       }));`,
    );
    expect(JSON.parse(sh('node', ['smoke.mjs'], consumer))).toEqual({
      browser: ['function', 'function', 'function', 'object'],
      server: ['function', 'function', 'function', 'function', 'function'],
      codes: true,
    });
  });

  it('type-checks a small consumer against the published declarations', () => {
    writeFileSync(
      join(consumer, 'consumer.ts'),
      `import { createKpiHistoryClient, KpiHistoryError, type KpiHistoryRow } from 'kpi-history';
       import { fillKpiHistory, type FillResult } from 'kpi-history/server';
       const client = createKpiHistoryClient({ url: 'http://localhost:3000', token: 't', tenantId: 'x' });
       export async function latest(): Promise<number | null> {
         const rows: KpiHistoryRow[] = await client.history({ limit: 1 });
         return rows[0]?.hrp_pct ?? null;
       }
       export const fill: (id: string) => Promise<FillResult> = fillKpiHistory;
       export const isError = (e: unknown) => e instanceof KpiHistoryError && e.code === 'NO_AVI';
       // @ts-expect-error: not a column
       export const wrong = (row: KpiHistoryRow) => row.tenant_id;
      `,
    );
    writeFileSync(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', noEmit: true,
          lib: ['ES2022', 'DOM'], types: ['node'], typeRoots: [join(projectRoot, 'node_modules/@types')], skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    sh(join(projectRoot, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], consumer);
  });
});

describe('the browser entry', () => {
  it('bundles for browsers without a Node built-in or the postgres driver', async () => {
    const result = await build({
      entryPoints: [join(projectRoot, 'sdk/src/index.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((input) => input.includes('@supabase/postgrest-js'))).toBe(true);
    expect(inputs.filter((input) => /node_modules\/postgres\/|^node:|node_modules\/debug\/src\/node/.test(input))).toEqual([]);
    const code = result.outputFiles[0]!.text;
    expect(code).not.toMatch(/\brequire\(["'](node:)?(fs|net|tls|crypto|os|path|stream)["']\)/);
  });

  it('fails to bundle if the server entry is pulled in (the check can fail)', async () => {
    await expect(
      build({ entryPoints: [join(projectRoot, 'sdk/src/server.ts')], bundle: true, platform: 'browser', write: false, logLevel: 'silent' }),
    ).rejects.toThrow();
  });
});
