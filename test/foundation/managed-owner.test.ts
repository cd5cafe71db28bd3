// Installed and run by an owner that is not a superuser, as on managed PostgreSQL (Supabase, RDS,
// Cloud SQL, Azure), following docs/deploy.md as written: its steps' blocks are run in order, with
// this run's names (a role LOGIN CREATEROLE NOSUPERUSER, never named postgres; its database; this
// server). Then, as that owner and through the PostgREST replay: a fill of several tenants (the same
// history as a superuser's install of the same data), the cron RPC with its secret, a tenant's reads
// and another tenant's refused, the source cleanup, a custom KPI defined by a tenant admin, the
// change feed, and the page's closing check (scripts/test-kpi-history.sh).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect, cronDatabase, useTestDatabase, type Sql } from '../helpers/database.js';
import { databaseUrl } from '../helpers/dbmate.js';
import { connectAsAuthenticator, get, rpc, write } from '../helpers/postgrest.js';
import { getHistory, insertTwoTenantsWithHistory, userClaims } from '../fixtures/api.js';
import { insertAvi, insertTenant } from '../fixtures/sources.js';
import { ACME, GLOBEX, INITECH, UMBRELLA } from '../fixtures/tenants.js';

const projectRoot = new URL('../../', import.meta.url).pathname;
const suffix = randomBytes(4).toString('hex');
const OWNER = `kpi_owner_${suffix}`;
const DATABASE = `kpi_managed_${suffix}`;
const PASSWORD = randomBytes(12).toString('hex');
const CRON_SECRET = 'a-cron-secret-for-the-managed-owner-0123456789';
const cron = cronDatabase();

// The same data installed by the superuser, from the migrated template: the comparison.
const superuserInstall = useTestDatabase();
let admin: Sql;
let owner: Sql;
let api: Sql;
const ran: { fence: string; code: string; status: number | null; output: string }[] = [];

function urlAs(role: string, password = '', database = DATABASE): string {
  const url = new URL(databaseUrl(inject('testDatabase').serverUrl, database));
  url.username = role;
  url.password = password;
  return url.toString();
}

interface Block {
  fence: string;
  code: string;
}

/** The fenced blocks of a section of docs/deploy.md, in order. */
function deployBlocks(section: string): Block[] {
  const text = readFileSync(`${projectRoot}docs/deploy.md`, 'utf8');
  const start = text.indexOf(`\n## ${section}\n`);
  const end = text.indexOf('\n## ', start + 1);
  const blocks: Block[] = [];
  for (const match of text.slice(start, end === -1 ? undefined : end).matchAll(/^```(\S+(?: \S+)?)\n([\s\S]*?)^```$/gm)) {
    blocks.push({ fence: match[1]!, code: match[2]! });
  }
  return blocks;
}

/** The page's names made this run's: the owner, its password, its database, this server. */
function localized(code: string): string {
  const server = new URL(inject('testDatabase').serverUrl);
  return code
    .replaceAll('db.example.com:5432', server.host)
    .replaceAll('sslmode=require', 'sslmode=disable')
    .replaceAll('change-me', PASSWORD)
    .replace(/\bkpi_owner\b/g, OWNER)
    .replace(/(?<![.\w])kpi_history(?!\w)/g, DATABASE)
    .replaceAll('CRON_SECRET=…', `CRON_SECRET=${CRON_SECRET}`);
}

