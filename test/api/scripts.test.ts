// The operator commands around the API: the smoke script (in psql mode, as `npm test` runs it),
// the cron secret installer, and the development token minter.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { mintToken } from '../../scripts/token.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';
import { connectAsAuthenticator, createReplay, TEST_JWT_SECRET, verifyJwt } from '../helpers/postgrest.js';
import { serveReplay } from '../helpers/postgrest/http.js';

const db = useTestDatabase();
const SECRET = 'smoke-test-cron-secret-0123456789abcdef';

function run(command: string[], env: Record<string, string | undefined> = {}) {
  const result = spawnSync(command[0]!, command.slice(1), {
    cwd: projectRoot,
    encoding: 'utf8',
    env: { ...process.env, DATABASE_URL: db.url, ...env },
  });
  return { code: result.status, out: result.stdout + result.stderr };
}

/** Like run, without blocking this process (which may be serving the requests). */
function runAsync(command: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { cwd: projectRoot, env: { ...process.env, DATABASE_URL: db.url, ...env } });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    child.on('close', (code) => resolve({ code, out }));
  });
}

beforeAll(() => {
  // The seed is a psql script (it holds its own transaction), as `npm start` runs it.
  expect(run(['psql', db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', 'db/seed/demo.sql']).code).toBe(0);
});

describe('npm run db:seed', () => {
  it('into a DATABASE_URL it did not create: refused without --yes, nothing changed; with --yes it says what it replaces, then seeds', async () => {
    const before = await db.sql`select id, created_at from kpi.tenants order by id`;
    const refused = run(['bash', 'scripts/seed.sh']);
    expect(refused.code).toBe(2);
    expect(refused.out).toContain('DATABASE_URL is set: that database was not created by this project');
    expect(refused.out).toContain('usage: npm run db:seed');
    expect(await db.sql`select id, created_at from kpi.tenants order by id`).toEqual(before);

    await db.sql`select kpi.backfill_kpi_history()`;
    const seeded = run(['bash', 'scripts/seed.sh', '--yes']);
    expect(seeded.code, seeded.out).toBe(0);
    expect(seeded.out).toMatch(/replacing the demo tenants: deleting acme \(8 history weeks, 0 custom KPIs, \d+ anomalies, 8 AVI reports\), globex/);
    expect(seeded.out).toContain('seeded: acme, globex, initech, umbrella, hooli');
  });
});

describe('scripts/cron-secret.sh', () => {
  const active = async () => (await db.sql`select count(*)::int as n from kpi.cron_secrets where retired_at is null`)[0]!.n;

  it('refuses a missing or short CRON_SECRET with the command to make one', () => {
    expect(run(['bash', 'scripts/cron-secret.sh', 'install'], { CRON_SECRET: '' })).toMatchObject({
      code: 1,
      out: expect.stringContaining('CRON_SECRET is not set'),
    });
    const short = run(['bash', 'scripts/cron-secret.sh', 'install'], { CRON_SECRET: 'x'.repeat(31) });
    expect(short.code).toBe(1);
    expect(short.out).toContain('at least 32 characters (it has 31)');
    expect(short.out).toContain('openssl rand -base64 48');
  });

  it('install leaves exactly the given secret active, even mid-rotation with a newer one active (compose runs it on every start)', async () => {
    const old = 'the-old-secret-being-rotated-away-000000';
    const newer = 'the-newer-secret-added-by-rotate-1111111';
    const matches = async (secret: string) =>
      (await db.sql`select kpi_api.cron_secret_matches(${secret}) as ok`)[0]!.ok as boolean;
    expect(run(['bash', 'scripts/cron-secret.sh', 'install'], { CRON_SECRET: old }).code).toBe(0);
    expect(run(['bash', 'scripts/cron-secret.sh', 'rotate'], { CRON_SECRET: newer }).code).toBe(0);
    expect(await active()).toBe(2);
    // Install the older one again, as a restart with an unchanged .env would.
    const again = run(['bash', 'scripts/cron-secret.sh', 'install'], { CRON_SECRET: old });
    expect(again.code).toBe(0);
    expect(again.out).not.toContain(old);
    expect(await active()).toBe(1);
    expect(await matches(old)).toBe(true);
    expect(await matches(newer)).toBe(false);
    // Installing what is already the only secret changes nothing.
    expect(run(['bash', 'scripts/cron-secret.sh', 'install'], { CRON_SECRET: old }).code).toBe(0);
    expect(await active()).toBe(1);
    expect(await matches(old)).toBe(true);
  });

  it('installs, rotates and retires, printing no secret', async () => {
    const install = run(['bash', 'scripts/cron-secret.sh', 'install'], { CRON_SECRET: 'first-secret-'.padEnd(40, '1') });
    expect(install.code).toBe(0);
    expect(await active()).toBe(1);
    const rotate = run(['bash', 'scripts/cron-secret.sh', 'rotate'], { CRON_SECRET: SECRET });
    expect(rotate.code).toBe(0);
    expect(await active()).toBe(2);
    expect(run(['bash', 'scripts/cron-secret.sh', 'retire']).code).toBe(0);
    expect(await active()).toBe(1);
    const [{ matches }] = await db.sql<[{ matches: boolean }]>`
      select kpi.cron_secret_hash(salt, ${SECRET}) = secret_sha256 as matches from kpi.cron_secrets where retired_at is null`;
    expect(matches).toBe(true);
    expect(install.out + rotate.out).not.toMatch(/first-secret|smoke-test-cron-secret/);
  });
});

/** The smoke test's secret, the only one active (whatever another test installed or rotated). */
const installSmokeSecret = () => expect(run(['bash', 'scripts/cron-secret.sh', 'install'], { CRON_SECRET: SECRET }).code).toBe(0);

describe('scripts/test-kpi-history.sh (psql mode)', () => {
  beforeEach(installSmokeSecret);

  it('passes every check against the demo data', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    const result = run(['bash', 'scripts/test-kpi-history.sh'], { CRON_SECRET: SECRET, BASE_URL: '' });
    expect(result.out).toContain('all checks passed');
    expect(result.out.match(/^ok {4}/gm)).toHaveLength(7);
    expect(result.code).toBe(0);
  });

  it('keeps the cron secret out of the server log, even with log_statement = all', async (ctx) => {
    const [{ dir }] = await db.sql<[{ dir: string }]>`select current_setting('data_directory') as dir`;
    const log = `${dir}.log`; // scripts/db.sh's clusters log beside their data directory
    if (!existsSync(log)) {
      console.warn(`[kpi-history tests] server-log test — not run: no server log at ${log} (a server the tests did not start)`);
      ctx.skip();
    }
    await db.sql.unsafe(`alter database "${db.name}" set log_statement = 'all'`);
    try {
      const offset = statSync(log).size;
      const marker = `log-marker-${Date.now()}`;
      const probe = connect(db.url, { max: 1 });
      await probe.unsafe(`select '${marker}'`);
      await probe.end();
      const result = run(['bash', 'scripts/test-kpi-history.sh'], { CRON_SECRET: SECRET, BASE_URL: '' });
      expect(result.out).toContain('all checks passed');
      const written = readFileSync(log, 'utf8').slice(offset);
      expect(written).toContain(marker); // statements are logged…
      expect(written).not.toContain(SECRET); // …but not the smoke script's
      expect(written).not.toContain('not-the-cron-secret');
    } finally {
      await db.sql.unsafe(`alter database "${db.name}" reset log_statement`);
    }
  });

  it('fails, without showing the secret, when the secret is wrong', () => {
    const wrong = 'a-wrong-secret-that-is-long-enough-000000';
    const result = run(['bash', 'scripts/test-kpi-history.sh'], { CRON_SECRET: wrong, BASE_URL: '' });
    expect(result.code).toBe(1);
    expect(result.out).toContain('FAIL  cron RPC with the secret');
    expect(result.out).not.toContain(wrong);
  });

  it('fails for a tenant the data does not have', () => {
    const result = run(['bash', 'scripts/test-kpi-history.sh'], {
      CRON_SECRET: SECRET,
      BASE_URL: '',
      TENANT_ID: '00000000-0000-4000-a000-00000000beef',
    });
    expect(result.code).toBe(1);
    expect(result.out).toContain('FAIL  history');
  });
});

describe('scripts/test-kpi-history.sh (curl mode, against the PostgREST replay over HTTP)', () => {
  beforeEach(installSmokeSecret);

  it('passes every check: the script’s URLs, headers and expectations agree with PostgREST v16.2', async () => {
    await db.sql`select kpi.backfill_kpi_history()`;
    const authenticator = connectAsAuthenticator(db.urlAs('authenticator'));
    const server = await serveReplay(createReplay(authenticator, { jwtSecret: TEST_JWT_SECRET }));
    try {
      const result = await runAsync(['bash', 'scripts/test-kpi-history.sh'], {
        CRON_SECRET: SECRET,
        BASE_URL: server.url,
        PGRST_JWT_SECRET: TEST_JWT_SECRET,
      });
      expect(result.out).toContain(`== ${server.url} (PostgREST, with curl)`);
      expect(result.out).toContain('all checks passed');
      expect(result.out.match(/^ok {4}/gm)).toHaveLength(9);
      expect(result.code).toBe(0);
    } finally {
      await server.close();
      await authenticator.end();
    }
  });
});

describe('scripts/token.ts', () => {
  const secret = 'a-jwt-secret-of-at-least-32-characters!';

  it('mints an HS256 JWT for the authenticated role and the tenants, with an expiry, that an independent HMAC check accepts', async () => {
    const token = await mintToken({ secret, tenantIds: [ACME.toUpperCase()], sub: 'alice', ttlSeconds: 600, now: new Date(1_700_000_000_000) });
    const [header, payload, signature] = token.split('.');
    expect(JSON.parse(Buffer.from(header!, 'base64url').toString())).toEqual({ alg: 'HS256', typ: 'JWT' });
    expect(JSON.parse(Buffer.from(payload!, 'base64url').toString())).toEqual({
      role: 'authenticated',
      sub: 'alice',
      tenant_ids: [ACME],
      iat: 1_700_000_000,
      exp: 1_700_000_600,
    });
    // Verified without jose: the signature is HMAC-SHA256 over header.payload.
    expect(signature).toBe(createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url'));
  });

  it('is accepted by PostgREST’s checks; tampered, expired, wrongly signed and alg:none tokens are refused', async () => {
    const now = new Date();
    const token = await mintToken({ secret, tenantIds: [ACME], now });
    expect(await verifyJwt(token, secret, now)).toMatchObject({ ok: true, claims: { role: 'authenticated', tenant_ids: [ACME] } });

    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, tenant_ids: [GLOBEX] })).toString('base64url');
    expect(await verifyJwt(`${header}.${forged}.${signature}`, secret, now)).toMatchObject({ ok: false, status: 401, code: 'PGRST301' });
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    expect(await verifyJwt(`${none}.${payload}.`, secret, now)).toMatchObject({ ok: false, status: 401 });
    expect(await verifyJwt(token, 'another-secret-of-at-least-32-characters', now)).toMatchObject({ ok: false, code: 'PGRST301' });
    const later = new Date(now.getTime() + 3600_000 + 31_000); // past exp and PostgREST's 30 s skew
    expect(await verifyJwt(token, secret, later)).toMatchObject({ ok: false, code: 'PGRST303', message: 'JWT expired' });
  });

  it('refuses a short secret, ids that are not uuids, a sub that is no StringOrURI and a ttl that expires it at once', async () => {
    await expect(mintToken({ secret: 'short', tenantIds: [ACME] })).rejects.toThrow(/at least 32 characters/);
    await expect(mintToken({ secret, tenantIds: ['acme'] })).rejects.toThrow(/uuid/);
    await expect(mintToken({ secret, tenantIds: [] })).rejects.toThrow(/uuid/);
    for (const sub of ['team alice:admin', '42:answer', 'user:<42>', 'a:100%']) {
      await expect(mintToken({ secret, tenantIds: [ACME], sub }), sub).rejects.toThrow(/StringOrURI.*must be a URI/);
    }
    // A scheme and a path: a URI, so accepted.
    await expect(mintToken({ secret, tenantIds: [ACME], sub: 'user:42' })).resolves.toMatch(/\./);
    await expect(mintToken({ secret, tenantIds: [ACME], ttlSeconds: 0 })).rejects.toThrow(/--ttl/);
    await expect(mintToken({ secret, tenantIds: [ACME], sub: 'urn:kpi:user:42' })).resolves.toMatch(/\./);
    await expect(mintToken({ secret, tenantIds: [ACME], sub: 'https://idp.example/users/42' })).resolves.toMatch(/\./);
  });

  it('as a command names the refused --sub and exits 1', () => {
    const tsx = `${projectRoot}node_modules/.bin/tsx`;
    const refused = run([tsx, 'scripts/token.ts', ACME, '--sub', 'team alice:admin'], { PGRST_JWT_SECRET: secret });
    expect(refused).toMatchObject({ code: 1, out: expect.stringContaining('--sub "team alice:admin" is not a JWT StringOrURI') });
  });

  it('as a command reads the secret from PGRST_JWT_SECRET, and says so when it is missing', () => {
    const tsx = `${projectRoot}node_modules/.bin/tsx`;
    const ok = run([tsx, 'scripts/token.ts', ACME], { PGRST_JWT_SECRET: secret });
    expect(ok.code).toBe(0);
    expect(ok.out.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const missing = run([tsx, 'scripts/token.ts', ACME], { PGRST_JWT_SECRET: '' });
    expect(missing).toMatchObject({ code: 1, out: expect.stringContaining('set PGRST_JWT_SECRET') });
  });

  it('is documented with the secret coming from the environment only', () => {
    expect(readFileSync(`${projectRoot}.env.example`, 'utf8')).toMatch(/^PGRST_JWT_SECRET=change-me/m);
  });
});
