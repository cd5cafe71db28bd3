// Runs the project's migrations the way `npm run db:migrate` does (dbmate, then the definitions),
// so the tests exercise the very files a deployment applies.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { applyDefinitions } from '../../scripts/definitions.js';

export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));

/** The same server URL pointed at another database. */
export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

function forDbmate(url: string): string {
  const parsed = new URL(url);
  // dbmate asks for TLS unless told otherwise; the test servers listen on loopback without it.
  if (!parsed.searchParams.has('sslmode')) parsed.searchParams.set('sslmode', 'disable');
  return parsed.toString();
}

export function dbmate(url: string, ...args: string[]): string {
  return execFileSync(`${projectRoot}node_modules/.bin/dbmate`, ['--migrations-dir', 'db/migrations', ...args], {
    cwd: projectRoot,
    env: { ...process.env, DATABASE_URL: forDbmate(url) },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Applies every pending migration, then the definitions, without touching the committed db/schema.sql. */
export async function migrate(url: string): Promise<void> {
  dbmate(url, '--no-dump-schema', 'up');
  await applyDefinitions(url);
}
