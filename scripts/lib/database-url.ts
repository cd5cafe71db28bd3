// The database a script works on: DATABASE_URL, or the local cluster of scripts/db.sh.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export function databaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.DATABASE_URL ?? execFileSync('bash', [fileURLToPath(new URL('../db.sh', import.meta.url)), 'url'], { encoding: 'utf8' }).trim();
}
