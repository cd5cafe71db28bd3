// Runs a callback exactly as PostgREST runs a request against the database (see
// shared notes, "What PostgREST does to a request"): one READ COMMITTED transaction, as the
// `authenticator` login role, with the transaction-local settings PostgREST sets, the pre-request
// function, the main query, then the response status/headers the query asked for. Errors are turned
// into the HTTP status and body PostgREST would answer with.
//
// The configuration (exposed schema, anon role, pre-request function) is read from
// docker-compose.yml, so the tests and the deployed PostgREST cannot drift apart.
import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { parse } from 'yaml';
import { projectRoot } from './dbmate.js';
import type { Sql } from './database.js';

export interface PostgrestConfig {
  schemas: string[];
  extraSearchPath: string[];
  anonRole: string;
  preRequest: string | null;
  maxRows: number | null;
}

export function postgrestEnvironment(): Record<string, string> {
  const compose = parse(readFileSync(`${projectRoot}docker-compose.yml`, 'utf8'));
  return compose.services.postgrest.environment as Record<string, string>;
}

export function postgrestConfig(): PostgrestConfig {
  const env = postgrestEnvironment();
  const list = (value: string | undefined, fallback: string) =>
    (value ?? fallback)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return {
    schemas: list(env.PGRST_DB_SCHEMAS, 'public'),
    extraSearchPath: list(env.PGRST_DB_EXTRA_SEARCH_PATH, 'public'),
    anonRole: env.PGRST_DB_ANON_ROLE ?? 'anon',
    preRequest: env.PGRST_DB_PRE_REQUEST || null,
    maxRows: env.PGRST_DB_MAX_ROWS ? Number(env.PGRST_DB_MAX_ROWS) : null,
  };
}

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
  headers: Record<string, string>;
  body: T | PostgrestErrorBody;
  /** True when PostgREST would have committed (false: rolled back by an error). */
  committed: boolean;
}