/** Runs a block where the page says: psql as the administrator, in pg_cron's database, as the owner; a shell line. */
function runBlock(block: Block, { rollBack = false } = {}): void {
  const code = localized(block.code);
  const psql = (url: string, sql: string) =>
    spawnSync('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' });
  const server = inject('testDatabase').serverUrl;
  let result: ReturnType<typeof spawnSync>;
  if (block.fence === 'sql admin') {
    // One statement at a time: CREATE DATABASE cannot run in the transaction of a multi-statement -c.
    for (const statement of code.split(/;\s*\n/).filter((s) => s.trim())) {
      result = psql(server, statement);
      if (result.status !== 0) break;
    }
  } else if (block.fence === 'sql cron-admin') {
    result = psql(cron.url!, code);
  } else if (block.fence === 'sql owner') {
    result = psql(urlAs(OWNER, PASSWORD), rollBack ? `begin;\n${code}\nrollback;` : code);
  } else if (block.fence === 'sh') {
    // As in an operator's shell: none of the test runner's own variables (Vite sets BASE_URL).
    const { BASE_URL: _runner, DATABASE_URL: _mine, ...environment } = process.env;
    result = spawnSync('bash', ['-c', code], {
      cwd: projectRoot,
      encoding: 'utf8',
      env: { ...environment, CRON_DATABASE_URL: cron.url ? urlAs(OWNER, PASSWORD, new URL(cron.url).pathname.slice(1)) : '' },
      timeout: 120_000,
    });
  } else {
    throw new Error(`docs/deploy.md: a block this test does not know how to run: ${block.fence}`);
  }
  ran.push({ fence: block.fence, code, status: result!.status, output: `${result!.stdout}${result!.stderr}` });
}

const steps = deployBlocks('The steps, on any platform');
const schedulingStep = (b: Block) => b.fence === 'sql cron-admin' || b.code.includes('schedule_in_database.sql');
const checkStep = steps.find((b) => b.code.includes('scripts/test-kpi-history.sh'))!;
if (!cron.url) console.warn(`[kpi-history tests] docs/deploy.md, scheduling from pg_cron's database — not run: ${cron.reason}`);

beforeAll(async () => {
  admin = connect(inject('testDatabase').serverUrl, { max: 1 });
  for (const block of steps) {
    if (block === checkStep || (schedulingStep(block) && !cron.url)) continue;
    // The API's password is the server's, shared by every test here: tried, then rolled back.
    runBlock(block, { rollBack: block.code.includes('alter role authenticator') });
  }
  owner = connect(urlAs(OWNER, PASSWORD));
  api = connectAsAuthenticator(urlAs('authenticator'));
  // Step 5: the cron secret.
  await owner`select kpi.add_cron_secret(${CRON_SECRET})`;
}, 240_000);

afterAll(async () => {
  await api?.end();
  await owner?.end();
  if (cron.url) {
    const scheduler = connect(cron.url, { max: 1 });
    await scheduler`select cron.unschedule(jobid) from cron.job where database = ${DATABASE}`;
    // Revokes what the administrator granted it there (it owns nothing there).
    await scheduler.unsafe(`drop owned by ${OWNER}`);
    await scheduler.end();
  }
  await admin.unsafe(`drop database if exists ${DATABASE} with (force)`);
  await admin.unsafe(`drop role if exists ${OWNER}`);
  await admin.end();
});

/** Acme and Globex with their history, whichever test runs first (each runs alone too). */
async function ensureTenants(): Promise<void> {
  const [{ present }] = await owner<[{ present: boolean }]>`select exists (select from kpi.tenants where id = ${ACME}) as present`;
  if (!present) await insertTwoTenantsWithHistory(owner);
}

const history = (sql: Sql) => sql`
  select t.slug, h.as_of::text, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point, h.vli_integrity_pct, h.vli_is_fallback, h.hrp_pct
  from kpi.kpi_history h join kpi.tenants t on t.id = h.tenant_id order by t.slug, h.as_of`;

