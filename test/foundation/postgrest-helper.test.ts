// The helper that stands in for PostgREST must itself do what PostgREST does, or every API test
// built on it proves nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, httpStatusFor, rpc } from '../helpers/postgrest.js';

const db = useTestDatabase();
let authenticator: Sql;

beforeAll(async () => {
  authenticator = connectAsAuthenticator(db.urlAs('authenticator'));
  // Probes live in api so the helper finds them where PostgREST would; dropped with the clone.
  await db.sql.unsafe(`
    create table api.probe_log (note text);
    grant insert on api.probe_log to anon, authenticated;
    create function api.probe_settings() returns json language sql stable as $$
      select json_build_object(
        'role', current_user,
        'search_path', current_setting('search_path'),
        'claims', nullif(current_setting('request.jwt.claims', true), '')::json,
        'method', current_setting('request.method', true),
        'path', current_setting('request.path', true),
        'headers', nullif(current_setting('request.headers', true), '')::json,
        'cookies', nullif(current_setting('request.cookies', true), '')::json,
        'read_only', current_setting('transaction_read_only'),
        'isolation', current_setting('transaction_isolation'))
    $$;
    create function api.probe_write(note text) returns void language sql volatile as
      'insert into api.probe_log values (note)';
    create function api.probe_body(body json) returns json language sql stable as 'select body';
    create function api.probe_forbidden() returns json language plpgsql as $$
    begin
      raise sqlstate 'PGRST' using
        message = '{"code":"FORBIDDEN","message":"no"}',
        detail = '{"status":403,"headers":{"X-Why":"test"}}';
    end $$;
    create function api.probe_status() returns json language plpgsql volatile as $$
    begin
      perform set_config('response.status', '418', true);
      perform set_config('response.headers', '[{"Content-Disposition":"attachment; filename=\\"a.csv\\""}]', true);
      insert into api.probe_log values ('committed with status');
      return '{"code":"TEAPOT"}'::json;
    end $$;
    create function api.probe_pre_request() returns void language plpgsql as $$
    begin
      if current_setting('request.headers', true)::json->>'x-block' = 'yes' then
        raise sqlstate 'PGRST' using message = '{"code":"BLOCKED","message":"blocked"}', detail = '{"status":451,"headers":{}}';
      end if;
    end $$;
    grant execute on all functions in schema api to anon, authenticated;
  `);
});
afterAll(() => authenticator.end());

describe('settings', () => {
  it('sets role, claims, method, path, lowercased headers and cookies for the transaction', async () => {
    const claims = { role: 'authenticated', sub: 'u1', tenant_ids: ['a'] };
    const response = await rpc(authenticator, 'probe_settings', {}, {
      method: 'GET',
      claims,
      headers: { 'X-Tenant': 'abc', Authorization: 'Bearer t', Cookie: 'a=b' },
      cookies: { a: 'b' },
    });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      role: 'authenticated',
      search_path: '"api", "public"',
      claims,
      method: 'GET',
      path: '/rpc/probe_settings',
      headers: { 'x-tenant': 'abc', authorization: 'Bearer t' },
      cookies: { a: 'b' },
      read_only: 'on',
      isolation: 'read committed',
    });
  });

  it('without a JWT, runs as the anon role with claims {"role":"anon"}', async () => {
    const response = await rpc<Record<string, unknown>>(authenticator, 'probe_settings', {}, { method: 'GET' });
    expect(response.body).toMatchObject({ role: 'anon', claims: { role: 'anon' } });
  });

  it('leaves nothing behind: the settings are transaction-local', async () => {
    await rpc(authenticator, 'probe_settings', {}, { method: 'GET', headers: { 'x-tenant': 'abc' } });
    const rows = await authenticator`
      select current_user as role, current_setting('request.headers', true) as headers`;
    expect(rows[0]!.role).toBe('authenticator');
    expect(rows[0]!.headers ?? '').toBe('');
  });
});

describe('access mode', () => {
  it('GET is read only: a writing function fails with 25006 → 405', async () => {
    const response = await rpc(authenticator, 'probe_write', { note: 'x' }, { method: 'GET' });
    expect(response.status).toBe(405);
    expect(response.body).toMatchObject({ code: '25006' });
  });

  it('POST to a volatile function is read write and commits', async () => {
    const response = await rpc(authenticator, 'probe_write', { note: 'posted' });
    expect(response.status).toBe(204);
    const rows = await db.sql`select note from api.probe_log where note = 'posted'`;
    expect(rows).toHaveLength(1);
  });

  it('POST to a stable function is read only', async () => {
    const response = await rpc<Record<string, unknown>>(authenticator, 'probe_settings', {});
    expect(response.body).toMatchObject({ read_only: 'on', method: 'POST' });
  });

  it('a single json parameter receives the whole body', async () => {
    const response = await rpc(authenticator, 'probe_body', { tenantId: 'x' }, { wholeBody: true });
    expect(response.body).toEqual({ tenantId: 'x' });
  });
});

describe('errors', () => {
  it("RAISE SQLSTATE 'PGRST' sets body, status and headers", async () => {
    const response = await rpc(authenticator, 'probe_forbidden', {});
    expect(response).toEqual({
      status: 403,
      headers: { 'X-Why': 'test' },
      body: { code: 'FORBIDDEN', message: 'no', details: null, hint: null },
      committed: false,
    });
  });

  it('response.status and response.headers set by the function are answered, and the work commits', async () => {
    const response = await rpc(authenticator, 'probe_status', {});
    expect(response.status).toBe(418);
    expect(response.headers).toEqual({ 'Content-Disposition': 'attachment; filename="a.csv"' });
    expect(response.committed).toBe(true);
    expect(await db.sql`select 1 from api.probe_log where note = 'committed with status'`).toHaveLength(1);
  });

  it('an unknown function is 404', async () => {
    const response = await rpc(authenticator, 'no_such_function', {});
    expect(response.status).toBe(404);
  });

  it('maps SQLSTATEs as PostgREST does', () => {
    expect(httpStatusFor('P0001', true)).toBe(400);
    expect(httpStatusFor('42501', false)).toBe(401);
    expect(httpStatusFor('42501', true)).toBe(403);
    expect(httpStatusFor('23505', true)).toBe(409);
    expect(httpStatusFor('22P02', true)).toBe(400);
    expect(httpStatusFor('PT422', true)).toBe(422);
    expect(httpStatusFor('57014', true)).toBe(500);
    expect(httpStatusFor('53300', true)).toBe(503);
  });
});

describe('pre-request function', () => {
  it('runs as the request role before the main query and can refuse the request', async () => {
    const blocked = await rpc(authenticator, 'probe_write', { note: 'must not land' }, {
      headers: { 'X-Block': 'yes' },
      preRequest: 'api.probe_pre_request',
    });
    expect(blocked.status).toBe(451);
    expect(blocked.committed).toBe(false);
    expect(await db.sql`select 1 from api.probe_log where note = 'must not land'`).toHaveLength(0);

    const allowed = await rpc(authenticator, 'probe_write', { note: 'allowed' }, { preRequest: 'api.probe_pre_request' });
    expect(allowed.status).toBe(204);
  });

  it('needs EXECUTE for the request role', async () => {
    await db.sql`revoke execute on function api.probe_pre_request() from anon`;
    const response = await rpc(authenticator, 'probe_write', { note: 'n' }, { preRequest: 'api.probe_pre_request' });
    expect(response.status).toBe(401);
    expect(response.body).toMatchObject({ code: '42501' });
  });
});
