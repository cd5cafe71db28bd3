// Vitest global setup: finds a PostgreSQL server with pg_cron for the run, migrates a template
// database that every test file clones, and migrates the pg_cron database for the scheduling tests.
//
// Where the server comes from, in order:
//   1. TEST_DATABASE_URL — a server you provide. The tests only ever write to databases they
//      created themselves on it (marked with a COMMENT): never to the database the URL names, nor
//      to a pg_cron database they did not create. Its role needs CREATEDB.
//   2. the project's own throwaway cluster (.data/test-pg, port 54339), started by scripts/db.sh;
//   3. a container built from db/Dockerfile, when a Docker engine answers (testcontainers).
//
// KPI_TEST_SERVER_TIMEZONE sets the TimeZone of every test database (the time-zone test runs a
// subset of the suite with it); KPI_TEST_NO_CRON=1 leaves the pg_cron database alone.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { databaseUrl, migrate } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';

export interface TestDatabaseInfo {
  /** How the server was obtained, for the run's first line. */
  source: string;
  /** A URL on the server whose role may create databases; its path is replaced per database. */
  serverUrl: string;
  /** The migrated database every test file clones. */
  templateDatabase: string;
  /** The database pg_cron runs its jobs in, migrated; null when the server has no pg_cron. */
  cronDatabase: string | null;
  /** Why cronDatabase is null. */
  cronUnavailableReason: string | null;
  /** The TimeZone every test database gets, when set (KPI_TEST_SERVER_TIMEZONE). */
  serverTimeZone: string | null;
}

declare module 'vitest' {
  export interface ProvidedContext {
    testDatabase: TestDatabaseInfo;
  }
}

const root = fileURLToPath(new URL('../..', import.meta.url));
// One template per run: two runs on one server (the time-zone test runs one inside another) never
// drop each other's.
const TEMPLATE = `kpi_test_template_${randomBytes(4).toString('hex')}`;

/** The COMMENT on every database the tests create: the only databases they may write to or drop. */
export const TEST_DATABASE_MARK = 'kpi-history test database: created by the test harness, disposable';

async function markAsOurs(admin: postgres.Sql, name: string): Promise<void> {
  await admin.unsafe(`comment on database "${name}" is '${TEST_DATABASE_MARK}'`);
}

async function isOurs(admin: postgres.Sql, name: string): Promise<boolean> {
  const [row] = await admin<{ mark: string | null }[]>`
    select shobj_description(oid, 'pg_database') as mark from pg_database where datname = ${name}`;
  return row?.mark === TEST_DATABASE_MARK;
}

interface Server {
  source: string;
  serverUrl: string;
  /** A database the tests may wipe and re-create; it is the pg_cron database when one exists. */
  disposableCronDatabase: string | null;
  /** A server the tests did not start: they write only to databases they create on it. */
  given?: boolean;
  stop?: () => Promise<void>;
  /** Restarts a server whose pg_cron launcher is gone (only the local cluster can). */
  restart?: () => Promise<void>;
}

async function localCluster(): Promise<Server> {
  const name = 'kpi_test';
  const env = { ...process.env, KPI_DB_DIR: `${root}.data/test-pg`, KPI_DB_NAME: name, KPI_DB_FAST: '1' };
  const dbsh = (command: string, port: number) =>
    execFileSync('bash', ['scripts/db.sh', command], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...env, KPI_DB_PORT: String(port) },
    });
  let port = Number(process.env.KPI_TEST_DB_PORT ?? 54339);
  const ourClusterRuns = (() => {
    try {
      dbsh('status', port);
      return true;
    } catch {
      return false;
    }
  })();
  // Another checkout's test cluster (or anything else) may hold the default port: take the next free one.
  if (!ourClusterRuns && !process.env.KPI_TEST_DB_PORT) {
    port = await freePort(port);
  }
  dbsh('up', port);
  return {
    restart: async () => {
      dbsh('down', port);
      dbsh('up', port);
    },
    source: `the project's test cluster (.data/test-pg, 127.0.0.1:${port})`,
    serverUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    disposableCronDatabase: name,
  };
}

async function container(): Promise<Server> {
  // Imported only here: it is heavy, and useless without a Docker engine.
  const { GenericContainer, Wait } = await import('testcontainers');
  const image = await GenericContainer.fromDockerfile(`${root}db`).build('kpi-history-test-db', {
    deleteOnExit: false,
  });
  const started = await image
    .withEnvironment({ POSTGRES_PASSWORD: 'postgres', POSTGRES_DB: 'kpi_history' })
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  return {
    source: `a container built from db/Dockerfile (${started.getHost()}:${started.getMappedPort(5432)})`,
    serverUrl: `postgres://postgres:postgres@${started.getHost()}:${started.getMappedPort(5432)}/postgres`,
    disposableCronDatabase: 'kpi_history',
    stop: async () => {
      await started.stop();
    },
  };
}

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

async function findServer(): Promise<Server> {
  const given = process.env.TEST_DATABASE_URL;
  if (given) {
    return { source: `TEST_DATABASE_URL (${new URL(given).host})`, serverUrl: given, disposableCronDatabase: null, given: true };
  }
  try {
    return await localCluster();
  } catch (localError) {
    if (await dockerAnswers()) return container();
    throw new Error(
      'No database for the tests: scripts/db.sh could not start the local cluster (see above), ' +
        'no Docker engine answers, and TEST_DATABASE_URL is not set.',
      { cause: localError },
    );
  }
}

