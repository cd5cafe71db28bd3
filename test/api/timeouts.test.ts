// Bounded requests: the API roles' statement timeout reaches every request the way PostgREST
// applies it (the role's own settings, read from pg_roles), a request running past it is cancelled
// (500, 57014), and a function's own longer timeout — the cron RPC's — is hoisted into its
// transaction.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, createReplay, postgrestRequest, TEST_JWT_SECRET } from '../helpers/postgrest.js';
import { postgrestConfig } from '../helpers/postgrest/config.js';
import { routinesNamed } from '../helpers/postgrest/schema-cache.js';
import { userClaims } from '../fixtures/api.js';
import { ACME } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;

beforeAll(() => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
});
afterAll(() => api.end());

const showTimeout = (claims?: Record<string, unknown>) =>
  postgrestRequest(api, { method: 'GET', path: '/x', claims }, async (tx) =>
    (await tx<[{ statement_timeout: string }]>`show statement_timeout`)[0].statement_timeout);

describe('the API roles’ statement timeout', () => {
  it('is set on the roles themselves, where PostgREST reads it (not per database, which SET ROLE ignores)', async () => {
    const roles = await db.sql`
      select rolname, (select s from unnest(rolconfig) s where s like 'statement_timeout=%') as timeout
      from pg_roles where rolname in ('anon', 'authenticated') order by 1`;
    expect(roles).toEqual([
      { rolname: 'anon', timeout: expect.stringMatching(/^statement_timeout=\d+m?s$/) },
      { rolname: 'authenticated', timeout: expect.stringMatching(/^statement_timeout=\d+m?s$/) },
    ]);
  });

  it('applies to each request: anonymous 5s, a signed-in user 15s', async () => {
    expect((await showTimeout()).body).toBe('5s');
    expect((await showTimeout(userClaims(ACME))).body).toBe('15s');
  });
});

describe('the cron RPC runs longer than a request may', () => {
  it('its SET statement_timeout is one PostgREST hoists into the request’s transaction', async () => {
    const [cron] = await routinesNamed(api, 'api', 'kpi_history_cron', postgrestConfig().hoistedTxSettings);
    expect(cron!.settings).toEqual([['statement_timeout', '30min']]);
  });

  it('a function’s own longer timeout outlasts the role’s (hoisted); without one it is cancelled', async () => {
    // Two functions of this test's own, each sleeping past anon's 5s: a statement's timeout is
    // fixed when it starts, so only a SET that PostgREST hoists before the call can lengthen it.
    await db.sql`create function api.sleep_hoisted() returns int language sql set statement_timeout = '30min' set work_mem = '2MB' as 'select 1 from pg_sleep(6)'`;
    await db.sql`create function api.sleep_bounded() returns int language sql as 'select 1 from pg_sleep(6)'`;
    await db.sql`grant execute on function api.sleep_hoisted(), api.sleep_bounded() to anon`;
    // Only the settings db-hoisted-tx-settings names are hoisted (work_mem stays the function's).
    expect((await routinesNamed(api, 'api', 'sleep_hoisted', postgrestConfig().hoistedTxSettings))[0]!.settings).toEqual([['statement_timeout', '30min']]);
    const replay = createReplay(api, { jwtSecret: TEST_JWT_SECRET });
    const [hoisted, bounded] = await Promise.all([
      replay.request({ method: 'GET', url: '/rpc/sleep_hoisted', headers: {} }),
      replay.request({ method: 'GET', url: '/rpc/sleep_bounded', headers: {} }),
    ]);
    expect(hoisted).toMatchObject({ status: 200, text: '1' });
    expect(bounded.status).toBe(500);
    expect(JSON.parse(bounded.text)).toMatchObject({ code: '57014' });
  }, 30_000);
});
