// The replay that stands in for PostgREST must itself answer as PostgREST v16.2 does, or every API
// test built on it proves nothing. The probes copy fixtures of PostgREST's own spec suite
// (test/spec/fixtures/schema.sql at tag v16.2) and the expected answers come from its spec files,
// named at each test — never from the replay.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import {
  connectAsAuthenticator,
  createReplay,
  httpStatusFor,
  postgrestConfig,
  rpc,
  signClaims,
  TEST_JWT_SECRET,
  type Replay,
} from '../helpers/postgrest.js';
import { serveReplay } from '../helpers/postgrest/http.js';

const db = useTestDatabase();
let authenticator: Sql;
let replay: Replay;

beforeAll(async () => {
  authenticator = connectAsAuthenticator(db.urlAs('authenticator'));
  replay = createReplay(authenticator, { jwtSecret: TEST_JWT_SECRET });
  // Probes live in api so the replay finds them where PostgREST would; dropped with the clone.
  await db.sql.unsafe(`
    create table api.items (id bigint primary key);
    insert into api.items select generate_series(1, 15);
    grant select on api.items to anon, authenticated;
    create sequence api.callcounter_count;
    grant usage on sequence api.callcounter_count to anon, authenticated;
    create table api.probe_log (note text);
    grant insert on api.probe_log to anon, authenticated;
    create table api.writable (id bigint primary key, note text, tags text[]);
    insert into api.writable values (1, 'one', '{a}'), (2, 'two', '{b}'), (3, 'three', '{c}');
    grant select, insert, update, delete on api.writable to anon, authenticated;

    -- From PostgREST's test/spec/fixtures/schema.sql:
    create function api.sayhello(name text) returns text language sql immutable as $$ select 'Hello, ' || $1 $$;
    create function api.add_them(a integer, b integer) returns integer language sql as $$ select a + b $$;
    create function api.getitemrange(min bigint, max bigint) returns setof api.items language sql stable as
      $$ select * from api.items where id > $1 and id <= $2 $$;
    create function api.callcounter() returns bigint language sql as $$ select nextval('api.callcounter_count') $$;
    create function api.unnamed_json_param(json) returns json language sql as $$ select $1 $$;
    create function api.named_json_param(data json) returns json language sql as $$ select data $$;
    create function api.raise_pt402() returns void language plpgsql as $$
    begin
      raise sqlstate 'PT402' using message = 'Payment Required', detail = 'Quota exceeded', hint = 'Upgrade your plan';
    end $$;
    create function api.raise_bad_pt() returns void language plpgsql as $$
    begin
      raise sqlstate 'PT40A' using message = 'Wrong';
    end $$;

    -- Probes of the transaction itself:
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
    create function api.probe_date(day date) returns date language sql stable as 'select day';
    create function api.probe_custom_error() returns json language plpgsql as $$
    begin
      raise exception using errcode = 'KH404', message = 'custom class';
    end $$;
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
    create function api.probe_pgrst_no_headers() returns json language plpgsql as $$
    begin
      raise sqlstate 'PGRST' using message = '{"code":"X","message":"no headers"}', detail = '{"status":403}';
    end $$;
    create function api.probe_now() returns text language sql stable as $$ select current_setting('timezone') $$;
    create function api.probe_items() returns setof api.items language sql stable as $$ select * from api.items order by id $$;
    grant execute on all functions in schema api to anon, authenticated;
  `);
});
afterAll(() => authenticator.end());

