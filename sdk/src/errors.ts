// One error class for both entries. Calls throw it (they never return { data, error }): a result
// is always the data, so `await client.history()` is all a caller writes, and `try/catch` with
// `error.code` handles failures.
import { DATABASE_ERRORS, type DatabaseErrorCode } from './database.types.js';

/** Every code a KpiHistoryError can carry: the database's own, plus what only a client can see. */
export const KPI_ERROR_CODES = [
  ...(Object.keys(DATABASE_ERRORS) as DatabaseErrorCode[]),
  /** No or an invalid JWT, or a role without the privilege (PostgREST 401, SQLSTATE 42501 as anon). */
  'UNAUTHORIZED',
  /** The request never got an HTTP answer (DNS, connection refused, CORS, offline…). */
  'NETWORK_ERROR',
  /** An answer the SDK does not understand (not JSON, an unknown PostgREST error…). */
  'UNEXPECTED_RESPONSE',
  /** Too many at once (the stream: streams per token or per tenant); try again after Retry-After. */
  'RATE_LIMITED',
] as const;

export type KpiErrorCode = (typeof KPI_ERROR_CODES)[number];

export interface KpiHistoryErrorInit {
  code: KpiErrorCode;
  message: string;
  status?: number;
  details?: string | null;
  hint?: string | null;
  /** The server's own code when it differs from `code` (a SQLSTATE such as 42501, or PGRST301). */
  serverCode?: string;
  cause?: unknown;
}

export class KpiHistoryError extends Error {
  override readonly name = 'KpiHistoryError';
  readonly code: KpiErrorCode;
  /** The HTTP status, when the error came over HTTP. */
  readonly status: number | undefined;
  readonly details: string | null;
  readonly hint: string | null;
  readonly serverCode: string | undefined;

  constructor(init: KpiHistoryErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status;
    this.details = init.details ?? null;
    this.hint = init.hint ?? null;
    this.serverCode = init.serverCode;
  }
}

const isDatabaseCode = (code: string): code is DatabaseErrorCode => Object.hasOwn(DATABASE_ERRORS, code);

/** The database's SQLSTATE (KHnnn) → our code; undefined for any other SQLSTATE. */
export function codeForSqlstate(sqlstate: string): DatabaseErrorCode | undefined {
  return (Object.keys(DATABASE_ERRORS) as DatabaseErrorCode[]).find((code) => DATABASE_ERRORS[code].sqlstate === sqlstate);
}

/**
 * The code for an error body {code, message, …} answered with `status` by PostgREST: our own
 * names pass through; PostgreSQL's and PostgREST's codes are mapped by what they mean.
 */
export function codeForHttpError(serverCode: string | undefined, status: number): KpiErrorCode {
  if (serverCode && isDatabaseCode(serverCode)) return serverCode;
  const fromSqlstate = serverCode ? codeForSqlstate(serverCode) : undefined;
  if (fromSqlstate) return fromSqlstate;
  if (status === 401) return 'UNAUTHORIZED';
  if (status === 403) return 'FORBIDDEN';
  if (status === 400 || status === 404 || status === 405 || status === 406 || status === 409 || status === 422) {
    return 'INVALID_INPUT';
  }
  if (status === 429) return 'RATE_LIMITED';
  if (status >= 500) return 'INTERNAL_ERROR';
  return 'UNEXPECTED_RESPONSE';
}
