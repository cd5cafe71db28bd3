// Every npm script answers --help with its usage and does nothing else: the database, the work
// tree and the local cluster's folder are the same afterwards. An option a script does not take is
// refused with the usage line and a non-zero exit, before anything runs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';

const db = useTestDatabase();
const scripts = Object.keys(JSON.parse(readFileSync(`${projectRoot}package.json`, 'utf8')).scripts as Record<string, string>);
const sandbox = mkdtempSync(join(tmpdir(), 'kpi-help-'));
const localCluster = join(sandbox, 'pg');
const port = String(await freePort(54379));
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

/** Whose help is another program's: tsc answers typecheck's --help. */
const NOT_OURS: Record<string, RegExp> = { typecheck: /tsc: The TypeScript Compiler/ };
/** Whose options are another program's, which refuses the unknown ones itself. */
const REFUSED_BY: Record<string, RegExp> = { typecheck: /Unknown compiler option '--frobnicate'/, 'db:psql': /unrecognized option '--frobnicate'/ };

function npmRun(script: string, args: string[]) {
  const result = spawnSync('npm', ['run', '--silent', script, '--', ...args], {
    cwd: projectRoot,
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      ...process.env,
      // Where each script would act: this file's database, a local cluster that does not exist yet.
      DATABASE_URL: db.url,
      KPI_DB_DIR: localCluster,
      KPI_DB_PORT: port,
      BENCH_DATABASE_URL: db.url.replace(/\/[^/]*$/, '/kpi_help_bench'),
      SOAK_DATABASE_URL: db.url.replace(/\/[^/]*$/, '/kpi_help_soak'),
      CRON_SECRET: 'a-cron-secret-long-enough-to-be-accepted-0000',
    },
  });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

/** Every row of every table of the kpi schema, and the server's databases, as one digest each. */
async function databaseState() {
  const tables = await db.sql<{ table: string; digest: string }[]>`
    select c.relname::text as table,
           (xpath('/row/d/text()', query_to_xml(format('select md5(coalesce(string_agg(t::text, %L order by t::text), %L)) as d from kpi.%I t', ',', '', c.relname), false, true, '')))[1]::text as digest
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'kpi' and c.relkind in ('r', 'p') order by 1`;
  const databases = await db.sql<{ datname: string }[]>`select datname from pg_database where datname like 'kpi_help_%'`;
  return { tables, databases: databases.map((d) => d.datname) };
}

/** The work tree's files (not node_modules, .git, nor the running clusters' own folders), with their sizes and times. */
function workTree(): Map<string, string> {
  const files = new Map<string, string>();
  const skip = new Set(['node_modules', '.git', '.data/test-pg', '.data/pg', '.data/bench-pg']);
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const rel = relative(projectRoot, path);
      if (skip.has(rel)) continue;
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) {
        const stat = statSync(path);
        files.set(rel, `${stat.size} ${stat.mtimeMs}`);
      }
    }
  };
  walk(projectRoot);
  return files;
}

describe('npm run <script> -- --help', () => {
  it.each(scripts)('%s: the usage, exit 0, nothing changed', { timeout: 150_000 }, async (script) => {
    const [dbBefore, treeBefore] = [await databaseState(), workTree()];
    const run = npmRun(script, ['--help']);
    expect(run.code, run.err).toBe(0);
    expect(run.out).toMatch(NOT_OURS[script] ?? /^usage: /);
    expect(await databaseState()).toEqual(dbBefore);
    expect([...workTree()].filter(([file, state]) => treeBefore.get(file) !== state).map(([file]) => file)).toEqual([]);
    expect([...treeBefore.keys()].filter((file) => !existsSync(join(projectRoot, file)))).toEqual([]);
    expect(existsSync(localCluster), 'the local cluster was started').toBe(false);
  });
});

describe('npm run <script> -- --frobnicate', () => {
  it.each(scripts)('%s: refused, naming the option, before anything runs', { timeout: 150_000 }, async (script) => {
    const dbBefore = await databaseState();
    const run = npmRun(script, ['--frobnicate']);
    expect(run.code).not.toBe(0);
    expect(run.out + run.err).toMatch(REFUSED_BY[script] ?? /(unknown option|Unknown option)[^\n]*--frobnicate[\s\S]*usage: /);
    expect(await databaseState()).toEqual(dbBefore);
    expect(existsSync(localCluster), 'the local cluster was started').toBe(false);
  });
});
