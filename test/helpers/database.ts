// Per-file databases: each test file works in its own clone of the migrated template, so files run
// in parallel and never see each other's data.
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, inject } from 'vitest';
import { databaseUrl } from './dbmate.js';

export type Sql = postgres.Sql;

export interface TestDatabase {
  /** Connection as the superuser that owns everything (the migrating role). */
  sql: Sql;
  url: string;
  name: string;
  /** Connection URL for another role of the same database (e.g. `authenticator`). */
  urlAs(role: string): string;
}

export function connect(url: string, options: postgres.Options<{}> = {}): Sql {
  return postgres(url, { max: 4, onnotice: () => {}, ...options });
}

function roleUrl(url: string, role: string): string {
  const parsed = new URL(url);
  parsed.username = role;
  parsed.password = '';
  return parsed.toString();
}

/**
 * Creates a clone of the migrated template for this file (dropped afterwards). The returned object
 * is filled in `beforeAll`, so read its fields inside tests and hooks.
 */
export function useTestDatabase(): TestDatabase {
  const info = inject('testDatabase');
  const name = `kpi_test_${randomBytes(6).toString('hex')}`;
  const url = databaseUrl(info.serverUrl, name);
  const db = { name, url, urlAs: (role: string) => roleUrl(url, role) } as TestDatabase;
  let admin: Sql;
  beforeAll(async () => {
    admin = connect(info.serverUrl, { max: 1 });
    await admin.unsafe(`create database "${name}" template "${info.templateDatabase}"`);
    // Set per database: CREATE DATABASE does not copy the template's own settings.
    if (info.serverTimeZone) await admin.unsafe(`alter database "${name}" set timezone = '${info.serverTimeZone}'`);
    db.sql = connect(url);
  });
  afterAll(async () => {
    await db.sql?.end();
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
    await admin.end();
  });
  return db;
}

/** The pg_cron database (shared by the run: only scheduling tests use it), or why there is none. */
export function cronDatabase(): { url: string | null; reason: string | null } {
  const info = inject('testDatabase');
  return info.cronDatabase
    ? { url: databaseUrl(info.serverUrl, info.cronDatabase), reason: null }
    : { url: null, reason: info.cronUnavailableReason };
}
