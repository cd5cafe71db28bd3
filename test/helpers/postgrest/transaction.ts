// One request = one transaction, as PostgREST v16.2 runs it (src/library/PostgREST/MainTx.hs and
// Query/PreQuery.hs): BEGIN at the function's or the role's isolation level (READ COMMITTED
// otherwise) with the access mode of the plan, one SELECT of transaction-local set_config calls
// (search_path, the impersonated role's own settings, role, request.jwt.claims with the role in
// it, request.method, request.path, request.headers, request.cookies, the function's hoisted SET
// settings), the pre-request function as the request's role, the main query, COMMIT.
import postgres from 'postgres';
import type { Sql } from '../database.js';
import { qualified, quoteIdent, type PostgrestConfig } from './config.js';
import { impersonatedRoleSettings } from './schema-cache.js';
import { httpStatusFor } from './status.js';

export interface RequestContext {
  method: string;
  /** The URL path without query string. */
  path: string;
  role: string;
  /** Verified JWT claims (the role is added, as PostgREST does). */
  claims: Record<string, unknown>;
  /** Lowercased names, without `cookie`. */
  headers: Record<string, string>;
  cookies: Record<string, string>;
  readOnly: boolean;
  preRequest: string | null;
  /** `Prefer: timezone=…` (PreQuery.hs: set after the cookies, before the function's settings). */
  timezone?: string | null;
  /** The called function's hoisted `SET` clauses. */
  settings?: [string, string][];
  /** The called function's `SET default_transaction_isolation`. */
  isolationLevel?: string | null;
}

export interface PostgrestErrorBody {
  code: string;
  message: string;
  details: string | null;
  hint: string | null;
}

export type TransactionOutcome<T> =
  | { ok: true; value: T; responseStatus: string | null; responseHeaders: string | null }
  | { ok: false; status: number; headers: Record<string, string>; body: PostgrestErrorBody };

/** Lowercases header names and drops `cookie`, as PostgREST does for request.headers. */
export function requestHeaders(headers: Record<string, string> = {}): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers)
      .filter(([name]) => name.toLowerCase() !== 'cookie')
      .map(([name, value]) => [name.toLowerCase(), value]),
  );
}

export async function inRequestTransaction<T>(
  sql: Sql,
  config: PostgrestConfig,
  context: RequestContext,
  main: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<TransactionOutcome<T>> {
  const searchPath = [config.schemas[0]!, ...config.extraSearchPath].map(quoteIdent).join(', ');
  const claims = { ...context.claims, role: context.role };
  let responseStatus: string | null = null;
  let responseHeaders: string | null = null;
  // Read when PostgREST starts (and on a schema reload); here, for every request.
  const roleSettings = await impersonatedRoleSettings(sql, context.role);
  // MainTx.hs planIsoLvl: the function's level, else the role's, else READ COMMITTED.
  const level = (context.isolationLevel ?? roleSettings.isolationLevel ?? '').toLowerCase();
  const isolation = level === 'repeatable read' || level === 'serializable' ? level : 'read committed';
  try {
    const value = await sql.begin(`isolation level ${isolation} ${context.readOnly ? 'read only' : 'read write'}`, async (tx) => {
      // Before the role: a GRANT SET ON PARAMETER to the authenticator is then enough (PreQuery.hs).
      const settings: [string, string][] = [
        ['search_path', searchPath],
        ...roleSettings.settings,
        ['role', context.role],
        ['request.jwt.claims', JSON.stringify(claims)],
        ['request.method', context.method],
        ['request.path', context.path],
        ['request.headers', JSON.stringify(context.headers)],
        ['request.cookies', JSON.stringify(context.cookies)],
        ...(context.timezone ? ([['timezone', context.timezone]] as [string, string][]) : []),
        ...(context.settings ?? []),
      ];
      await tx.unsafe(
        `select ${settings.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`,
        settings.flat(),
      );
      if (context.preRequest) await tx.unsafe(`select ${qualified(context.preRequest, config)}()`);
      const result = await main(tx);
      const [guc] = await tx<{ status: string | null; headers: string | null }[]>`
        select nullif(current_setting('response.status', true), '') as status,
               nullif(current_setting('response.headers', true), '') as headers`;
      responseStatus = guc?.status ?? null;
      responseHeaders = guc?.headers ?? null;
      return result;
    });
    return { ok: true, value: value as T, responseStatus, responseHeaders };
  } catch (error) {
    if (!(error instanceof postgres.PostgresError)) throw error;
    return { ok: false, ...errorAnswer(error, context.role !== config.anonRole) };
  }
}

/** A database error as PostgREST answers it (Error.hs: `mapSQLtoHTTP`, and RAISE SQLSTATE 'PGRST'). */
export function errorAnswer(
  error: postgres.PostgresError,
  authenticated: boolean,
): { status: number; headers: Record<string, string>; body: PostgrestErrorBody } {
  if (error.code === 'PGRST') {
    // Error.hs `parseRaisePGRST`: MESSAGE a JSON object with code and message, DETAIL one with
    // status and headers (status_text optional); anything else is PGRST121.
    const parseError = (details: string, hint: string) => ({
      status: 500,
      headers: {},
      body: { code: 'PGRST121', message: 'Could not parse JSON in the "RAISE SQLSTATE \'PGRST\'" error', details, hint },
    });
    const detailHint = "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional key: 'status_text'.";
    const body = parseJson(error.message) as Partial<PostgrestErrorBody> | undefined;
    if (!isObject(body) || typeof body.code !== 'string' || typeof body.message !== 'string') {
      return parseError(`Invalid JSON value for MESSAGE: '${error.message}'`, "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: 'details', 'hint'.");
    }
    if (error.detail === undefined) return parseError('DETAIL is missing in the RAISE statement', detailHint);
    const detail = parseJson(error.detail) as { status?: unknown; headers?: unknown } | undefined;
    if (
      !isObject(detail) || !Number.isInteger(detail.status) || !isObject(detail.headers) ||
      !Object.values(detail.headers as Record<string, unknown>).every((v) => typeof v === 'string')
    ) {
      return parseError(`Invalid JSON value for DETAIL: '${error.detail}'`, detailHint);
    }
    return {
      status: detail.status as number,
      headers: detail.headers as Record<string, string>,
      body: { code: body.code, message: body.message, details: body.details ?? null, hint: body.hint ?? null },
    };
  }
  const status = httpStatusFor(error.code, authenticated, error.message);
  return {
    status,
    // Error.hs `ErrorHeaders PgError`: a 401 asks for a token.
    headers: status === 401 ? { 'www-authenticate': 'Bearer' } : {},
    body: { code: error.code, message: error.message, details: error.detail ?? null, hint: error.hint ?? null },
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