describe('an owner that is not a superuser', { timeout: 60_000 }, () => {
  it('installs by the steps of docs/deploy.md and owns the schema, row-level security forced with a policy for it', async () => {
    expect(steps.length).toBeGreaterThanOrEqual(5);
    for (const step of ran) expect(step.status, `${step.fence}: ${step.code}\n${step.output}`).toBe(0);
    expect(ran.some((step) => step.code.includes('npm run db:migrate'))).toBe(true);
    const [me] = await owner`select current_user as name, rolsuper, rolcreaterole from pg_roles where rolname = current_user`;
    expect(me).toEqual({ name: OWNER, rolsuper: false, rolcreaterole: true });
    const tables = await owner<{ table: string; owner: string; forced: boolean; owner_policy: boolean }[]>`
      select c.relname as table, pg_get_userbyid(c.relowner) as owner, c.relforcerowsecurity as forced,
             exists (select from pg_policy p where p.polrelid = c.oid and ${OWNER}::regrole = any (p.polroles)) as owner_policy
      from pg_class c where c.relnamespace = 'kpi'::regnamespace and c.relkind = 'r'`;
    expect(tables.length).toBeGreaterThan(10);
    expect(tables.filter((t) => t.owner !== OWNER || !t.forced || !t.owner_policy)).toEqual([]);
  });

  it('fills several tenants, the same history as a superuser install of the same data', async () => {
    for (const sql of [owner, superuserInstall.sql]) {
      await insertTwoTenantsWithHistory(sql);
      await insertTenant(sql, INITECH, 'initech'); // no AVI report: NO_AVI, the others filled
    }
    const [{ result }] = await owner<[{ result: unknown }]>`select kpi.fill_all_kpi_history() as result`;
    expect(result).toMatchObject({ status: 'partial', errors: [{ code: 'NO_AVI' }] });
    await superuserInstall.sql`select kpi.fill_all_kpi_history()`;
    const filled = await history(owner);
    expect(new Set(filled.map((r) => r.slug))).toEqual(new Set(['acme', 'globex']));
    expect(filled).toEqual(await history(superuserInstall.sql));
  });

  it('answers the cron RPC with its secret, and refuses it without', async () => {
    await ensureTenants();
    const refused = await rpc(api, 'kpi_history_cron', {});
    expect(refused).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    const ran = await rpc<Record<string, unknown>>(api, 'kpi_history_cron', {}, { headers: { 'X-Cron-Secret': CRON_SECRET } });
    expect(ran.status, JSON.stringify(ran.body)).toBe(200);
    const [run] = await owner`select kind, status from kpi.kpi_runs order by id desc limit 1`;
    const answered = (ran.body as { status: string }).status;
    expect(run).toMatchObject({ kind: 'fill_all', status: answered });
    expect(['ok', 'partial']).toContain(answered);
  });

  it('serves a tenant its rows and refuses another tenant’s, as on a superuser install', async () => {
    await ensureTenants();
    const acme = await getHistory(api, { claims: userClaims(ACME) });
    expect(acme.status).toBe(200);
    const own = await owner`select as_of::text, aiv_pct from kpi.kpi_history where tenant_id = ${ACME} order by as_of desc`;
    expect(own.length).toBeGreaterThan(0);
    expect((acme.body as Record<string, unknown>[]).map((r) => [r.as_of, Number(r.aiv_pct)])).toEqual(own.map((r) => [r.as_of, Number(r.aiv_pct)]));
    const forged = await getHistory(api, { claims: userClaims(ACME), headers: { 'x-tenant': GLOBEX } });
    expect(forged).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
  });

  it('runs the source cleanup', async () => {
    // A tenant of its own on the free plan, so that the other tests keep their sources.
    const [{ present }] = await owner<[{ present: boolean }]>`select exists (select from kpi.tenants where id = ${UMBRELLA}) as present`;
    if (!present) {
      await insertTenant(owner, UMBRELLA, 'umbrella');
      for (const week of ['2024-01-01', '2024-01-08', '2024-01-15']) {
        await insertAvi(owner, UMBRELLA, { weekStart: week, aivPct: 1, atiPct: 2, crsPct: 3, elasticityUsdPerPoint: 4 });
      }
      await owner`update kpi.tenants set plan = 'free' where id = ${UMBRELLA}`;
    }
    await owner`call kpi.run_source_cleanup()`;
    // Old reports deleted; the latest kept (the history's fallback needs one).
    expect(await owner`select week_start::text from kpi.avi_reports where tenant_id = ${UMBRELLA}`).toEqual([{ week_start: '2024-01-15' }]);
    const [run] = await owner`select status, errors from kpi.kpi_runs where kind = 'cleanup' order by id desc limit 1`;
    expect(run).toEqual({ status: 'ok', errors: [] });
  });

  it('lets a tenant admin define a custom KPI, which the next fill computes', async () => {
    await ensureTenants();
    const claims = { ...userClaims(ACME), tenant_roles: { [ACME]: 'kpi_admin' } };
    const defined = await write(api, 'POST', '/custom_kpis', { key: 'aiv_minus_ati', label: 'AIV − ATI', combine: 'difference', left_kpi: 'aiv_pct', right_kpi: 'ati_pct' }, { claims });
    expect(defined.status, JSON.stringify(defined.body)).toBe(201);
    await owner`select kpi.fill_kpi_history('acme')`;
    const derived = await owner`select as_of::text, value::float from kpi.custom_kpi_values where tenant_id = ${ACME} and key = 'aiv_minus_ati' order by as_of`;
    expect(derived.length).toBeGreaterThan(0);
    const values = await get<{ key: string; value: number }[]>(api, '/custom_kpi_values?key=eq.aiv_minus_ati', { claims: userClaims(ACME) });
    expect(values.status).toBe(200);
    expect((values.body as { value: number }[]).map((v) => Number(v.value))).toEqual(derived.map((v) => v.value));
    expect(derived.every((v) => v.value === -10)).toBe(true);
  });

  it('keeps the change feed: a tenant reads its own changes only', async () => {
    await ensureTenants();
    const page = await get<{ changes: unknown[] }>(api, '/rpc/kpi_history_changes', { claims: userClaims(ACME) });
    expect(page.status).toBe(200);
    const changes = (page.body as { changes: unknown[] }).changes;
    expect(changes.length).toBeGreaterThan(0);
    const [{ acme }] = await owner<[{ acme: number }]>`select count(*)::int as acme from kpi.kpi_changes where tenant_id = ${ACME}`;
    const [{ all }] = await owner<[{ all: number }]>`select count(*)::int as all from kpi.kpi_changes`;
    expect(all).toBeGreaterThan(acme);
    expect(changes.length).toBe(Math.min(acme, 1000));
  });
  it.skipIf(!cron.url)(`schedules its jobs from pg_cron's database, as the owner${cron.url ? '' : ` — not run: ${cron.reason}`}`, async () => {
    const scheduler = connect(cron.url!, { max: 1 });
    try {
      const jobs = await scheduler`select jobname, database, username, active from cron.job where database = ${DATABASE} order by jobname`;
      expect(jobs.map((j) => j.jobname)).toContain(`kpi-history@${DATABASE}`);
      expect(jobs.every((j) => j.username === OWNER && j.active)).toBe(true);
      const plan = await owner`select job from kpi.schedule_plan()`;
      expect(jobs).toHaveLength(plan.length);
    } finally {
      await scheduler.end();
    }
  });

  it('adds a user to a tenant as the Supabase recipe shows', async () => {
    await ensureTenants();
    const [membership] = deployBlocks('Supabase').filter((b) => b.code.includes('kpi.tenant_members'));
    expect(membership).toBeDefined();
    await owner`delete from kpi.tenant_members`;
    runBlock(membership!);
    expect(ran.at(-1)!.status, ran.at(-1)!.output).toBe(0);
    const [{ claims }] = await owner<[{ claims: unknown }]>`select kpi.token_claims('7f1d3a52-0b6e-4c1a-9d7e-5a2b8c4e6f01') as claims`;
    expect(claims).toEqual({ tenant_ids: [ACME], tenant_roles: { [ACME]: 'kpi_admin' } });
  });

  it('passes the check that ends the steps (scripts/test-kpi-history.sh, through psql)', async () => {
    await ensureTenants();
    runBlock(checkStep);
    const check = ran.at(-1)!;
    expect(check.status, check.output).toBe(0);
    expect(check.output).not.toContain('FAIL');
  });
  it('runs every block of docs/deploy.md: the steps above, and the Supabase recipe’s membership', () => {
    const everyBlock = [...readFileSync(`${projectRoot}docs/deploy.md`, 'utf8').matchAll(/^```\S+(?: \S+)?\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
    const runHere = [...steps, ...deployBlocks('Supabase').filter((b) => b.code.includes('kpi.tenant_members'))].map((b) => b.code);
    expect(everyBlock).toEqual(runHere);
  });
});
