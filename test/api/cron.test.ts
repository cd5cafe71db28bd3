// POST /rpc/kpi_history_cron: the secret, every error with its code and status, the audit of
// denials, rotation, and both success shapes. The secret never comes back in any answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, postgrestRequest, rpc, type PostgrestRequest } from '../helpers/postgrest.js';
import { insertTwoTenantsWithHistory, userClaims } from '../fixtures/api.js';
import { insertTenant } from '../fixtures/sources.js';
import { ACME, INITECH, UNKNOWN } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;
const SECRET = 'cron-secret-for-tests-0123456789-abcdefgh';
const NEXT_SECRET = 'the-next-cron-secret-after-rotation-9876543210';

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
  await insertTenant(db.sql, INITECH, 'initech'); // no AVI report
  await db.sql`select kpi.add_cron_secret(${SECRET})`;
});
afterAll(() => api.end());

/** POST /rpc/kpi_history_cron with this JSON body, through the PostgREST replay. */
function cron(body: unknown, request: Omit<PostgrestRequest, 'method' | 'path'> = {}) {
  return rpc<Record<string, unknown>>(api, 'kpi_history_cron', body as Record<string, unknown>, request);
}
const withSecret = (secret = SECRET) => ({ headers: { 'X-Cron-Secret': secret } });
const denials = () => db.sql`select endpoint, reason, db_role, jwt_sub, denials from kpi.api_denials order by last_denied_at, id`;
const deniedCalls = async () => (await db.sql`select coalesce(sum(denials), 0)::int as n from kpi.api_denials`)[0]!.n as number;
const runCount = async () => (await db.sql`select count(*)::int as n from kpi.kpi_runs`)[0]!.n as number;

