// Docker cannot run on every machine the tests run on, so the compose stack is checked against the
// SQL instead: the names PostgREST is configured with must exist, with the right properties.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { postgrestEnvironment } from '../helpers/postgrest.js';
import { workerConfig } from '../../scripts/worker.js';

const db = useTestDatabase();
const compose = parse(readFileSync(`${projectRoot}docker-compose.yml`, 'utf8'));
const env = postgrestEnvironment();

function dotenvExample(): Record<string, string> {
  const entries = readFileSync(`${projectRoot}.env.example`, 'utf8')
    .split('\n')
    .filter((line) => /^[A-Z_]+=/.test(line))
    .map((line) => line.split(/=(.*)/s).slice(0, 2) as [string, string]);
  return Object.fromEntries(entries);
}

describe('docker-compose.yml', () => {
  it('runs db from db/Dockerfile, the migrations and definitions, the cron secret installer, PostgREST v16.2 (the version the replay follows) and the worker', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['cron-secret', 'db', 'migrate', 'postgrest', 'worker']);
    expect(compose.services['cron-secret'].image).toBe(compose.services.db.image);
    expect(compose.services['cron-secret'].command).toEqual(['bash', '/app/scripts/cron-secret.sh', 'install']);
    expect(compose.services.db.build).toBe('./db');
    // The same path as npm run db:migrate: the migrations, then db/definitions.
    expect(compose.services.migrate).toMatchObject({ build: '.', command: ['bash', 'scripts/migrate.sh'] });
    expect(compose.services.migrate.environment.DATABASE_URL).toMatch(/@db:5432\/kpi_history/);
    // v12's admin server served /config (the JWT secret and the database password); the replay
    // in test/helpers/postgrest/ follows v16.2's source. A new version means reading it again.
    expect(compose.services.postgrest.image).toBe('postgrest/postgrest:v16.2');
  });

  it('PostgREST logs in as authenticator, a LOGIN NOINHERIT role granted the anon role', async () => {
    const user = new URL(env.PGRST_DB_URI!.replace(/\$\{[^}]+\}/g, 'x')).username;
    expect(user).toBe('authenticator');
    const [role] = await db.sql`
      select rolcanlogin, rolinherit, pg_has_role(${user}, ${env.PGRST_DB_ANON_ROLE!}, 'member') as can_be_anon
      from pg_roles where rolname = ${user}`;
    expect(role).toEqual({ rolcanlogin: true, rolinherit: false, can_be_anon: true });
  });

  it('the anon role exists and cannot log in', async () => {
    const [role] = await db.sql`select rolcanlogin from pg_roles where rolname = ${env.PGRST_DB_ANON_ROLE!}`;
    expect(role).toEqual({ rolcanlogin: false });
  });

  it('exposes exactly the api schema, which holds no tables', async () => {
    expect(env.PGRST_DB_SCHEMAS).toBe('api');
    const tables = await db.sql`
      select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'api' and c.relkind not in ('v', 'm')`;
    expect(tables).toEqual([]);
  });

  it('names a pre-request function that exists and that both API roles may execute, if any', async () => {
    if (!env.PGRST_DB_PRE_REQUEST) return expect(env.PGRST_DB_PRE_REQUEST).toBeUndefined();
    const [fn] = await db.sql`
      select has_function_privilege('anon', ${env.PGRST_DB_PRE_REQUEST}::regproc, 'execute') as anon,
             has_function_privilege('authenticated', ${env.PGRST_DB_PRE_REQUEST}::regproc, 'execute') as authenticated`;
    expect(fn).toEqual({ anon: true, authenticated: true });
  });

  it('limits rows and serves /live and /ready on an admin port', () => {
    expect(Number(env.PGRST_DB_MAX_ROWS)).toBeGreaterThan(0);
    expect(Number(env.PGRST_ADMIN_SERVER_PORT)).toBeGreaterThan(0);
  });

  it('takes every secret from .env, and .env.example gives each one (JWT secret ≥ 32 characters)', () => {
    const example = dotenvExample();
    expect(env.PGRST_JWT_SECRET).toMatch(/^\$\{PGRST_JWT_SECRET:\?/);
    expect(example.PGRST_JWT_SECRET!.length).toBeGreaterThanOrEqual(32);
    expect(example.CRON_SECRET!.length).toBeGreaterThanOrEqual(32);
    const referenced = [...readFileSync(`${projectRoot}docker-compose.yml`, 'utf8').matchAll(/\$\{([A-Z_]+)/g)].map(
      (m) => m[1],
    );
    for (const name of new Set(referenced)) expect(example, name).toHaveProperty(name!);
  });

  it('the db image preloads pg_cron and schedules in the database compose creates', () => {
    const dockerfile = readFileSync(`${projectRoot}db/Dockerfile`, 'utf8');
    // The container runs the major the tests run on here; CI's workflow tests the others it names.
    const [, major] = /^ARG PG_MAJOR=(\d+)$/m.exec(dockerfile) ?? [];
    expect(dockerfile).toMatch(/^FROM postgres:\$\{PG_MAJOR\}-bookworm$/m);
    expect(Number(major)).toBe(15);
    const workflow = readFileSync(`${projectRoot}.github/workflows/ci.yml`, 'utf8');
    expect(workflow).toMatch(/postgres: \[15, 17\]/);
    expect(dockerfile).toContain('shared_preload_libraries=pg_cron');
    expect(dockerfile).toContain(`cron.database_name=${compose.services.db.environment.POSTGRES_DB}`);
    expect(compose.services.migrate.environment.DATABASE_URL).toContain(`/${compose.services.db.environment.POSTGRES_DB}?`);
  });
  it('builds the application image with what scripts/migrate.sh and the worker read', () => {
    const dockerfile = readFileSync(`${projectRoot}Dockerfile`, 'utf8');
    expect(dockerfile).toMatch(/^FROM node:20/m);
    expect(dockerfile).toMatch(/^RUN npm ci/m);
    for (const path of ['db', 'scripts', 'sdk']) expect(dockerfile).toMatch(new RegExp(`^COPY ${path} \\./${path}$`, 'm'));
    for (const path of ['node_modules', '.env', '.data']) expect(readFileSync(`${projectRoot}.dockerignore`, 'utf8').split('\n')).toContain(path);
  });

  it('runs the worker from the same .env as PostgREST: the stream on, alerts only when both webhook variables are set, healthy on /v1/health', () => {
    const worker = compose.services.worker;
    expect(worker.image).toBe(compose.services.migrate.image);
    expect(worker.environment.PGRST_JWT_SECRET).toBe(env.PGRST_JWT_SECRET);
    expect(worker.depends_on).toEqual({ migrate: { condition: 'service_completed_successfully' } });
    expect(worker.healthcheck.test.join(' ')).toContain(`127.0.0.1:${worker.environment.KPI_STREAM_PORT}/v1/health`);
    // The worker's environment as compose hands it over with .env.example's values: accepted.
    const example = dotenvExample();
    const handed = Object.fromEntries(
      Object.entries(worker.environment as Record<string, string>).map(([name, value]) => [
        name,
        value.replace(/\$\{([A-Z_]+)(?::[-?][^}]*)?\}/g, (_all, variable: string) => example[variable] ?? ''),
      ]),
    );
    const config = workerConfig(handed);
    expect(config.alerts).toBeNull();
    expect(config.stream).toMatchObject({ host: '0.0.0.0', port: 3002 });
    expect(workerConfig({ ...handed, KPI_ALERT_WEBHOOK_URL: 'https://hooks.example.com/kpi', KPI_ALERT_WEBHOOK_SECRET: 'x'.repeat(32) }).alerts).not.toBeNull();
  });
});
