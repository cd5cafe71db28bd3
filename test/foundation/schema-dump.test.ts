// db/schema.sql is the reviewable picture of the schema. It must be what the migrations produce:
// a migration committed without its dump (or a hand-edited dump) fails here.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { dbmate, projectRoot } from '../helpers/dbmate.js';

const db = useTestDatabase();

/**
 * Leaves out what differs between servers but not between schemas: the server and pg_dump versions,
 * pg_dump's random \restrict key, and the pg_cron extension, which exists only in the database
 * named by cron.database_name.
 */
function normalize(dump: string): string {
  return dump
    .split(/\n(?=--\n-- Name: )/)
    .filter((entry) => !/^--\n-- Name: (EXTENSION )?pg_cron;/.test(entry))
    .join('\n')
    .replace(/^-- Dumped (from database|by pg_dump) version .*\n/gm, '')
    .replace(/^\\(un)?restrict .*$/gm, '\\$1restrict')
    .replace(/\n{3,}/g, '\n\n');
}

it('db/schema.sql matches a dump of the migrated database (run `npm run db:migrate` to refresh it)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kpi-schema-'));
  try {
    const file = join(dir, 'schema.sql');
    dbmate(db.url, '--schema-file', file, 'dump');
    const fresh = normalize(readFileSync(file, 'utf8'));
    const committed = normalize(readFileSync(`${projectRoot}db/schema.sql`, 'utf8'));
    expect(fresh).toContain('CREATE TABLE kpi.kpi_history');
    expect(committed).toBe(fresh);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