describe('the secret', () => {
  it.each([
    ['missing', {}, 'missing cron secret'],
    ['wrong', withSecret('x'.repeat(40)), 'wrong cron secret'],
    ['almost right', withSecret(SECRET.slice(0, -1)), 'wrong cron secret'],
  ])('%s → FORBIDDEN 403, counted in the audit, and nothing else', async (_what, request, reason) => {
    const before = await db.sql`select * from kpi.kpi_history order by tenant_id, as_of`;
    const runs = await runCount();
    const denialsBefore = await deniedCalls();
    const response = await cron({}, request);
    expect(response).toMatchObject({ status: 403, committed: true, body: { code: 'FORBIDDEN' } });
    expect(await db.sql`select * from kpi.kpi_history order by tenant_id, as_of`).toEqual(before);
    expect(await runCount()).toBe(runs);
    expect(await deniedCalls()).toBe(denialsBefore + 1);
    expect((await denials()).at(-1)).toMatchObject({ endpoint: '/rpc/kpi_history_cron', reason, db_role: 'anon', jwt_sub: null });
  });

  it('sent as a bearer token, it is refused by PostgREST as a JWT (401 PGRST301) before the database sees it', async () => {
    const runs = await runCount();
    const denialsBefore = await deniedCalls();
    const response = await cron({}, { headers: { authorization: `Bearer ${SECRET}` } });
    expect(response).toMatchObject({ status: 401, committed: false, body: { code: 'PGRST301' } });
    expect(JSON.stringify(response)).not.toContain(SECRET);
    expect(await runCount()).toBe(runs);
    expect(await deniedCalls()).toBe(denialsBefore);
  });

  it('10,000 denied calls from 4 sessions at once leave a bounded audit whose counts add up', async () => {
    const rowsBefore = (await denials()).length;
    const callsBefore = await deniedCalls();
    // Each session denies 2,500 calls as anon, alternating a missing and a wrong secret, the
    // way PostgREST runs them: role and headers per request, one transaction per request.
    const attacker = async () => {
      const sql = connect(db.urlAs('authenticator'), { max: 1 });
      await sql`set role anon`;
      await sql.unsafe(`
        do $$
        begin
          for i in 1..2500 loop
            perform set_config('request.headers', case when i % 2 = 0 then '{}' else '{"x-cron-secret": "wrong-wrong-wrong-wrong-wrong-wrong-wrong"}' end, true);
            perform api.kpi_history_cron('{}'::json);
            commit;
          end loop;
        end $$`);
      await sql.end();
    };
    await Promise.all([attacker(), attacker(), attacker(), attacker()]);
    expect(await deniedCalls()).toBe(callsBefore + 10_000);
    // Two kinds of denial: one row each per minute (two minutes, if the test straddled one).
    const added = (await denials()).length - rowsBefore;
    expect(added).toBeGreaterThanOrEqual(0);
    expect(added).toBeLessThanOrEqual(4);
    const recent = await db.sql`
      select reason, sum(denials)::int as n from kpi.api_denials
      where last_denied_at > now() - interval '10 minutes' and db_role = 'anon' group by reason order by reason`;
    expect(recent.map((row) => row.reason)).toEqual(['missing cron secret', 'wrong cron secret']);
    expect(recent.every((row) => row.n >= 5_000)).toBe(true);
  });

  it('is checked before the body: a bad body without the secret is still FORBIDDEN', async () => {
    expect(await cron({ tenantId: 42 })).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
  });

  it('may come as a cron_secret JWT claim', async () => {
    const response = await cron({}, { claims: { role: 'authenticated', sub: 'scheduler', cron_secret: SECRET } });
    expect(response).toMatchObject({ status: 200, body: { status: 'partial', ok: 2, total: 3 } });
  });

  it('a denial records the JWT subject when there is one', async () => {
    await cron({}, { claims: { ...userClaims(ACME), sub: 'mallory' } });
    expect((await denials()).at(-1)).toMatchObject({ db_role: 'authenticated', jwt_sub: 'mallory' });
  });

  it('never appears in a response, the audit, the run log or the secrets table', async () => {
    const answers = [
      await cron({}, withSecret()),
      await cron({ tenantId: ACME }, withSecret()),
      await cron({ tenantId: 'nope' }, withSecret()),
      await cron({}, withSecret(SECRET + 'x')),
    ];
    const everything = JSON.stringify([
      answers,
      await db.sql`select * from kpi.api_denials`,
      await db.sql`select * from kpi.kpi_runs`,
      await db.sql`select encode(salt, 'escape') as s, encode(secret_sha256, 'escape') as h from kpi.cron_secrets`,
    ]);
    expect(everything).not.toContain(SECRET);
  });

  it('shorter than 32 characters is refused when installed (INVALID_INPUT)', async () => {
    await expect(db.sql`select kpi.add_cron_secret(${'s'.repeat(31)})`).rejects.toMatchObject({
      code: 'KH400',
      message: 'CRON_SECRET must be at least 32 characters (it has 31)',
    });
  });

  it('rotates: after adding the next one both work; after retiring, only the next one', async () => {
    await db.sql`select kpi.add_cron_secret(${NEXT_SECRET})`;
    expect((await cron({ tenantId: ACME }, withSecret(SECRET))).status).toBe(200);
    expect((await cron({ tenantId: ACME }, withSecret(NEXT_SECRET))).status).toBe(200);
    const [{ retired }] = await db.sql<[{ retired: Record<string, number> }]>`select kpi.retire_cron_secrets() as retired`;
    expect(retired).toEqual({ retired: 1, active_secrets: 1 });
    expect((await cron({ tenantId: ACME }, withSecret(SECRET))).status).toBe(403);
    expect((await cron({ tenantId: ACME }, withSecret(NEXT_SECRET))).status).toBe(200);
    // Adding an active secret again changes nothing.
    const [{ again }] = await db.sql<[{ again: Record<string, unknown> }]>`select kpi.add_cron_secret(${NEXT_SECRET}) as again`;
    expect(again).toEqual({ added: false, active_secrets: 1 });
    await db.sql`select kpi.add_cron_secret(${SECRET})`; // back for the tests below
  });
});

describe('results', () => {
  it('{} runs every tenant: the all-tenant shape', async () => {
    const response = await cron({}, withSecret());
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      ok: 2,
      total: 3,
      status: 'partial',
      errors: [{ tenant_id: INITECH, code: 'NO_AVI', message: 'tenant initech has no AVI report' }],
      warnings: [],
    });
    const [run] = await db.sql`select trigger, kind from kpi.kpi_runs where id = ${(response.body as { run_id: number }).run_id}`;
    expect(run).toEqual({ trigger: 'api', kind: 'fill_all' });
  });

  it('{"tenantId"} runs one tenant: {"ok": true, "as_of"}', async () => {
    const response = await cron({ tenantId: ACME }, withSecret());
    expect(response).toMatchObject({ status: 200, body: { ok: true, as_of: '2024-01-22' } });
  });

  it('a second all-tenant run while one is going is answered at once as skipped', async () => {
    const holder = connect(db.url, { max: 1 });
    try {
      await holder.begin(async (tx) => {
        await tx`select kpi.fill_all_kpi_history()`;
        const response = await cron({}, withSecret());
        expect(response).toMatchObject({ status: 200, body: { skipped: true, status: 'skipped' } });
      });
    } finally {
      await holder.end();
    }
  });
});

