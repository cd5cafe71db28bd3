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
    // MESSAGE is the body (code and message required), DETAIL the status and headers.
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
    status: httpStatusFor(error.code, authenticated, error.message),
    headers: {},
    body: { code: error.code, message: error.message, details: error.detail ?? null, hint: error.hint ?? null },
  };
}