const GET = (url: string, headers: Record<string, string> = {}) => replay.request({ method: 'GET', url, headers });
const POST = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  replay.request({ method: 'POST', url, headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('query keys (test/spec/Feature/Query/RpcSpec.hs, src/library/PostgREST/ApiRequest/QueryParams.hs)', () => {
  it('GET arguments are the query keys: /rpc/add_them?a=1&b=2 → 3', async () => {
    const response = await GET('/rpc/add_them?a=1&b=2');
    expect(response.status).toBe(200);
    expect(response.json()).toBe(3);
    expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
    // QueryBuilder.hs callPlanToQuery: "name" := $n::type.
    expect(response.sql).toContain('"a" := $1::text::integer, "b" := $2::text::integer');
  });

  it('"using limit and offset": limit/offset page the result, never arguments → [{"id":4}], Content-Range 1-1/*', async () => {
    for (const response of [
      await GET('/rpc/getitemrange?min=2&max=4&limit=1&offset=1'),
      await POST('/rpc/getitemrange?limit=1&offset=1', { min: 2, max: 4 }),
    ]) {
      expect(response.json()).toEqual([{ id: 4 }]);
      expect(response.headers['content-range']).toBe('1-1/*');
    }
  });

  it('"should not ignore unknown args and fail with 404"', async () => {
    const response = await GET('/rpc/add_them?a=1&b=2&smthelse=blabla');
    expect(response.status).toBe(404);
    expect(response.json()).toMatchObject({
      code: 'PGRST202',
      message: 'Could not find the function api.add_them(a, b, smthelse) in the schema cache',
      details: 'Searched for the function api.add_them with parameters a, b, smthelse, but no matches were found in the schema cache.',
    });
  });

  it('"should fail with 404 on unknown proc args": a missing required argument is no match', async () => {
    expect((await GET('/rpc/sayhello')).status).toBe(404);
    expect((await GET('/rpc/sayhello?any_arg=value')).status).toBe(404);
    expect((await GET('/rpc/sayhello?name=world')).json()).toBe('Hello, world');
  });

  it('a reserved key never reaches a parameter of its name, whatever the function', async () => {
    await db.sql`create function api.probe_limit("limit" integer default 52) returns integer language sql stable as 'select "limit"'`;
    await db.sql`grant execute on function api.probe_limit(integer) to anon`;
    // The documented call of the old CSV export: ?limit=12 kept the default 52.
    expect((await GET('/rpc/probe_limit?limit=12')).json()).toBe(52);
    expect((await GET('/rpc/probe_limit?limit=0')).text).not.toBe('0');
  });

  it('an argument PostgreSQL cannot cast is its class-22 error, answered 400 with its SQLSTATE', async () => {
    const response = await GET('/rpc/probe_date?day=2026-02-30');
    expect(response.status).toBe(400);
    expect(response.json()).toMatchObject({ code: '22008' });
  });
});

describe('RPC resolution (RpcSpec.hs "single unnamed param", "only for GET rpc"; Plan.hs findProc)', () => {
  it('"can insert json directly with unnamed parameter"', async () => {
    const response = await POST('/rpc/unnamed_json_param', { A: 1, B: 2, C: 3 });
    expect(response.json()).toEqual({ A: 1, B: 2, C: 3 });
  });

  it('"rejects json body when single param has a name"', async () => {
    const response = await POST('/rpc/named_json_param', { A: 1, B: 2, C: 3 });
    expect(response.status).toBe(404);
    expect(response.json()).toMatchObject({
      code: 'PGRST202',
      message: 'Could not find the function api.named_json_param(A, B, C) in the schema cache',
      details:
        'Searched for the function api.named_json_param with parameters A, B, C or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.',
    });
  });

  it('the unnamed-json fallback is POST only: GET /rpc/unnamed_json_param is 404 PGRST202', async () => {
    const response = await GET('/rpc/unnamed_json_param');
    expect(response).toMatchObject({ status: 404 });
    expect(response.json()).toMatchObject({ code: 'PGRST202' });
  });

  it('"should fail on mutating procs" over GET: 405 (25006), and the same POST writes', async () => {
    const response = await GET('/rpc/callcounter');
    expect(response.status).toBe(405);
    expect(response.json()).toMatchObject({ code: '25006' });
    const posted = await POST('/rpc/probe_write', { note: 'posted' });
    expect(posted.status).toBe(204); // Response.hs: a void function answers 204, no body
    expect(posted.text).toBe('');
    expect(await db.sql`select note from api.probe_log where note = 'posted'`).toHaveLength(1);
  });

  it('a POST to a STABLE function runs READ ONLY, a GET too (Plan.hs txMode)', async () => {
    expect((await POST('/rpc/probe_settings', {})).json()).toMatchObject({ read_only: 'on', method: 'POST' });
    expect((await GET('/rpc/probe_settings')).json()).toMatchObject({ read_only: 'on', method: 'GET' });
  });
});

describe('Accept (Plan/Negotiate.hs, test/spec/Feature/Query/CustomMediaSpec.hs)', () => {
  beforeAll(async () => {
    // api."text/csv" is the project's own media type domain (migrations).
    await db.sql.unsafe(`
      create function api.probe_csv() returns api."text/csv" language sql stable as $$ select 'a,b' || chr(13) || chr(10) $$;
      grant execute on function api.probe_csv() to anon;
    `);
  });

  it('Accept: text/csv selects the function returning the "text/csv" domain: its text as is', async () => {
    const response = await GET('/rpc/probe_csv', { Accept: 'text/csv' });
    expect(response.status).toBe(200);
    expect(response.text).toBe('a,b\r\n');
    expect(response.headers['content-type']).toBe('text/csv; charset=utf-8');
  });

  it('no Accept, */* or application/json: the same text as a JSON string', async () => {
    for (const headers of [{}, { Accept: '*/*' }, { Accept: 'application/json' }] as Record<string, string>[]) {
      const response = await GET('/rpc/probe_csv', headers);
      expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(response.json()).toBe('a,b\r\n');
    }
  });

  it('a type nothing produces is 406 PGRST107', async () => {
    const response = await GET('/rpc/sayhello?name=x', { Accept: 'text/html' });
    expect(response.status).toBe(406);
    expect(response.json()).toMatchObject({ code: 'PGRST107' });
  });
});

describe('reads and db-max-rows (test/spec/Feature/Query/QueryLimitedSpec.hs: "limits results")', () => {
  it('filters, order and limit become SQL; db-max-rows caps what limit asks for', async () => {
    const response = await GET('/items?id=gt.10&order=id.desc&limit=2');
    expect(response.json()).toEqual([{ id: 15 }, { id: 14 }]);
    expect(response.headers['content-range']).toBe('0-1/*');
    const capped = createReplay(authenticator, { jwtSecret: TEST_JWT_SECRET, config: { ...postgrestConfig(), maxRows: 2 } });
    const all = await capped.request({ method: 'GET', url: '/items?order=id' });
    expect(all.json()).toEqual([{ id: 1 }, { id: 2 }]);
    const asked = await capped.request({ method: 'GET', url: '/items?order=id&limit=5' });
    expect(asked.json()).toHaveLength(2);
  });

  it('an unknown relation is 404 PGRST205', async () => {
    const response = await GET('/no_such_view');
    expect(response.status).toBe(404);
    expect(response.json()).toMatchObject({ code: 'PGRST205' });
  });

  it('db-max-rows is read from docker-compose.yml', () => {
    expect(postgrestConfig().maxRows).toBe(1000);
  });

  it('in.(…) is = ANY of the list, quoted elements kept whole; in.() matches nothing (QuerySpec.hs "in.()")', async () => {
    expect((await GET('/items?id=in.(1,3,99)&order=id')).json()).toEqual([{ id: 1 }, { id: 3 }]);
    expect((await GET('/writable?note=in.("one","t,wo")&select=id')).json()).toEqual([{ id: 1 }]);
    expect((await GET('/items?id=in.()')).json()).toEqual([]);
  });
});

describe('writes to a relation (test/spec/Feature/Query/InsertSpec.hs, UpdateSpec.hs, DeleteSpec.hs; Response.hs)', () => {
  const write = (method: string, url: string, body: unknown, headers: Record<string, string> = {}) =>
    replay.request({ method, url, headers: { 'Content-Type': 'application/json', ...headers }, body: body === undefined ? null : JSON.stringify(body) });

  it('"accepts disparate json types": POST is 201 without a body or Content-Type; return=minimal is echoed', async () => {
    const plain = await write('POST', '/writable', { id: 10, note: 'ten', tags: ['x', 'y'] });
    expect(plain).toMatchObject({ status: 201, text: '' });
    expect(plain.headers['content-type']).toBeUndefined();
    const minimal = await write('POST', '/writable', { id: 11, note: 'eleven' }, { Prefer: 'return=minimal' });
    expect(minimal.status).toBe(201);
    expect(minimal.headers['preference-applied']).toBe('return=minimal');
    expect((await GET('/writable?id=eq.10')).json()).toEqual([{ id: 10, note: 'ten', tags: ['x', 'y'] }]);
  });

  it('"filters columns in result using &select": an array body, return=representation → 201 with the selected columns', async () => {
    const response = await write('POST', '/writable?select=id,note', [{ id: 12, note: 'twelve' }, { id: 13, note: 'thirteen' }], {
      Prefer: 'return=representation',
    });
    expect(response.status).toBe(201);
    expect(response.json()).toEqual([{ id: 12, note: 'twelve' }, { id: 13, note: 'thirteen' }]);
    expect(response.headers['preference-applied']).toBe('return=representation');
  });

  it('a key the relation has no column for is 400 PGRST204; objects with different keys are 400 PGRST102', async () => {
    expect((await write('POST', '/writable', { id: 14, nope: 1 })).json()).toMatchObject({ code: 'PGRST204' });
    expect((await write('POST', '/writable', [{ id: 15 }, { note: 'x' }])).json()).toMatchObject({ code: 'PGRST102' });
  });

  it('"can update a single item": PATCH is 204 with Content-Range 0-0/*; with return=representation 200 and the rows ([] when none)', async () => {
    const patched = await write('PATCH', '/writable?id=eq.2', { note: 'deux' });
    expect(patched).toMatchObject({ status: 204, text: '' });
    expect(patched.headers['content-range']).toBe('0-0/*');
    const shown = await write('PATCH', '/writable?id=eq.3', { note: 'trois' }, { Prefer: 'return=representation' });
    expect(shown.status).toBe(200);
    expect(shown.json()).toEqual([{ id: 3, note: 'trois', tags: ['c'] }]);
    const none = await write('PATCH', '/writable?id=eq.999999', { note: 'x' }, { Prefer: 'return=representation' });
    expect([none.status, none.json()]).toEqual([200, []]);
  });

  it('"succeeds with 204 and deletion count": DELETE is 204, Content-Range */*; with return=representation 200 and the rows', async () => {
    await db.sql`insert into api.writable values (21, 'twenty-one', '{a}'), (22, 'twenty-two', '{b}')`;
    const deleted = await write('DELETE', '/writable?id=eq.21', undefined);
    expect(deleted).toMatchObject({ status: 204, text: '' });
    expect(deleted.headers['content-range']).toBe('*/*');
    const shown = await write('DELETE', '/writable?id=eq.22', undefined, { Prefer: 'return=representation' });
    expect([shown.status, shown.json()]).toEqual([200, [{ id: 22, note: 'twenty-two', tags: ['b'] }]]);
    expect(await db.sql`select id from api.writable where id in (21, 22)`).toEqual([]);
  });

  it('a unique violation is 409 (Error.hs: 23505), and nothing is written', async () => {
    const response = await write('POST', '/writable', { id: 3, note: 'again' });
    expect(response).toMatchObject({ status: 409, committed: false });
    expect(response.json()).toMatchObject({ code: '23505' });
  });
});

describe('the transaction (docs: references/transactions; Query/PreQuery.hs)', () => {
  it('sets role, claims (with the role), method, path, lowercased headers and cookies', async () => {
    const claims = { role: 'authenticated', sub: 'u1', tenant_ids: ['a'] };
    const token = await signClaims(claims, TEST_JWT_SECRET);
    const response = await GET('/rpc/probe_settings', { 'X-Tenant': 'abc', Authorization: `Bearer ${token}`, Cookie: 'a=b' });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({
      role: 'authenticated',
      search_path: '"api", "public"',
      claims,
      method: 'GET',
      path: '/rpc/probe_settings',
      headers: { 'x-tenant': 'abc', authorization: `Bearer ${token}` },
      cookies: { a: 'b' },
      read_only: 'on',
      isolation: 'read committed',
    });
  });

  it('without a JWT: the anon role, claims {"role":"anon"}', async () => {
    expect((await GET('/rpc/probe_settings')).json()).toMatchObject({ role: 'anon', claims: { role: 'anon' } });
  });

  it('leaves nothing behind: the settings are transaction-local', async () => {
    await GET('/rpc/probe_settings', { 'x-tenant': 'abc' });
    const rows = await authenticator`select current_user as role, current_setting('request.headers', true) as headers`;
    expect(rows[0]!.role).toBe('authenticator');
    expect(rows[0]!.headers ?? '').toBe('');
  });

  it('the pre-request function runs as the request role before the main query and can refuse it', async () => {
    const blocked = await rpc(authenticator, 'probe_write', { note: 'must not land' }, {
      headers: { 'X-Block': 'yes' },
      preRequest: 'api.probe_pre_request',
    });
    expect(blocked).toMatchObject({ status: 451, committed: false });
    expect(await db.sql`select 1 from api.probe_log where note = 'must not land'`).toHaveLength(0);
    expect((await rpc(authenticator, 'probe_write', { note: 'allowed' }, { preRequest: 'api.probe_pre_request' })).status).toBe(204);
    await db.sql`revoke execute on function api.probe_pre_request() from anon`;
    const denied = await rpc(authenticator, 'probe_write', { note: 'n' }, { preRequest: 'api.probe_pre_request' });
    expect(denied).toMatchObject({ status: 401, body: { code: '42501' } });
  });
});

describe('JWT (src/library/PostgREST/Auth/Jwt.hs; test/spec/Feature/Auth/AuthSpec.hs)', () => {
  it('a token signed with another secret is 401 PGRST301', async () => {
    const token = await signClaims({ role: 'authenticated' }, 'another-secret-of-at-least-32-characters!!');
    const response = await GET('/rpc/probe_settings', { Authorization: `Bearer ${token}` });
    expect(response.status).toBe(401);
    expect(response.json()).toMatchObject({ code: 'PGRST301' });
  });

  it('an expired token (beyond the 30 s skew) is 401 PGRST303 "JWT expired"', async () => {
    const exp = Math.floor(Date.now() / 1000) - 60;
    const response = await GET('/rpc/probe_settings', { Authorization: `Bearer ${await signClaims({ role: 'authenticated', exp }, TEST_JWT_SECRET)}` });
    expect(response.status).toBe(401);
    expect(response.json()).toMatchObject({ code: 'PGRST303', message: 'JWT expired' });
  });

  it('an unsigned token (alg: none) is refused', async () => {
    const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const token = `${part({ alg: 'none', typ: 'JWT' })}.${part({ role: 'authenticated' })}.`;
    expect((await GET('/rpc/probe_settings', { Authorization: `Bearer ${token}` })).status).toBe(401);
  });

  it('a role that does not exist is 401 (Error.hs: 22023 "role … does not exist")', async () => {
    const token = await signClaims({ role: 'nobody_here' }, TEST_JWT_SECRET);
    expect((await GET('/rpc/probe_settings', { Authorization: `Bearer ${token}` })).status).toBe(401);
  });

  it('a sub with a colon that is no URI is accepted: v16.2 decodes claims as plain JSON (jose-jwt)', async () => {
    const token = await signClaims({ role: 'authenticated', sub: 'user:42' }, TEST_JWT_SECRET);
    expect((await GET('/rpc/probe_settings', { Authorization: `Bearer ${token}` })).json()).toMatchObject({ claims: { sub: 'user:42' } });
  });
});

describe('errors (src/library/PostgREST/Error.hs mapSQLtoHTTP; test/spec/Feature/Query/ErrorSpec.hs, RpcSpec.hs)', () => {
  it('"can map a RAISE error code and message to a http status": PT402 → 402 with the body', async () => {
    const response = await GET('/rpc/raise_pt402');
    expect(response.status).toBe(402);
    expect(response.json()).toEqual({ code: 'PT402', details: 'Quota exceeded', hint: 'Upgrade your plan', message: 'Payment Required' });
  });

  it('"defaults to status 500 if RAISE code is PT not followed by a number"', async () => {
    const response = await GET('/rpc/raise_bad_pt');
    expect(response.status).toBe(500);
    expect(response.json()).toEqual({ hint: null, details: null, code: 'PT40A', message: 'Wrong' });
  });

  it("RAISE SQLSTATE 'PGRST' sets body, status and headers", async () => {
    const response = await GET('/rpc/probe_forbidden');
    expect(response.status).toBe(403);
    expect(response.headers['x-why']).toBe('test');
    expect(response.json()).toEqual({ code: 'FORBIDDEN', message: 'no', details: null, hint: null });
  });

  it('response.status and response.headers set by the function are answered, and the work commits', async () => {
    const response = await POST('/rpc/probe_status', {});
    expect(response.status).toBe(418);
    expect(response.headers['content-disposition']).toBe('attachment; filename="a.csv"');
    expect(response.committed).toBe(true);
    expect(await db.sql`select 1 from api.probe_log where note = 'committed with status'`).toHaveLength(1);
  });

  it('an unknown SQLSTATE class (here KH404) is 400, not 500', async () => {
    const response = await GET('/rpc/probe_custom_error');
    expect(response.status).toBe(400);
    expect(response.json()).toMatchObject({ code: 'KH404' });
  });

  it.each([
    ['P0001', true, 400],
    ['42501', false, 401],
    ['42501', true, 403],
    ['23505', true, 409],
    ['25006', true, 405],
    ['25P02', true, 500],
    ['22P02', true, 400],
    ['42703', true, 400],
    ['PT422', true, 422],
    ['57014', true, 500],
    ['57P01', true, 503],
    ['53300', true, 503],
    ['53400', true, 500],
    ['42883', true, 404],
    ['42P01', true, 404],
    ['08006', true, 503],
    ['XX000', true, 500],
    ['P0002', true, 500],
  ])('%s (authenticated: %s) → %d', (sqlstate, authenticated, status) => {
    expect(httpStatusFor(sqlstate, authenticated)).toBe(status);
  });
});

// Where the replay was laxer than v16.2, one test each, naming the source at tag v16.2 it follows.
describe('CORS over HTTP (src/library/PostgREST/Cors.hs; test/spec/Feature/CorsSpec.hs)', () => {
  /** The replay behind a socket with `origins` as server-cors-allowed-origins; one request's status and headers. */
  async function ask(origins: string[], method: string, path: string, headers: Record<string, string>) {
    const server = await serveReplay(createReplay(authenticator, { jwtSecret: TEST_JWT_SECRET, config: { ...postgrestConfig(), corsAllowedOrigins: origins } }));
    try {
      const response = await fetch(`${server.url}${path}`, { method, headers });
      await response.arrayBuffer();
      return { status: response.status, headers: Object.fromEntries(response.headers) };
    } finally {
      await server.close();
    }
  }
  const preflight = { Accept: '*/*', Origin: 'http://example.com', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'Foo,Bar' };

  it('"replies naively and permissively to preflight request"', async () => {
    const answer = await ask([], 'OPTIONS', '/', preflight);
    expect(answer.status).toBe(200);
    expect(answer.headers).toMatchObject({
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD',
      'access-control-allow-headers': 'Authorization, Foo, Bar, Accept, Accept-Language, Content-Language',
      'access-control-max-age': '86400',
    });
  });

  it('"exposes necesssary response headers to regular request"; none without Origin', async () => {
    const answer = await ask([], 'GET', '/items', { Origin: 'http://example.com' });
    expect(answer.status).toBe(200);
    expect(answer.headers['access-control-expose-headers']).toBe(
      'Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, Transfer-Encoding, Range-Unit',
    );
    expect(answer.headers['access-control-allow-origin']).toBe('*');
    const plain = await ask([], 'GET', '/items', {});
    expect(Object.keys(plain.headers).filter((name) => name.startsWith('access-control-'))).toEqual([]);
  });

  it('with server-cors-allowed-origins: the origin itself and credentials; another origin gets no CORS header', async () => {
    const origins = ['http://example.com', 'http://example2.com'];
    const allowed = await ask(origins, 'OPTIONS', '/items', { ...preflight, 'Access-Control-Request-Headers': 'Content-Type' });
    expect(allowed.status).toBe(200);
    expect(allowed.headers).toMatchObject({ 'access-control-allow-origin': 'http://example.com', 'access-control-allow-credentials': 'true' });
    const get = await ask(origins, 'GET', '/items', { Accept: '*/*', Origin: 'http://example.com' });
    expect(get.headers['access-control-allow-origin']).toBe('http://example.com');
    const other = await ask(origins, 'GET', '/items', { Accept: '*/*', Origin: 'http://invalid.com' });
    expect(other.status).toBe(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('as strict as v16.2', () => {
  const bearer = async (claims: Record<string, unknown>, options: { alg?: 'HS256' | 'HS384' | 'HS512'; secret?: string } = {}) => {
    const { SignJWT } = await import('jose');
    const token = await new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'HS256' }).sign(new TextEncoder().encode(options.secret ?? TEST_JWT_SECRET));
    return { Authorization: `Bearer ${token}` };
  };

  it.each(['HS384', 'HS512'] as const)('1. a %s token signed with the secret is 401 PGRST301: a string secret is one HS256 key (Config.hs parseSecret)', async (alg) => {
    const response = await GET('/rpc/probe_settings', await bearer({ role: 'authenticated' }, { alg }));
    expect(response.status).toBe(401);
    expect(response.json()).toMatchObject({ code: 'PGRST301', message: 'No suitable key or wrong key type' });
  });

  it('2. another secret: "No suitable key or wrong key type", details "None of the keys was able to decode the JWT" (Error.hs JwtDecodeErr KeyError)', async () => {
    const response = await GET('/rpc/probe_settings', await bearer({ role: 'authenticated' }, { secret: 'another-secret-of-at-least-32-characters!!' }));
    expect(response.json()).toEqual({ code: 'PGRST301', message: 'No suitable key or wrong key type', details: 'None of the keys was able to decode the JWT', hint: null });
    expect(response.headers['www-authenticate']).toBe('Bearer error="invalid_token", error_description="No suitable key or wrong key type"');
  });

  it('3. PATCH with no body is 400 PGRST102; POST {} inserts a row of defaults (ApiRequest/Payload.hs getPayload; QueryBuilder.hs Insert)', async () => {
    const patched = await replay.request({ method: 'PATCH', url: '/writable?id=eq.1', headers: {} });
    expect(patched.status).toBe(400);
    expect(patched.json()).toMatchObject({ code: 'PGRST102', message: 'Empty or invalid json' });
    await db.sql.unsafe(`create table if not exists api.defaults_only (id bigint generated always as identity primary key, note text default 'd');
                         grant insert, select on api.defaults_only to anon`);
    const inserted = await POST('/defaults_only', {}, { Prefer: 'return=representation' });
    expect(inserted.status).toBe(201);
    expect(inserted.json()).toEqual([{ id: expect.any(Number), note: 'd' }]);
  });

  it('4. POST to a function of one unnamed json parameter with no body: 400 22P02, nothing runs (Payload.hs; SqlFragment.hs singleParameter)', async () => {
    const response = await replay.request({ method: 'POST', url: '/rpc/unnamed_json_param', headers: {}, body: null });
    expect(response.status).toBe(400);
    expect(response.json()).toMatchObject({ code: '22P02' });
  });

  it('5. only statement_timeout, plan_filter.statement_cost_limit and default_transaction_isolation are hoisted, the last setting the level (SchemaCache.hs; Config.hs defaultHoistedAllowList; MainTx.hs)', async () => {
    await db.sql.unsafe(`
      create or replace function api.probe_isolated() returns text language sql stable
        set default_transaction_isolation = 'repeatable read' as $$ select current_setting('transaction_isolation') $$;
      create or replace function api.probe_work_mem() returns text language sql stable
        set work_mem = '1234kB' as $$ select current_setting('work_mem') $$;
      -- Runs before the main query, after PostgREST's settings: it sees what was hoisted, and only that.
      create or replace function api.probe_pre_work_mem() returns void language sql as $$
        select set_config('response.headers', json_build_array(json_build_object('X-Work-Mem', current_setting('work_mem')))::text, true) $$;
      grant execute on function api.probe_isolated(), api.probe_work_mem(), api.probe_pre_work_mem() to anon`);
    expect((await GET('/rpc/probe_isolated')).json()).toBe('repeatable read');
    const [{ before }] = await db.sql<[{ before: string }]>`select current_setting('work_mem') as before`;
    const response = await rpc(authenticator, 'probe_work_mem', {}, { method: 'GET', preRequest: 'api.probe_pre_work_mem' });
    expect(response.body).toBe('1234kB'); // the function's own SET, applied by PostgreSQL on the call
    expect(response.headers['x-work-mem']).toBe(before); // not hoisted: the pre-request did not see it
  });

  it("6. RAISE SQLSTATE 'PGRST' whose DETAIL lacks headers is 500 PGRST121 (Error.hs FromJSON PgRaiseErrDetails)", async () => {
    const response = await GET('/rpc/probe_pgrst_no_headers');
    expect(response.status).toBe(500);
    expect(response.json()).toMatchObject({ code: 'PGRST121', details: `Invalid JSON value for DETAIL: '{"status":403}'` });
  });

  it('7. a 401 says WWW-Authenticate: Bearer, and every error names its code in Proxy-Status (Error.hs ErrorHeaders, errorResponseFor)', async () => {
    await db.sql.unsafe(`create or replace function api.probe_private() returns int language sql as 'select 1';
                         revoke execute on function api.probe_private() from public, anon`);
    const response = await GET('/rpc/probe_private');
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer');
    expect(response.headers['proxy-status']).toBe('PostgREST; error=42501');
    expect((await GET('/nowhere')).headers['proxy-status']).toBe('PostgREST; error=PGRST205');
  });

  it('8a. Prefer: count=exact gives the total in Content-Range, 206 for a part (Preferences.hs; RangeQuery.hs rangeStatusHeader)', async () => {
    const part = await GET('/items?order=id&limit=2', { Prefer: 'count=exact' });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe('0-1/15');
    expect(part.headers['preference-applied']).toBe('count=exact');
    const all = await GET('/rpc/probe_items', { Prefer: 'count=exact' });
    expect(all.status).toBe(200);
    expect(all.headers['content-range']).toBe('0-14/15');
  });

  it('8b. the Range header pages a GET; past the end with count=exact is 416 PGRST103 (ApiRequest.hs getRanges)', async () => {
    const ranged = await GET('/items?order=id', { Range: '2-4' });
    expect(ranged.json()).toEqual([{ id: 3 }, { id: 4 }, { id: 5 }]);
    expect(ranged.headers['content-range']).toBe('2-4/*');
    const beyond = await GET('/items?order=id&offset=20', { Prefer: 'count=exact' });
    expect(beyond.status).toBe(416);
    expect(beyond.json()).toMatchObject({ code: 'PGRST103', details: 'An offset of 20 was requested, but there are only 15 rows.' });
  });

  it('8c. Prefer: timezone sets the transaction time zone; handling=strict refuses an unknown preference with 400 PGRST122', async () => {
    const zoned = await GET('/rpc/probe_now', { Prefer: 'timezone=America/New_York' });
    expect(zoned.json()).toBe('America/New_York');
    expect(zoned.headers['preference-applied']).toBe('timezone=America/New_York');
    const strict = await GET('/items', { Prefer: 'handling=strict, frobnicate' });
    expect(strict.status).toBe(400);
    expect(strict.json()).toMatchObject({ code: 'PGRST122', details: 'Invalid preferences: frobnicate' });
    expect((await GET('/items?limit=1', { Prefer: 'frobnicate' })).status).toBe(200); // lenient: ignored
  });

  it('8d. what the replay does not model fails loudly instead of being ignored', async () => {
    await expect(GET('/items', { Prefer: 'count=planned' })).rejects.toThrow(/does not implement Prefer: count=planned/);
    await expect(replay.request({ method: 'PATCH', url: '/writable?id=eq.1', headers: { Prefer: 'handling=strict, max-affected=1', 'Content-Type': 'application/json' }, body: '{"note":"x"}' }))
      .rejects.toThrow(/max-affected/);
  });

  it('9. Accept is ordered by q, then specificity: "*/*, text/csv" is CSV (wai-extra parseHttpAccept)', async () => {
    const response = await GET('/items?order=id&limit=2', { Accept: '*/*, text/csv' });
    expect(response.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(response.text).toBe('id\n1\n2');
  });

  it('10. the first order and the first select win (QueryParams.hs lookupParam; Plan.hs addOrders)', async () => {
    const rows = (await GET('/writable?select=id&select=note&order=id.desc&order=id.asc')).json() as Record<string, number>[];
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(rows.every((row) => Object.keys(row).join() === 'id')).toBe(true);
    expect(rows.map((row) => row.id)).toEqual(rows.map((row) => row.id).sort((a, b) => b! - a!));
  });

  it('11. limit=-1 is 416 PGRST103 (QueryParams.hs ranges; ApiRequest.hs getRanges NegativeLimit)', async () => {
    const response = await GET('/items?limit=-1');
    expect(response.status).toBe(416);
    expect(response.json()).toMatchObject({ code: 'PGRST103', details: 'Limit should be greater than or equal to zero.' });
  });

  it('12. in.(1,2)x filters on 1 and 2: what follows the list is not read (QueryParams.hs pListVal)', async () => {
    expect((await GET('/items?id=in.(1,2)x&order=id')).json()).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it.each([
    ['Authorization: Bearer with no token', async () => ({ Authorization: 'Bearer' }), 'PGRST301', 'Empty JWT is sent in Authorization header'],
    ['a role that is a number', () => bearer({ role: 5 }), '22023', 'role "5" does not exist'],
    ['an aud that is a number', () => bearer({ role: 'authenticated', aud: 1 }), 'PGRST303', "The JWT 'aud' claim must be a string or an array of strings"],
  ])('13. %s is 401 (wai-extra extractBearerAuth; Auth/Jwt.hs parseClaims)', async (_what, headers, code, message) => {
    const response = await GET('/rpc/probe_settings', await headers());
    expect(response.status).toBe(401);
    expect(response.json()).toMatchObject({ code, message });
  });
});