/**
 * On a server given by TEST_DATABASE_URL, the pg_cron database may be used only when the tests
 * created it: one that does not exist yet is created (and marked) here.
 */
async function cronDatabaseOnGivenServer(admin: postgres.Sql, serverUrl: string, cronSetting: string | null) {
  if (!cronSetting) return { name: null, reason: 'the server given by TEST_DATABASE_URL does not preload pg_cron' };
  const [exists] = await admin`select 1 from pg_database where datname = ${cronSetting}`;
  if (!exists) {
    await admin.unsafe(`create database "${cronSetting}"`);
    await markAsOurs(admin, cronSetting);
  } else if (!(await isOurs(admin, cronSetting))) {
    return {
      name: null,
      reason: `pg_cron runs in "${cronSetting}" on the server of TEST_DATABASE_URL, a database these tests did not create: they never write to it`,
    };
  }
  const cron = postgres(databaseUrl(serverUrl, cronSetting), { max: 1, onnotice: () => {} });
  try {
    await cron.unsafe('create extension if not exists pg_cron');
  } finally {
    await cron.end();
  }
  return { name: cronSetting, reason: null };
}

export default async function setup(project: TestProject) {
  const server = await findServer();
  console.log(`[kpi-history tests] database server: ${server.source}`);

  const admin = postgres(server.serverUrl, { max: 1, onnotice: () => {} });
  try {
    if (server.given) {
      const [role] = await admin<{ name: string; can: boolean }[]>`
        select current_user as name, rolcreatedb or rolsuper as can from pg_roles where rolname = current_user`;
      if (!role?.can) {
        throw new Error(
          `TEST_DATABASE_URL: role ${role?.name} cannot create databases. The tests write only to databases they ` +
            'create themselves (never to the one the URL names): grant it CREATEDB, or unset TEST_DATABASE_URL to use ' +
            "the project's own throwaway cluster.",
        );
      }
      const named = new URL(server.serverUrl).pathname.slice(1) || '(none)';
      console.log(`[kpi-history tests] TEST_DATABASE_URL: creating the tests' own databases (${TEMPLATE}, kpi_test_*) on that server; "${named}" is not written to`);
    }
    const [{ cron_database: cronSetting } = { cron_database: null }] = await admin<
      { cron_database: string | null }[]
    >`select current_setting('cron.database_name', true) as cron_database`;

    let cronDatabase: string | null = null;
    let cronUnavailableReason: string | null = null;
    if (process.env.KPI_TEST_NO_CRON === '1') {
      cronUnavailableReason = 'KPI_TEST_NO_CRON=1 (a run inside another run leaves the pg_cron database to the outer one)';
    } else if (server.disposableCronDatabase) {
      // A clean pg_cron database each run: no jobs, run details or data left from an earlier run.
      // It is emptied in place, not dropped: dropping it stops pg_cron's launcher for good.
      const name = server.disposableCronDatabase;
      const cron = postgres(databaseUrl(server.serverUrl, name), { max: 1, onnotice: () => {} });
      let launcherRuns = false;
      try {
        await cron.unsafe(`
          create extension if not exists pg_cron;
          do $$
          declare s text;
          begin
            for s in select nspname from pg_namespace
                     where nspname not in ('public', 'cron', 'information_schema') and nspname not like 'pg\\_%'
            loop
              execute format('drop schema %I cascade', s);
            end loop;
          end $$;
          drop table if exists public.schema_migrations;
          delete from cron.job;
          delete from cron.job_run_details;`);
        // A launcher that started before this database existed retries about once a second.
        for (let i = 0; i < 20 && !launcherRuns; i++) {
          const found = await cron`select 1 from pg_stat_activity where backend_type = 'pg_cron launcher'`;
          launcherRuns = found.length > 0;
          if (!launcherRuns) await new Promise((resolve) => setTimeout(resolve, 250));
        }
      } finally {
        await cron.end();
      }
      if (!launcherRuns) await server.restart?.();
      await migrate(databaseUrl(server.serverUrl, name));
      cronDatabase = name;
    } else {
      const found = await cronDatabaseOnGivenServer(admin, server.serverUrl, cronSetting);
      if (found.name) await migrate(databaseUrl(server.serverUrl, found.name));
      cronDatabase = found.name;
      cronUnavailableReason = found.reason;
    }

    await admin.unsafe(`create database "${TEMPLATE}"`);
    await markAsOurs(admin, TEMPLATE);
    await migrate(databaseUrl(server.serverUrl, TEMPLATE));

    project.provide('testDatabase', {
      source: server.source,
      serverUrl: server.serverUrl,
      templateDatabase: TEMPLATE,
      cronDatabase,
      cronUnavailableReason,
      serverTimeZone: process.env.KPI_TEST_SERVER_TIMEZONE || null,
    });
  } finally {
    await admin.end();
  }

  return async () => {
    const cleanup = postgres(server.serverUrl, { max: 1, onnotice: () => {} });
    try {
      await cleanup.unsafe(`drop database if exists "${TEMPLATE}" with (force)`);
    } finally {
      await cleanup.end();
    }
    await server.stop?.();
  };
}
