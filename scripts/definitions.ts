// Applies db/definitions/*.sql — every function, procedure, view, trigger, policy and grant, one
// current definition each — after the migrations: in file-name order, in one transaction, each
// file idempotent (create or replace; an object that goes is an explicit drop in its file). Skipped
// when neither the files nor the migrations changed since the last apply (kpi.definitions_state),
// so that re-running `npm run db:migrate` takes no lock at all; applied anew otherwise, since a
// migration may have dropped what a definition created (a view over a changed column).
//
//   tsx scripts/definitions.ts [--force] [--quiet]     against DATABASE_URL
//
// scripts/migrate.sh runs it after dbmate; the test harness and the benchmark call
// applyDefinitions() the same way.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import postgres from 'postgres';
import { parseCli } from './lib/cli.js';

const root = fileURLToPath(new URL('..', import.meta.url));
export const DEFINITIONS_DIR = `${root}db/definitions`;

/** The definition files in the order they are applied: by name (the number states the order). */
export function definitionFiles(): { name: string; sql: string }[] {
  return readdirSync(DEFINITIONS_DIR)
    .filter((name) => name.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, sql: readFileSync(`${DEFINITIONS_DIR}/${name}`, 'utf8') }));
}

export interface ApplyOptions {
  /** Apply even when nothing changed. */
  force?: boolean;
  /** How long to wait for a lock another session holds (default 10 s), so that a long run blocks nothing for long. */
  lockTimeout?: string;
  /** Called with each line of progress (default: nothing). */
  log?: (line: string) => void;
}

export interface ApplyResult {
  applied: boolean;
  checksum: string;
  files: string[];
  ms: number;
}

export class DefinitionError extends Error {}

/** 1-based line of a character offset (PostgreSQL's error position) in a file. */
function lineOf(sql: string, position: number | undefined): number | null {
  if (!position || Number.isNaN(position)) return null;
  return sql.slice(0, position - 1).split('\n').length;
}

export async function applyDefinitions(databaseUrl: string, options: ApplyOptions = {}): Promise<ApplyResult> {
  const log = options.log ?? (() => {});
  const files = definitionFiles();
  const hash = createHash('sha256');
  for (const file of files) hash.update(`${file.name}\0${file.sql}\0`);
  const checksum = hash.digest('hex');
  const started = Date.now();
  const sql = postgres(databaseUrl, {
    max: 1,
    onnotice: (notice) => log(`  notice: ${notice.message}`),
    connection: { application_name: 'kpi-history-definitions' },
  });
  try {
    return await sql.begin(async (tx) => {
      await tx.unsafe(`set local lock_timeout = '${options.lockTimeout ?? '10s'}'`);
      // The "does not exist, skipping" of every idempotent drop is no news.
      await tx`set local client_min_messages = warning`;
      // One apply at a time: a second one waits, then finds nothing changed.
      await tx`select pg_advisory_xact_lock(1263552840, 2)`;
      const [state] = await tx<{ checksum: string; migration_version: string | null; applied_at: Date }[]>`
        select checksum, migration_version, applied_at from kpi.definitions_state`;
      const [{ version }] = await tx<[{ version: string | null }]>`
        select (select max(version) from public.schema_migrations) as version`;
      if (!options.force && state && state.checksum === checksum && state.migration_version === version) {
        log(`definitions: unchanged since ${state.applied_at.toISOString()} (${files.length} files, checksum ${checksum.slice(0, 12)})`);
        return { applied: false, checksum, files: files.map((f) => f.name), ms: Date.now() - started };
      }
      for (const file of files) {
        const fileStarted = Date.now();
        try {
          await tx.unsafe(file.sql);
        } catch (error) {
          const e = error as postgres.PostgresError;
          const line = lineOf(file.sql, Number(e.position));
          const where = `db/definitions/${file.name}${line ? `:${line}` : ''}`;
          if (e.code === '55P03') {
            throw new DefinitionError(
              `${where}: could not take a lock within ${options.lockTimeout ?? '10s'} — a long run holds it ` +
                '(select pid, state, query from pg_stat_activity where wait_event_type is null); nothing was changed, run the migration again',
            );
          }
          throw new DefinitionError(`${where}: ${e.message}${e.detail ? ` (${e.detail})` : ''}; nothing was changed`);
        }
        log(`definitions: applied ${file.name} (${Date.now() - fileStarted} ms)`);
      }
      await tx`
        insert into kpi.definitions_state (checksum, migration_version, files)
        values (${checksum}, ${version}, ${tx.json(files.map((f) => f.name))})
        on conflict (singleton) do update set checksum = excluded.checksum, migration_version = excluded.migration_version,
          files = excluded.files, applied_at = clock_timestamp(), applied_by = current_user`;
      // PostgREST reloads its schema cache.
      await tx`notify pgrst, 'reload schema'`;
      return { applied: true, checksum, files: files.map((f) => f.name), ms: Date.now() - started };
    });
  } finally {
    await sql.end();
  }
}

const USAGE = 'usage: tsx scripts/definitions.ts [--force] [--quiet]   (applies db/definitions/*.sql to DATABASE_URL)';

async function main(): Promise<void> {
  const { values } = parseCli({
    name: 'definitions',
    help: `${USAGE}

Applies every file of db/definitions/ in one transaction, unless the database already has this
very set (its checksum) after its newest migration; --force applies them anyway. npm run db:migrate
runs it after the migrations.`,
    options: { force: { type: 'boolean' }, quiet: { type: 'boolean' } },
  });
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error(`definitions: DATABASE_URL is not set\n${USAGE}`);
    process.exit(2);
  }
  try {
    const result = await applyDefinitions(url, { force: values.force, log: values.quiet ? undefined : (line) => console.error(line) });
    if (result.applied) console.error(`definitions: ${result.files.length} files applied in ${result.ms} ms`);
  } catch (error) {
    if (error instanceof DefinitionError) {
      console.error(`definitions: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