describe('errors', () => {
  it.each([
    ['an array of objects', [{ tenantId: ACME }], 'INVALID_INPUT', 400],
    // PostgREST replaces a JSON value that is neither object nor array by [] (Payload.hs).
    ['a string body', 'acme', 'INVALID_INPUT', 400],
    ['an unknown field', { tenant_id: ACME }, 'INVALID_INPUT', 400],
    ['a tenantId that is not a uuid', { tenantId: 'acme' }, 'INVALID_INPUT', 400],
    ['a numeric tenantId', { tenantId: 7 }, 'INVALID_INPUT', 400],
    ['a null tenantId', { tenantId: null }, 'INVALID_INPUT', 400],
  ])('%s → %s %s, nothing written', async (_what, body, code, status) => {
    const runs = await runCount();
    const response = await cron(body, withSecret());
    expect(response).toMatchObject({ status, committed: false, body: { code } });
    expect(JSON.stringify(response.body)).not.toMatch(/KH\d|PL\/pgSQL|kpi\./);
    expect(await runCount()).toBe(runs);
  });

  it.each([
    ['an unknown tenant', UNKNOWN, 'UNKNOWN_TENANT', 404, 'KH404'],
    ['a tenant without AVI reports', INITECH, 'NO_AVI', 422, 'KH422'],
  ])('%s → %s %s, the same answer as before, and the failure is in the run log', async (_what, tenantId, code, status, sqlstate) => {
    const history = await db.sql`select * from kpi.kpi_history order by tenant_id, as_of`;
    const runs = await runCount();
    const response = await cron({ tenantId }, withSecret());
    expect(response).toMatchObject({ status, body: { code, details: null, hint: null } });
    expect(JSON.stringify(response.body)).not.toMatch(/KH\d|PL\/pgSQL|kpi\./);
    expect(await db.sql`select * from kpi.kpi_history order by tenant_id, as_of`).toEqual(history);
    expect(await runCount()).toBe(runs + 1);
    const [run] = await db.sql`select kind, tenant_id, trigger, status, finished_at is not null as finished, errors from kpi.kpi_runs order by id desc limit 1`;
    expect(run).toEqual({
      kind: 'fill',
      tenant_id: tenantId,
      trigger: 'api',
      status: 'failed',
      finished: true,
      errors: [{ tenant_id: tenantId, code, sqlstate, message: (response.body as { message: string }).message, hint: expect.any(String) }],
    });
  });

  it('a failed run → INTERNAL_ERROR 500 naming the run, revealing nothing else; the failure stays logged', async () => {
    const blocker = connect(db.url, { max: 1 });
    try {
      await db.sql`update kpi.avi_reports set aiv_pct = aiv_pct + 1`;
      await blocker.begin(async (tx) => {
        await tx`select 1 from kpi.kpi_history for update`;
        const response = await postgrestRequest(api, { method: 'POST', path: '/rpc/kpi_history_cron', headers: withSecret().headers }, async (t) => {
          await t`set local statement_timeout = '300ms'`;
          const [row] = await t`select api.kpi_history_cron(${t.json({})}::json) as r`;
          return row!.r;
        });
        expect(response).toMatchObject({ status: 500, committed: true, body: { code: 'INTERNAL_ERROR' } });
        const message = (response.body as { message: string }).message;
        expect(message).toMatch(/^the run failed and changed nothing; see run \d+ in kpi\.kpi_runs$/);
        const runId = Number(/run (\d+)/.exec(message)![1]);
        const [run] = await db.sql`select status, errors from kpi.kpi_runs where id = ${runId}`;
        expect(run).toMatchObject({ status: 'failed', errors: [{ sqlstate: '57014' }] });
      });
    } finally {
      await blocker.end();
    }
  });

  it('GET finds no function: the whole-body fallback is for POST only (404 PGRST202), and nothing runs', async () => {
    const runs = await runCount();
    const response = await rpc(api, 'kpi_history_cron', {}, { method: 'GET', ...withSecret() });
    expect(response).toMatchObject({ status: 404, body: { code: 'PGRST202' } });
    expect(await runCount()).toBe(runs);
  });

  it('an array of non-objects is refused by PostgREST itself before the function runs (400 PGRST102)', async () => {
    const runs = await runCount();
    expect(await cron([ACME], withSecret())).toMatchObject({ status: 400, committed: false, body: { code: 'PGRST102' } });
    expect(await runCount()).toBe(runs);
  });
});
