// The claims a token needs, from kpi.tenant_members: kpi.supabase_access_token_hook answers Supabase
// Auth's event with tenant_ids and tenant_roles added, and a token made of its answer reads the
// user's tenants and no other, is an admin only where a row says so. The API's roles can neither
// call the hook nor read the memberships.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, get, postgrestRequest, write } from '../helpers/postgrest.js';
import { insertTwoTenantsWithHistory, userClaims } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;
const USER = '7f1d3a52-0b6e-4c1a-9d7e-5a2b8c4e6f01';
const STRANGER = '0c9e8d7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f';

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
  await db.sql`insert into kpi.tenant_members (tenant_id, user_id, role) values (${ACME}, ${USER}, 'member'), (${GLOBEX}, ${USER}, 'kpi_admin')`;
});
afterAll(() => api.end());

/** What Supabase Auth sends the hook, and what the hook answers. */
async function hook(userId: string, claims: Record<string, string> = { role: 'authenticated', aud: 'authenticated', sub: userId }) {
  const [{ answer }] = await db.sql<[{ answer: { user_id: unknown; claims: Record<string, unknown> } }]>`
    select kpi.supabase_access_token_hook(${db.sql.json({ user_id: userId, claims, authentication_method: 'password' })}::jsonb) as answer`;
  return answer;
}

describe('the access token hook', () => {
  it('adds the user’s tenants and admin roles to the claims, keeping the others', async () => {
    const answer = await hook(USER);
    expect(answer.user_id).toBe(USER);
    expect(answer.claims).toEqual({
      role: 'authenticated',
      aud: 'authenticated',
      sub: USER,
      tenant_ids: [ACME, GLOBEX].sort(),
      tenant_roles: { [GLOBEX]: 'kpi_admin' },
    });
  });

  it('a user of no tenant gets no tenant; a user id that is not a uuid fails no sign-in', async () => {
    expect((await hook(STRANGER)).claims).toMatchObject({ tenant_ids: [], tenant_roles: {} });
    expect((await hook('not-a-uuid')).claims).toMatchObject({ tenant_ids: [], tenant_roles: {} });
  });

  it('a token made of its answer reads the user’s tenants, not another; defines custom KPIs only where it is an admin', async () => {
    const { claims } = await hook(USER);
    const acme = await get<{ as_of: string }[]>(api, '/kpi_history?order=as_of', { claims, headers: { 'x-tenant': ACME } });
    expect(acme.status).toBe(200);
    expect((acme.body as { as_of: string }[]).length).toBe(4);
    const { claims: strangers } = await hook(STRANGER);
    const refused = await get(api, '/kpi_history', { claims: strangers, headers: { 'x-tenant': ACME } });
    expect(refused).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    const definition = { key: 'aiv_minus_ati', label: 'AIV − ATI', combine: 'difference', left_kpi: 'aiv_pct', right_kpi: 'ati_pct' };
    const asMember = await write(api, 'POST', '/custom_kpis', definition, { claims, headers: { 'x-tenant': ACME } });
    expect(asMember).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    const asAdmin = await write(api, 'POST', '/custom_kpis', definition, { claims, headers: { 'x-tenant': GLOBEX } });
    expect(asAdmin.status, JSON.stringify(asAdmin.body)).toBe(201);
  });

  it('the API’s roles cannot call it, nor read who belongs where', async () => {
    for (const claims of [null, userClaims(ACME)]) {
      const call = await postgrestRequest(api, { method: 'POST', path: '/rpc/anything', claims }, (tx) =>
        tx`select kpi.supabase_access_token_hook(${JSON.stringify({ user_id: USER })}::jsonb)`,
      );
      expect(call).toMatchObject({ status: claims ? 403 : 401, body: { code: '42501' } });
      const read = await postgrestRequest(api, { method: 'GET', path: '/anything', claims }, (tx) => tx`select * from kpi.tenant_members`);
      expect(read).toMatchObject({ status: claims ? 403 : 401, body: { code: '42501' } });
    }
  });
});