export interface PostgrestErrorBody {
  code: string;
  message: string;
  details: string | null;
  hint: string | null;
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** `schema.name` → `"schema"."name"`; a bare name is looked up in the first exposed schema. */
function qualified(name: string, config: PostgrestConfig): string {
  const [schema, fn] = name.includes('.') ? name.split('.', 2) : [config.schemas[0]!, name];
  return `${quoteIdent(schema!)}.${quoteIdent(fn!)}`;
}

interface RoutineInfo {
  volatile: boolean;
  returnsVoid: boolean;
}

/** What PostgREST reads from its schema cache about the function behind `/rpc/<name>`. */
async function routineInfo(sql: Sql, path: string, config: PostgrestConfig): Promise<RoutineInfo | null> {
  const rpc = /^\/rpc\/([^/]+)$/.exec(path);
  if (!rpc) return null;
  const [info] = await sql<{ volatile: boolean; returns_void: boolean }[]>`
    select bool_or(p.provolatile = 'v') as volatile, bool_and(p.prorettype = 'void'::regtype) as returns_void
    from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = ${config.schemas[0]!} and p.proname = ${rpc[1]!}`;
  return info?.volatile == null ? null : { volatile: info.volatile, returnsVoid: info.returns_void };
}

/** PostgREST opens RPC POSTs READ WRITE only for VOLATILE functions; everything GET is READ ONLY. */
function accessMode(request: PostgrestRequest, routine: RoutineInfo | null): string {
  if (request.method === 'GET' || request.method === 'HEAD') return 'read only';
  if (routine && !routine.volatile) return 'read only';
  return 'read write';
}

/** SQLSTATE → HTTP status, as PostgREST maps database errors. */
export function httpStatusFor(sqlstate: string, usedJwtRole: boolean): number {
  if (/^PT\d{3}$/.test(sqlstate)) return Number(sqlstate.slice(2));
  if (sqlstate === '42501') return usedJwtRole ? 403 : 401;
  if (sqlstate === '23505' || sqlstate === '23503') return 409;
  if (sqlstate === '25006') return 405;
  if (sqlstate === '42883' || sqlstate === '42P01') return 404;
  if (sqlstate === 'P0001') return 400;
  if (sqlstate.startsWith('08') || sqlstate.startsWith('53')) return 503;
  if (sqlstate.startsWith('22') || sqlstate.startsWith('23')) return 400;
  return 500;
}

type DbError = postgres.PostgresError;

function errorResponse(error: DbError, usedJwtRole: boolean): Omit<PostgrestResponse<never>, 'committed'> {
  if (error.code === 'PGRST') {
    // RAISE SQLSTATE 'PGRST': MESSAGE is the body, DETAIL carries status and headers.
    try {
      const body = JSON.parse(error.message) as Partial<PostgrestErrorBody>;
      const detail = JSON.parse(error.detail ?? '') as { status: number; headers: Record<string, string> };
      if (typeof body.code !== 'string' || typeof body.message !== 'string' || typeof detail.status !== 'number') {
        throw new Error('incomplete');
      }
      return {
        status: detail.status,
        headers: detail.headers ?? {},
        body: { code: body.code, message: body.message, details: body.details ?? null, hint: body.hint ?? null },
      };
    } catch {
      return {
        status: 500,
        headers: {},
        body: { code: 'PGRST121', message: 'Could not parse JSON in the "RAISE SQLSTATE \'PGRST\'" error', details: null, hint: null },
      };
    }
  }
  return {
    status: httpStatusFor(error.code, usedJwtRole),
    headers: {},
    body: { code: error.code, message: error.message, details: error.detail ?? null, hint: error.hint ?? null },
  };
}

/** `response.headers` is a JSON array of one-key objects. */
function parseResponseHeaders(raw: string | null): Record<string, string> {
  if (!raw) return {};
  const headers: Record<string, string> = {};
  for (const entry of JSON.parse(raw) as Record<string, string>[]) Object.assign(headers, entry);
  return headers;
}

/**
 * A connection pool logged in as PostgREST's `authenticator` role. Create one per test file and
 * end it in `afterAll`.
 */
export function connectAsAuthenticator(urlAsAuthenticator: string): Sql {
  return postgres(urlAsAuthenticator, { max: 4, onnotice: () => {} });
}

/**
 * Runs `main` as PostgREST would run the request's main query. `main` receives the transaction.
 * The result mirrors the HTTP response: status, headers (from `response.headers`/`response.status`
 * when the query set them) and body (main's return value, or the error body).
 */
export async function postgrestRequest<T>(
  sql: Sql,
  request: PostgrestRequest,
  main: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<PostgrestResponse<T>> {
  const config = postgrestConfig();
  const claims = request.claims ?? { role: config.anonRole };
  const role = typeof claims.role === 'string' ? claims.role : config.anonRole;
  if (!('role' in claims)) Object.assign(claims, { role });
  const usedJwtRole = role !== config.anonRole;
  const headers = Object.fromEntries(
    Object.entries(request.headers ?? {})
      .filter(([name]) => name.toLowerCase() !== 'cookie')
      .map(([name, value]) => [name.toLowerCase(), value]),
  );
  const searchPath = [config.schemas[0]!, ...config.extraSearchPath].map(quoteIdent).join(', ');
  const preRequest = request.preRequest === undefined ? config.preRequest : request.preRequest;
  const routine = await routineInfo(sql, request.path, config);
  const mode = accessMode(request, routine);

  let responseStatus: string | null = null;
  let responseHeaders: string | null = null;
  try {
    const body = await sql.begin(`isolation level read committed ${mode}`, async (tx) => {
      // The role's own `ALTER ROLE … SET` settings are applied by PostgREST too; ours have none.
      await tx`
        select set_config('search_path', ${searchPath}, true),
               set_config('role', ${role}, true),
               set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
               set_config('request.method', ${request.method}, true),
               set_config('request.path', ${request.path}, true),
               set_config('request.headers', ${JSON.stringify(headers)}, true),
               set_config('request.cookies', ${JSON.stringify(request.cookies ?? {})}, true)`;
      if (preRequest) await tx.unsafe(`select ${qualified(preRequest, config)}()`);
      const result = await main(tx);
      const [settings] = await tx<{ status: string | null; headers: string | null }[]>`
        select nullif(current_setting('response.status', true), '') as status,
               nullif(current_setting('response.headers', true), '') as headers`;
      responseStatus = settings?.status ?? null;
      responseHeaders = settings?.headers ?? null;
      return result;
    });
    const empty = body === undefined || routine?.returnsVoid === true;
    const status = responseStatus ? Number(responseStatus) : empty ? 204 : 200;
    return {
      status,
      headers: parseResponseHeaders(responseHeaders),
      body: (empty ? undefined : body) as T,
      committed: true,
    };
  } catch (error) {
    if (!(error instanceof postgres.PostgresError)) throw error;
    return { ...errorResponse(error, usedJwtRole), committed: false };
  }
}

/**
 * `POST /rpc/<fn>` with a JSON body. With `wholeBody`, the function takes a single unnamed json
 * parameter and receives the body as is; otherwise each key is a named argument.
 */
export function rpc<T = unknown>(
  sql: Sql,
  fn: string,
  body: Record<string, unknown>,
  request: Omit<PostgrestRequest, 'path' | 'method'> & { method?: HttpMethod; wholeBody?: boolean } = {},
): Promise<PostgrestResponse<T>> {
  const config = postgrestConfig();
  const { wholeBody, method = 'POST', ...rest } = request;
  return postgrestRequest<T>(sql, { ...rest, method, path: `/rpc/${fn}` }, async (tx) => {
    const target = qualified(fn, config);
    if (wholeBody) {
      const [row] = await tx.unsafe(`select ${target}($1::json) as result`, [body as never]);
      return row?.result as T;
    }
    const names = Object.keys(body);
    const args = names.map((name, i) => `${quoteIdent(name)} := $${i + 1}`).join(', ');
    const values = names.map((name) => body[name] as postgres.ParameterOrJSON<never>);
    const [row] = await tx.unsafe(`select ${target}(${args}) as result`, values as never[]);
    return row?.result as T;
  });
}
