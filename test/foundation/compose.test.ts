// Docker cannot run on every machine the tests run on, so the compose stack is checked against the
// SQL instead: the names PostgREST is configured with must exist, with the right properties.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { postgrestEnvironment } from '../helpers/postgrest.js';

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
  it('runs db from db/Dockerfile, dbmate migrations, the cron secret installer and PostgREST v16.2 (the version the replay follows)', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['cron-secret', 'db', 'migrate', 'postgrest']);
    expect(compose.services['cron-secret'].image).toBe(compose.services.db.image);
    expect(compose.services['cron-secret'].command).toEqual(['bash', '/app/scripts/cron-secret.sh', 'install']);
    expect(compose.services.db.build).toBe('./db');
    expect(compose.services.migrate.image).toMatch(/dbmate/);
    expect(compose.services.migrate.volumes).toContain('./db:/db:ro');
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
});
