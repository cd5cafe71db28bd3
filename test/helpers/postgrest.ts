// Stands in for PostgREST v16.2 where it cannot be installed (see shared notes, "What PostgREST
// does to a request"). Two ways in:
// - `createReplay` (./postgrest/replay.ts): a whole HTTP request — method, URL and query keys,
//   headers, JWT, body — planned and answered as PostgREST does; `rpc` and `get` below are short
//   forms of it, and `replay.fetch` serves the SDK and postgrest-js.
// - `postgrestRequest`: PostgREST's transaction (role, settings, pre-request, status mapping)
//   around SQL a test writes itself — for probing what a role could do beyond the documented
//   calls (an attacker's hand-written query).
import postgres from 'postgres';
import type { Sql } from './database.js';
import { postgrestConfig, type PostgrestConfig } from './postgrest/config.js';
import { roleClaim, signClaims } from './postgrest/jwt.js';
import { createReplay, type ReplayResponse } from './postgrest/replay.js';
import { inRequestTransaction, requestHeaders, type PostgrestErrorBody } from './postgrest/transaction.js';

export { postgrestConfig, postgrestEnvironment, postgrestService, type PostgrestConfig } from './postgrest/config.js';
export { createReplay, type Replay, type ReplayRequest, type ReplayResponse } from './postgrest/replay.js';
export { httpStatusFor } from './postgrest/status.js';
export { isReservedKey } from './postgrest/query-string.js';
export { signClaims, verifyJwt } from './postgrest/jwt.js';
export type { PostgrestErrorBody } from './postgrest/transaction.js';

/** The JWT secret the tests' PostgREST verifies with (PGRST_JWT_SECRET; 32+ characters). */
export const TEST_JWT_SECRET = 'kpi-history-test-jwt-secret-0123456789abcdef';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface PostgrestRequest {
  method: HttpMethod;
  /** The URL path without query string, e.g. `/rpc/kpi_history_cron` or `/kpi_history`. */
  path: string;
  /** Verified JWT claims; omitted or null means no JWT (PostgREST uses the anon role). */
  claims?: Record<string, unknown> | null;
  /** Request headers; names are lowercased as PostgREST does. */
  headers?: Record<string, string>;
  cookies?: Record<string, string>;
  /** Overrides the configured pre-request function (tests of the helper itself). */
  preRequest?: string | null;
}

export interface PostgrestResponse<T> {
  status: number;
  /** Lowercased names. */
  headers: Record<string, string>;
  /** The JSON body parsed, the text of any other body, undefined when there is none. */
  body: T | PostgrestErrorBody;
  /** True when PostgREST would have committed (false: rolled back by an error). */
  committed: boolean;
}

/**
 * A connection pool logged in as PostgREST's `authenticator` role. Create one per test file and
 * end it in `afterAll`.
 */
export function connectAsAuthenticator(urlAsAuthenticator: string): Sql {
  return postgres(urlAsAuthenticator, { max: 4, onnotice: () => {} });
}

/** The replay's answer in the shape the API tests assert on. */
export function asPostgrestResponse<T>(response: ReplayResponse): PostgrestResponse<T> {
  const isJson = (response.headers['content-type'] ?? '').startsWith('application/json');
  const body = response.text === '' ? undefined : isJson ? response.json() : response.text;
  return { status: response.status, headers: response.headers, body: body as T, committed: response.committed };
}

export interface CallOptions {
  method?: HttpMethod;
  /** Signed into a bearer token with TEST_JWT_SECRET; omitted or null: no token. */
  claims?: Record<string, unknown> | null;
  headers?: Record<string, string>;
  preRequest?: string | null;
  config?: PostgrestConfig;
}

async function send<T>(sql: Sql, method: HttpMethod, url: string, body: string | null, options: CallOptions): Promise<PostgrestResponse<T>> {
  const config = options.config ?? { ...postgrestConfig(), ...(options.preRequest !== undefined ? { preRequest: options.preRequest } : {}) };
  const headers: Record<string, string> = { ...options.headers };
  if (options.claims) headers.Authorization = `Bearer ${await signClaims(options.claims, TEST_JWT_SECRET)}`;
  if (body !== null && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
  const replay = createReplay(sql, { jwtSecret: TEST_JWT_SECRET, config });
  return asPostgrestResponse<T>(await replay.request({ method, url, headers, body }));
}

/**
 * `POST /rpc/<fn>` with `args` as the JSON body, or with `method: 'GET'` the same arguments as
 * query keys — through the whole replay, so PostgREST's rules on names and bodies apply.
 */
export function rpc<T = unknown>(sql: Sql, fn: string, args: Record<string, unknown>, options: CallOptions = {}): Promise<PostgrestResponse<T>> {
  const method = options.method ?? 'POST';
  if (method === 'GET' || method === 'HEAD') {
    const query = new URLSearchParams(Object.entries(args).map(([k, v]) => [k, String(v)]));
    return send<T>(sql, method, `/rpc/${fn}${query.size ? `?${query}` : ''}`, null, options);
  }
  return send<T>(sql, method, `/rpc/${fn}`, JSON.stringify(args), options);
}

/** `POST`, `PATCH` or `DELETE` on a view through the whole replay, `body` sent as JSON. */
export function write<T = unknown>(
  sql: Sql,
  method: 'POST' | 'PATCH' | 'DELETE',
  pathAndQuery: string,
  body: unknown,
  options: Omit<CallOptions, 'method'> = {},
): Promise<PostgrestResponse<T>> {
  return send<T>(sql, method, pathAndQuery, body === undefined ? null : JSON.stringify(body), options);
}

/** `GET <pathAndQuery>` through the whole replay. */
export function get<T = unknown>(sql: Sql, pathAndQuery: string, options: Omit<CallOptions, 'method'> = {}): Promise<PostgrestResponse<T>> {
  return send<T>(sql, 'GET', pathAndQuery, null, options);
}

/**
 * Runs `main` inside PostgREST's transaction for `request`: the role, the settings, the
 * pre-request function, the error mapping — with SQL the test writes itself instead of the
 * query PostgREST would plan. For what a role could do beyond the documented calls.
 */
export async function postgrestRequest<T>(
  sql: Sql,
  request: PostgrestRequest,
  main: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<PostgrestResponse<T>> {
  const config = postgrestConfig();
  const claims = request.claims ?? {};
  const role = roleClaim(claims) ?? config.anonRole;
  const outcome = await inRequestTransaction(
    sql,
    config,
    {
      method: request.method,
      path: request.path,
      role,
      claims,
      headers: requestHeaders(request.headers),
      cookies: request.cookies ?? {},
      readOnly: request.method === 'GET' || request.method === 'HEAD',
      preRequest: request.preRequest === undefined ? config.preRequest : request.preRequest,
    },
    main,
  );
  if (!outcome.ok) return { status: outcome.status, headers: outcome.headers, body: outcome.body, committed: false };
  const headers: Record<string, string> = {};
  for (const entry of JSON.parse(outcome.responseHeaders ?? '[]') as Record<string, string>[]) {
    for (const [name, value] of Object.entries(entry)) headers[name.toLowerCase()] = value;
  }
  const empty = outcome.value === undefined;
  return {
    status: outcome.responseStatus ? Number(outcome.responseStatus) : empty ? 204 : 200,
    headers,
    body: outcome.value,
    committed: true,
  };
}
