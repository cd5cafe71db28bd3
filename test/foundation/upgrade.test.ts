// The upgrade to the definitions layout: a database migrated through the seventeen migrations
// before the baseline (test/fixtures/migrations-before-baseline/, release 7a3aaf2 as it was),
// populated by that release's own functions, is migrated with this release. Its schema then
// equals a new install's, and its history, anomalies, custom values, change log and run log are
// unchanged.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect, type Sql } from '../helpers/database.js';
import { databaseUrl, dbmate, migrate, projectRoot } from '../helpers/dbmate.js';
import { TEST_DATABASE_MARK } from '../setup/database.js';

const info = inject('testDatabase');
const name = `kpi_test_upgrade_${process.pid}`;
const url = databaseUrl(info.serverUrl, name);
let admin: Sql;
let sql: Sql;

function psql(target: string, ...args: string[]): void {
  const run = spawnSync('psql', [target, '-X', '-q', '-v', 'ON_ERROR_STOP=1', ...args], { cwd: projectRoot, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`psql ${args.join(' ')}: ${run.stderr}`);
}

/** A schema dump without what differs between two databases of the same schema. */
function dump(target: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'kpi-upgrade-'));
  try {
    const file = join(dir, 'schema.sql');
    dbmate(target, '--schema-file', file, 'dump');
    return readFileSync(file, 'utf8')
      .split(/\n(?=--\n-- Name: )/)
      // pg_cron exists only in the database cron.database_name names; the versions dbmate records
      // differ by design (the seventeen before the baseline, or the baseline alone).
      .filter((entry) => !/^--\n-- Name: (EXTENSION )?pg_cron;/.test(entry))
      .join('\n')
      .replace(/^\\(un)?restrict .*$/gm, '')
      .replace(/^INSERT INTO public\.schema_migrations[\s\S]*$/m, '')
      .replace(/\n{3,}/g, '\n\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const snapshot = async () => ({
  history: await sql`select * from kpi.kpi_history order by tenant_id, as_of`,
  anomalies: await sql`select * from kpi.kpi_anomalies order by tenant_id, as_of, kpi`,
  alerts: await sql`select * from kpi.alerts order by tenant_id, id`,
  custom: await sql`select * from kpi.custom_kpi_weeks order by tenant_id, as_of`,
  definitions: await sql`select tenant_id, key, label, revision, derived_revision from kpi.custom_kpis order by 1, 2`,
  // The columns of before: entries written then keep their JSON (later ones keep the row instead).
  changes: await sql`select tenant_id, txid, seq, entity, op, as_of, kpi, data, changed_at from kpi.kpi_changes order by txid, seq`,
  runs: await sql`select id, kind, status, ok_count, total_count, rows_written, errors from kpi.kpi_runs order by id`,
  sources: (await sql`select (select count(*) from kpi.avi_reports) as avi, (select count(*) from kpi.vli_audits) as vli,
                             (select count(*) from kpi.clarity_reports) as clarity, (select count(*) from kpi.source_changes) as stale`)[0]!,
});

beforeAll(async () => {
  admin = connect(info.serverUrl, { max: 1 });
  await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.unsafe(`create database "${name}"`);
  await admin.unsafe(`comment on database "${name}" is '${TEST_DATABASE_MARK}'`);
  // The previous release: its migrations, then data written by its own functions.
  execFileSync(`${projectRoot}node_modules/.bin/dbmate`, ['--migrations-dir', 'test/fixtures/migrations-before-baseline', '--no-dump-schema', 'up'], {
    cwd: projectRoot,
    env: { ...process.env, DATABASE_URL: `${url}?sslmode=disable` },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  psql(url, '-f', 'db/seed/demo.sql');
  sql = connect(url, { max: 1 });
  await sql`select kpi.backfill_kpi_history()`;
  await sql`
    insert into kpi.custom_kpis (tenant_id, key, label, source, path, aggregate)
    values ('00000000-0000-4000-a000-00000000ac01', 'tokens', 'Tokens sampled', 'clarity', '{tokens_sampled}', 'max')`;
  await sql`select kpi.fill_all_kpi_history()`;
  await sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
            values ('00000000-0000-4000-a000-00000000ac01', '2026-11-30', 70, 60, 50, 1500)`;
}, 120_000);

afterAll(async () => {
  await sql?.end();
  await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
});

describe('upgrading a populated database from the release before the baseline', () => {
  it('keeps every row and ends with the schema of a new install; the next fill carries on', async () => {
    const before = await snapshot();
    expect(before.history.length).toBeGreaterThan(30);
    expect(before.anomalies.length).toBe(2);
    expect(before.custom.length).toBeGreaterThan(0);
    expect(before.changes.length).toBeGreaterThan(30);
    expect(Number(before.sources.stale)).toBe(1); // acme's new week, recorded for the next run

    await migrate(url);

    expect(await snapshot()).toEqual(before);
    const upgraded = dump(url);
    const fresh = dump(databaseUrl(info.serverUrl, info.templateDatabase));
    if (upgraded !== fresh) writeFileSync(join(tmpdir(), 'kpi-upgrade-diff.txt'), `${upgraded}\n=====\n${fresh}`);
    expect(upgraded).toBe(fresh);
    // The change record made before the upgrade is consumed by the first run after it.
    const [{ run }] = await sql<[{ run: { rows_written: number; status: string } }]>`select kpi.fill_all_kpi_history() as run`;
    expect(run).toMatchObject({ status: 'partial', rows_written: 1 }); // initech: NO_AVI
  });

  it('a database migrated only part of the way is refused by the baseline, with what to do', async () => {
    const partial = `${name}_partial`;
    await admin.unsafe(`drop database if exists "${partial}" with (force)`);
    await admin.unsafe(`create database "${partial}"`);
    await admin.unsafe(`comment on database "${partial}" is '${TEST_DATABASE_MARK}'`);
    try {
      const target = databaseUrl(info.serverUrl, partial);
      psql(target, '-c', 'create schema kpi; create table public.schema_migrations (version varchar(128) primary key); insert into public.schema_migrations values (\'20261201000500\')');
      expect(() => dbmate(target, '--no-dump-schema', 'up')).toThrow(/migrations up to 20261201000900[\s\S]*7a3aaf2/);
    } finally {
      await admin.unsafe(`drop database if exists "${partial}" with (force)`);
    }
  });
});
