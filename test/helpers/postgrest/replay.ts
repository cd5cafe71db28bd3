// The whole of a PostgREST v16.2 request, replayed against the database: from method, URL, headers
// and body to the SQL PostgREST runs and the HTTP answer it gives. It exists because PostgREST
// cannot be installed where the tests run; each step names the file of PostgREST's source
// (repository PostgREST/postgrest, tag v16.2) it follows. What it does not implement it refuses
// with ReplayUnsupported instead of guessing.
//
//   const api = createReplay(authenticatorSql, { jwtSecret });
//   const res = await api.request({ method: 'GET', url: '/rpc/kpi_history_csv?weeks=12', headers });
//   createKpiHistoryClient({ url: 'http://postgrest.test', token, fetch: api.fetch })
import type postgres from 'postgres';
import type { Sql } from '../database.js';
import { postgrestConfig, quoteIdent, type PostgrestConfig } from './config.js';
import { roleClaim, verifyJwt } from './jwt.js';
import { parseListValue, parseQueryString, QueryStringError, RangeError416, ReplayUnsupported, topLevelRange, type Filter, type QueryString, type RowRange } from './query-string.js';
import { checkModelled, parsePreferences, preferenceApplied, type PlanKind, type Preferences } from './preferences.js';
import { findRoutine, relationColumns, relationExists, routinesNamed, type Routine } from './schema-cache.js';
import { inRequestTransaction, isObject, requestHeaders, type PostgrestErrorBody } from './transaction.js';

export interface ReplayRequest {
  method: string;
  /** Path and query string (`/rpc/kpi_history_csv?weeks=12`), or a whole URL. */
  url: string;
  headers?: Record<string, string>;
  body?: string | null;
}

export interface ReplayResponse {
  status: number;
  /** Lowercased names. */
  headers: Record<string, string>;
  text: string;
  /** The main query, when the request got that far. */
  sql: string | null;
  /** False when the transaction rolled back (an error) or never started. */
  committed: boolean;
  json<T = unknown>(): T;
}

export interface ReplayOptions {
  /** PGRST_JWT_SECRET; without it a request carrying a token is 500 PGRST300, as in PostgREST. */
  jwtSecret?: string;
  config?: PostgrestConfig;
  now?: () => Date;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const CSV_TYPE = 'text/csv; charset=utf-8';

type Handler =
  | { kind: 'json' }
  | { kind: 'csv' }
  | { kind: 'media-type-function'; mediaType: string; domain: string };

function respond(status: number, headers: Record<string, string>, text: string, sql: string | null, committed: boolean): ReplayResponse {
  return {
    status,
    headers: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value])),
    text,
    sql,
    committed,
    json: <T>() => JSON.parse(text) as T,
  };
}

/** Error.hs `errorResponseFor`: every error names its code in Proxy-Status. */
function errorResponse(status: number, body: PostgrestErrorBody, headers: Record<string, string> = {}, sql: string | null = null): ReplayResponse {
  return respond(status, { 'content-type': JSON_TYPE, 'proxy-status': `PostgREST; error=${body.code}`, ...headers }, JSON.stringify(body), sql, false);
}

const error = (code: string, message: string, details: string | null = null, hint: string | null = null): PostgrestErrorBody => ({
  code,
  message,
  details,
  hint,
});

/**
 * The Accept header as media types, best first: wai-extra `parseHttpAccept` — spaces removed, by
 * q, then by specificity (parameters count up, `*` down), then in the order given — each reduced
 * to its type for negotiation. No Accept is `*\/*` (ApiRequest.hs).
 */
function acceptedMediaTypes(accept: string | undefined): string[] {
  if (accept === undefined) return ['*/*'];
  return accept
    .split(',')
    .map((part, index) => {
      const entry = part.replaceAll(' ', '');
      const at = entry.indexOf(';q=');
      const type = at === -1 ? entry : entry.slice(0, at);
      const qText = at === -1 ? '' : entry.slice(at + 3).split(';')[0]!;
      const q = /^\d+(\.\d+)?([eE][-+]?\d+)?$/.test(qText) ? Number(qText) : 1;
      const specificity = (type.match(/;/g)?.length ?? 0) - (type.match(/\*/g)?.length ?? 0);
      return { type: type.split(';')[0]!.toLowerCase(), q, specificity, index };
    })
    .sort((a, b) => b.q - a.q || b.specificity - a.specificity || a.index - b.index)
    .map((entry) => entry.type);
}

/**
 * Plan/Negotiate.hs `negotiateContent`: the first accepted type that has a handler. A function
 * returning a media type domain handles exactly that type when `select` is the default; the
 * built-in handlers take `*​/*` and application/json (JSON) and text/csv (PostgREST's own CSV).
 */
function negotiate(accepts: string[], routine: Routine | null, defaultSelect: boolean): { handler: Handler; contentType: string } | null {
  for (const type of accepts) {
    if (type.startsWith('application/vnd.pgrst') || type === 'application/geo+json') {
      throw new ReplayUnsupported(`the ${type} media type`);
    }
    if (defaultSelect && routine?.returnsMediaType === type) {
      return {
        handler: { kind: 'media-type-function', mediaType: type, domain: `${quoteIdent(routine.schema)}.${quoteIdent(type)}` },
        contentType: type === 'text/csv' ? CSV_TYPE : type,
      };
    }
    if (type === '*/*' || type === 'application/json') return { handler: { kind: 'json' }, contentType: JSON_TYPE };
    if (type === 'text/csv') return { handler: { kind: 'csv' }, contentType: CSV_TYPE };
  }
  return null;
}

/** Query/SqlFragment.hs `handlerF`: the body expression over `_postgrest_t`. */
function bodyExpression(handler: Handler, routine: Routine | null): string {
  const scalar = routine !== null && !routine.returnsComposite;
  switch (handler.kind) {
    case 'media-type-function':
      return `${handler.domain}(_postgrest_t.pgrst_scalar)`;
    case 'csv':
      // asCsvF: the keys of the first row, then each row's record text without its parentheses.
      return `(select coalesce(string_agg(a.k, ','), '') from (select json_object_keys(r)::text as k from (select row_to_json(hh) as r from pgrst_source as hh limit 1) s) a)
              || '\n' || coalesce(string_agg(substring(_postgrest_t::text, 2, length(_postgrest_t::text) - 2), '\n'), '')`;
    case 'json':
      if (routine && !routine.returnsSet) {
        return scalar ? `coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')` : `coalesce(json_agg(_postgrest_t)->0, 'null')`;
      }
      return scalar ? `coalesce(json_agg(_postgrest_t.pgrst_scalar), '[]')` : `coalesce(json_agg(_postgrest_t), '[]')`;
  }
}

/** LIMIT/OFFSET of the top-level range, `db-max-rows` applied (RangeQuery.hs `restrictRange`). */
function limitOffset(range: RowRange, config: PostgrestConfig, params: unknown[]): string {
  const wanted = range.upper === null ? null : range.upper - range.lower + 1;
  const limit = wanted === null ? config.maxRows : config.maxRows === null ? wanted : Math.min(wanted, config.maxRows);
  if (limit === null && range.lower === 0) return '';
  let clause = ' limit all';
  if (limit !== null) {
    params.push(String(limit));
    clause = ` limit $${params.length}`;
  }
  params.push(String(range.lower));
  return `${clause} offset $${params.length}`;
}

/** Query/SqlFragment.hs: the filters the replay implements (the ones this project documents). */
function filterSql(target: string, filter: Filter, params: unknown[]): string {
  const column = `${target}.${quoteIdent(filter.column)}`;
  const simple: Record<string, string> = { eq: '=', neq: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' };
  let condition: string;
  if (filter.operator in simple) {
    params.push(filter.value);
    condition = `${column} ${simple[filter.operator]} $${params.length}`;
  } else if (filter.operator === 'like' || filter.operator === 'ilike') {
    params.push(filter.value.replaceAll('*', '%'));
    condition = `${column} ${filter.operator} $${params.length}`;
  } else if (filter.operator === 'is') {
    const keyword = { null: 'null', not_null: 'not null', true: 'true', false: 'false', unknown: 'unknown' }[filter.value.toLowerCase()];
    if (!keyword) throw new QueryStringError(`failed to parse filter (is.${filter.value})`);
    condition = `${column} is ${keyword}`;
  } else if (filter.operator === 'in') {
    // `= ANY('{…}')`: an array literal of unknown type, read as the column's array type (`in.()`
    // is the empty array, which matches nothing).
    const list = parseListValue(filter.value);
    params.push(list.length === 1 && list[0] === '' ? '{}' : `{${list.map(arrayElement).join(',')}}`);
    condition = `${column} = any($${params.length})`;
  } else {
    throw new ReplayUnsupported(`the ${filter.operator} operator`);
  }
  return filter.negated ? `not (${condition})` : condition;
}

/** SqlFragment.hs `pgBuildArrayLiteral`: each element double-quoted, `\\` and `"` escaped. */
function arrayElement(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

function orderSql(target: string, query: QueryString): string {
  if (query.order.length === 0) return '';
  const terms = query.order.map(
    (term) =>
      `${target}.${quoteIdent(term.column)}${term.direction ? ` ${term.direction}` : ''}${term.nulls ? ` nulls ${term.nulls.slice(5)}` : ''}`,
  );
  return ` order by ${terms.join(', ')}`;
}

/**
 * Statements.hs `mainRead` / `mainCall`: the one statement, around `pgrst_source`; `total` counts
 * every row the request matches when `Prefer: count=exact` asks (else null).
 */
function mainStatement(source: string, handler: Handler, routine: Routine | null, readSql: string, total: string | null = null): string {
  const pageTotal = routine && !routine.returnsSet ? '1' : 'pg_catalog.count(_postgrest_t)';
  return `with pgrst_source as (${source})
    select ${pageTotal} as page_total, ${total ?? 'null::bigint'} as total_result_set, (${bodyExpression(handler, routine)})::text as body,
           nullif(current_setting('response.headers', true), '') as response_headers,
           nullif(current_setting('response.status', true), '') as response_status
    from (${readSql}) _postgrest_t`;
}

interface Plan {
  sql: string;
  params: unknown[];
  readOnly: boolean;
  handler: Handler;
  contentType: string;
  routine: Routine | null;
  /** The top-level offset, for Content-Range. */
  offset: number;
  kind: PlanKind;
}

/**
 * ApiRequest/Payload.hs `getPayload`: a function's empty body has no keys (and is sent as it is,
 * empty); a table's is "Empty or invalid json". An array must hold objects with the same keys
 * (those of the first are the body's); any other JSON value is replaced by [].
 */
function jsonPayload(body: string | null, isProc: boolean): { raw: string; keys: string[]; isArray: boolean } | ReplayResponse {
  if (!body && isProc) return { raw: body ?? '', keys: [], isArray: false };
  let payload: unknown;
  try {
    payload = JSON.parse(body ?? '');
  } catch {
    return errorResponse(400, error('PGRST102', 'Empty or invalid json'));
  }
  const raw = body!;
  if (Array.isArray(payload)) {
    const first = payload[0];
    if (first === undefined) return { raw, keys: [], isArray: true };
    const canonical = isObject(first) ? Object.keys(first).sort().join('\u0000') : null;
    if (canonical === null || !payload.every((item) => isObject(item) && Object.keys(item).sort().join('\u0000') === canonical)) {
      return errorResponse(400, error('PGRST102', 'All object keys must match'));
    }
    return { raw, keys: Object.keys(first), isArray: true };
  }
  if (isObject(payload)) return { raw, keys: Object.keys(payload), isArray: false };
  return { raw: '[]', keys: [], isArray: true };
}

/** Plan.hs `callReadPlan` + QueryBuilder.hs `callPlanToQuery`, for `/rpc/<name>`. */
async function planCall(
  sql: Sql,
  config: PostgrestConfig,
  name: string,
  method: string,
  query: QueryString,
  body: string | null,
  headers: Record<string, string>,
  accepts: string[],
  range: RowRange,
  prefs: Preferences,
): Promise<Plan | ReplayResponse> {
  const schema = config.schemas[0]!;
  const isRead = method === 'GET' || method === 'HEAD';
  const contentType = (headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
  const contentIsJson = contentType === 'application/json';
  // The body's keys select the function (a GET's: its query arguments).
  let raw = '{}';
  let keys = new Set<string>(isRead ? query.args.keys() : []);
  let isArray = false;
  if (!isRead) {
    if (!contentIsJson) throw new ReplayUnsupported(`RPC bodies of type ${contentType}`);
    const payload = jsonPayload(body, true);
    if ('status' in payload) return payload;
    ({ raw, isArray } = payload);
    keys = new Set(payload.keys);
  }
  const routines = await routinesNamed(sql, schema, name, config.hoistedTxSettings);
  const match = findRoutine(routines, keys, !isRead, contentIsJson);
  if (match === 'ambiguous') {
    return errorResponse(300, error('PGRST203', `Could not choose the best candidate function between: ${schema}.${name}`));
  }
  if (!match) {
    const list = [...keys].join(', ');
    const withParams = keys.size ? ` with parameter${keys.size > 1 ? 's' : ''} ${list}` : ' without parameters';
    return errorResponse(
      404,
      error(
        'PGRST202',
        `Could not find the function ${schema}.${name}${keys.size ? `(${list})` : ' without parameters'} in the schema cache`,
        `Searched for the function ${schema}.${name}${withParams}${!isRead ? ' or with a single unnamed json/jsonb parameter' : ''}, but no matches were found in the schema cache.`,
      ),
    );
  }
  const { routine, wholeBody } = match;
  if (query.filters.length || query.order.length) {
    throw new ReplayUnsupported('filtering or ordering the result of a function');
  }
  const defaultSelect = query.select.length === 1 && query.select[0] === '*';
  if (!defaultSelect) throw new ReplayUnsupported('select= on a function result');
  const negotiated = negotiate(accepts, routine, defaultSelect);
  if (!negotiated) {
    return errorResponse(406, error('PGRST107', `None of these media types are available: ${accepts.join(', ')}`));
  }

  const params: unknown[] = [];
  // PostgREST sends each value as text of unknown type, read by the target type's input function.
  // postgres.js would serialize a string for a json parameter as a JSON string literal instead,
  // so the replay says `::text::type`: the same input function, the same errors.
  const param = (value: unknown, type: string) => {
    params.push(value);
    return `$${params.length}::text::${type}`;
  };
  const fn = `${quoteIdent(routine.schema)}.${quoteIdent(routine.name)}`;
  const scalar = !routine.returnsComposite;
  const callIt = (args: string) => (scalar ? `(select ${fn}(${args}) pgrst_scalar) pgrst_call` : `${fn}(${args}) pgrst_call`);
  const given = routine.params.filter((p) => keys.has(p.name));
  let from: string;
  if (wholeBody) {
    // OnePosParam: the whole body, cast to the parameter's type.
    from = `from ${callIt(param(raw, routine.params[0]!.type))}`;
  } else if (given.length === 0) {
    from = `from ${callIt('')}`;
  } else if (isRead) {
    // DirectArgs: "name" := $n::type, the value sent as text of unknown type.
    const args = given.map((p) => `${quoteIdent(p.name)} := ${param(query.args.get(p.name), p.type)}`);
    from = `from ${callIt(args.join(', '))}`;
  } else {
    // JsonArgs: the body through json_to_record, each argument named from it.
    if (isArray) throw new ReplayUnsupported('calling a function once per element of a JSON array');
    const payload = param(raw, 'json');
    const columns = given.map((p) => quoteIdent(p.name)).join(', ');
    const typed = given.map((p) => `${quoteIdent(p.name)} ${p.type}`).join(', ');
    const args = given.map((p) => `${quoteIdent(p.name)} := pgrst_body.${quoteIdent(p.name)}`).join(', ');
    from = `from (select ${payload} as json_data) pgrst_payload,
            lateral (select ${columns} from json_to_record(pgrst_payload.json_data) as _(${typed}) limit 1) pgrst_body,
            lateral ${callIt(args)}`;
  }
  const source = `select ${scalar ? 'pgrst_call.pgrst_scalar' : 'pgrst_call.*'} ${from}`;
  const read = `select pgrst_source.* from pgrst_source${limitOffset(range, config, params)}`;
  const total = prefs.count === 'exact' && routine.returnsSet ? '(select pg_catalog.count(*) from pgrst_source)' : null;
  return {
    sql: mainStatement(source, negotiated.handler, routine, read, total),
    params,
    // Plan.hs: a read is READ ONLY; a POST is READ WRITE only for a VOLATILE function.
    readOnly: isRead || !routine.volatile,
    handler: negotiated.handler,
    contentType: negotiated.contentType,
    routine,
    offset: range.lower,
    kind: 'call',
  };
}

/** Plan.hs `wrappedReadPlan` + QueryBuilder.hs `readPlanToQuery`, for `GET /<relation>`. */
async function planRead(
  sql: Sql,
  config: PostgrestConfig,
  name: string,
  query: QueryString,
  accepts: string[],
  range: RowRange,
  prefs: Preferences,
): Promise<Plan | ReplayResponse> {
  const schema = config.schemas[0]!;
  if (!(await relationExists(sql, schema, name))) {
    return errorResponse(404, error('PGRST205', `Could not find the table '${schema}.${name}' in the schema cache`));
  }
  const defaultSelect = query.select.length === 1 && query.select[0] === '*';
  const negotiated = negotiate(accepts, null, defaultSelect);
  if (!negotiated) {
    return errorResponse(406, error('PGRST107', `None of these media types are available: ${accepts.join(', ')}`));
  }
  const target = `${quoteIdent(schema)}.${quoteIdent(name)}`;
  const params: unknown[] = [];
  const columns = defaultSelect ? `${target}.*` : query.select.map((c) => `${target}.${quoteIdent(c)}`).join(', ');
  const where = query.filters.length ? ` where ${query.filters.map((f) => filterSql(target, f, params)).join(' and ')}` : '';
  const source = `select ${columns} from ${target}${where}${orderSql(target, query)}${limitOffset(range, config, params)}`;
  // Statements.hs `mainRead`: the exact count is of the filtered relation, without the range.
  const total = prefs.count === 'exact' ? `(select pg_catalog.count(*) from ${target}${where})` : null;
  return {
    sql: mainStatement(source, negotiated.handler, null, 'select * from pgrst_source', total),
    params,
    readOnly: true,
    handler: negotiated.handler,
    contentType: negotiated.contentType,
    routine: null,
    offset: range.lower,
    kind: 'read',
  };
}

interface WritePlan extends Plan {
  mutation: 'insert' | 'update' | 'delete';
  prefs: Preferences;
}

/**
 * Plan.hs `mutateReadPlan` + QueryBuilder.hs `mutatePlanToQuery` + Statements.hs `mainWrite`, for
 * POST (insert), PATCH (update) and DELETE on a relation: the body through json_to_record(set),
 * typed as the relation's columns; the filters as the WHERE clause; RETURNING the selected
 * columns when the client asks for a representation, else `RETURNING 1` (for the count).
 */
async function planWrite(
  sql: Sql,
  config: PostgrestConfig,
  name: string,
  method: string,
  query: QueryString,
  body: string | null,
  headers: Record<string, string>,
  accepts: string[],
  prefs: Preferences,
): Promise<WritePlan | ReplayResponse> {
  const schema = config.schemas[0]!;
  const columns = await relationColumns(sql, schema, name);
  if (!columns) return errorResponse(404, error('PGRST205', `Could not find the table '${schema}.${name}' in the schema cache`));
  if (query.order.length || query.limit !== null || query.offset !== null) throw new ReplayUnsupported(`ordering or limiting a ${method}`);
  const mutation = method === 'POST' ? 'insert' : method === 'PATCH' ? 'update' : 'delete';
  if (mutation === 'insert' && query.filters.length) throw new ReplayUnsupported('filters on an insert');
  const representation = prefs.representation === 'full';
  const negotiated = negotiate(accepts, null, true);
  if (!negotiated) return errorResponse(406, error('PGRST107', `None of these media types are available: ${accepts.join(', ')}`));
  if (representation && negotiated.handler.kind !== 'json') throw new ReplayUnsupported(`a ${negotiated.contentType} representation of a write`);

  const target = `${quoteIdent(schema)}.${quoteIdent(name)}`;
  const params: unknown[] = [];
  const selected = query.select.length === 1 && query.select[0] === '*' ? [...columns.keys()] : query.select;
  const returning = representation ? `returning ${selected.map((c) => `${target}.${quoteIdent(c)}`).join(', ')}` : 'returning 1';
  const where = query.filters.length ? ` where ${query.filters.map((f) => filterSql(target, f, params)).join(' and ')}` : '';

  let mutate: string;
  if (mutation === 'delete') {
    mutate = `delete from ${target}${where} ${returning}`;
  } else {
    const contentType = (headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
    if (contentType !== 'application/json') throw new ReplayUnsupported(`write bodies of type ${contentType}`);
    // The body's keys are the columns written.
    const payload = jsonPayload(body, false);
    if ('status' in payload) return payload;
    const { keys, isArray } = payload;
    if (mutation === 'update' && isArray) throw new ReplayUnsupported('PATCH with an array body');
    const unknown = keys.find((key) => !columns.has(key));
    if (unknown !== undefined) {
      return errorResponse(400, error('PGRST204', `Could not find the '${unknown}' column of '${name}' in the schema cache`));
    }
    params.push(payload.raw);
    const payloadParam = `$${params.length}::text::json`;
    const names = keys.map(quoteIdent).join(', ');
    const typed = keys.map((key) => `${quoteIdent(key)} ${columns.get(key)}`).join(', ');
    const recordFunction = isArray ? 'json_to_recordset' : 'json_to_record';
    // SqlFragment.hs `fromJsonBodyF` (no defaults: Prefer missing=default is not implemented).
    // No keys (`{}`, `[{}, {}]`): a row per object, every column its default.
    const source = keys.length
      ? `${recordFunction}(pgrst_payload.json_data) as _(${typed})`
      : isArray ? 'json_array_elements(pgrst_payload.json_data) _' : '(values(1)) _';
    const fromBody = `from (select ${payloadParam} as json_data) pgrst_payload,
      lateral (select ${names} from ${source}) pgrst_body`;
    if (mutation === 'insert') {
      mutate = `insert into ${target}${keys.length ? `(${names})` : ''} select ${keys.map((k) => `pgrst_body.${quoteIdent(k)}`).join(', ')} ${fromBody} ${returning}`;
    } else if (keys.length === 0) {
      mutate = `select ${representation ? selected.map((c) => `${target}.${quoteIdent(c)}`).join(', ') : 'null'} from ${target} where false`;
    } else {
      const sets = keys.map((k) => `${quoteIdent(k)} = pgrst_body.${quoteIdent(k)}`).join(', ');
      mutate = `update ${target} set ${sets} ${fromBody}${where} ${returning}`;
    }
  }
  return {
    sql: mainStatement(mutate, { kind: 'json' }, null, 'select * from pgrst_source'),
    params,
    readOnly: false,
    handler: { kind: 'json' },
    contentType: negotiated.contentType,
    routine: null,
    offset: 0,
    kind: mutation,
    mutation,
    prefs,
  };
}

type ResultRow = { page_total: string | number; total_result_set: string | number | null; body: string | null };

/** RangeQuery.hs `contentRangeH`: `lower-upper` unless nothing is in range, then `/total` or `/*`. */
function contentRange(lower: number, upper: number, total: number | null): string {
  return `${total !== 0 && lower <= upper ? `${lower}-${upper}` : '*'}/${total ?? '*'}`;
}

/** Response.hs `actionResponse` for MutationCreate, MutationUpdate and MutationDelete. */
function answerWrite(plan: WritePlan, row: ResultRow | undefined, gucStatus: string | null, gucHeaders: string | null): ReplayResponse {
  const count = Number(row?.page_total ?? 0);
  const total = plan.prefs.count === 'exact' ? count : null;
  const representation = plan.prefs.representation === 'full';
  const headers: Record<string, string> = {
    // An update's range is the rows it changed; an insert's and a delete's is not (`*`).
    'content-range': plan.mutation === 'update' ? contentRange(0, count - 1, total) : contentRange(1, 0, total),
  };
  const applied = preferenceApplied(plan.prefs, plan.kind);
  if (applied) headers['preference-applied'] = applied;
  let status = plan.mutation === 'insert' ? 201 : representation ? 200 : 204;
  let text = '';
  if (representation) {
    headers['content-type'] = plan.contentType;
    text = row?.body ?? '[]';
  }
  if (gucStatus) status = Number(gucStatus);
  for (const entry of JSON.parse(gucHeaders ?? '[]') as Record<string, string>[]) {
    for (const [name, value] of Object.entries(entry)) headers[name.toLowerCase()] = value;
  }
  return respond(status, headers, text, plan.sql, true);
}

/** Response.hs: the status (RangeQuery.hs `rangeStatusHeader`), Content-Range and the headers and status the query set. */
function answer(plan: Plan, method: string, prefs: Preferences, row: ResultRow | undefined, gucStatus: string | null, gucHeaders: string | null): ReplayResponse {
  const count = Number(row?.page_total ?? 0);
  const total = row?.total_result_set === null || row?.total_result_set === undefined ? null : Number(row.total_result_set);
  const lower = plan.offset;
  const upper = lower + count - 1;
  const headers: Record<string, string> = { 'content-range': contentRange(lower, upper, total) };
  const applied = preferenceApplied(prefs, plan.kind);
  if (applied) headers['preference-applied'] = applied;
  if (total !== null && lower > total) {
    return errorResponse(416, error('PGRST103', 'Requested range not satisfiable', `An offset of ${lower} was requested, but there are only ${total} rows.`), headers, plan.sql);
  }
  let status = total !== null && 1 + upper - lower < total ? 206 : 200;
  let text = row?.body ?? '';
  if (plan.routine?.returnsVoid) {
    status = 204;
    text = '';
  } else {
    headers['content-type'] = plan.contentType;
  }
  if (method === 'HEAD') text = '';
  if (gucStatus) status = Number(gucStatus);
  // addHeadersIfNotIncluded: a header the query set replaces PostgREST's of the same name.
  for (const entry of JSON.parse(gucHeaders ?? '[]') as Record<string, string>[]) {
    for (const [name, value] of Object.entries(entry)) headers[name.toLowerCase()] = value;
  }
  return respond(status, headers, text, plan.sql, true);
}

export function createReplay(sql: Sql, options: ReplayOptions = {}) {
  const config = options.config ?? postgrestConfig();

  async function request(req: ReplayRequest): Promise<ReplayResponse> {
    const method = req.method.toUpperCase();
    const url = new URL(req.url, 'http://postgrest.test');
    const headers = requestHeaders(req.headers);

    // ApiRequest.hs: Accept-Profile (reads) / Content-Profile (writes) must name an exposed schema.
    const profile = headers[method === 'GET' || method === 'HEAD' ? 'accept-profile' : 'content-profile'];
    if (profile !== undefined && !config.schemas.includes(profile)) {
      return errorResponse(406, error('PGRST106', `The schema must be one of the following: ${config.schemas.join(', ')}`));
    }

    // Auth.hs / Auth/Jwt.hs: the role and the claims.
    let claims: Record<string, unknown> = {};
    // wai-extra `extractBearerAuth`: the scheme up to the first space, then the rest without the
    // leading spaces — so `Bearer` alone is an empty token.
    const bearer = /^bearer(?:\s+|$)(.*)$/is.exec(headers.authorization ?? '');
    if (bearer) {
      if (!options.jwtSecret) return errorResponse(500, error('PGRST300', 'Server lacks JWT secret'));
      const verified = await verifyJwt(bearer[1]!, options.jwtSecret, options.now?.());
      if (!verified.ok) {
        return errorResponse(verified.status, error(verified.code, verified.message, verified.details), {
          'www-authenticate': `Bearer error="invalid_token", error_description=${JSON.stringify(verified.message)}`,
        });
      }
      claims = verified.claims;
    }
    const role = roleClaim(claims) ?? config.anonRole;

    const rpc = /^\/rpc\/([^/]+)$/.exec(url.pathname);
    const relation = /^\/([^/]+)$/.exec(url.pathname);
    if (!rpc && !relation) {
      if (url.pathname === '/') throw new ReplayUnsupported('the OpenAPI root');
      return errorResponse(404, error('PGRST125', 'Invalid path specified in request URL'));
    }
    if (rpc ? !['GET', 'HEAD', 'POST'].includes(method) : !['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'].includes(method)) {
      throw new ReplayUnsupported(`${method} on ${url.pathname}`);
    }
    const isWrite = !rpc && ['POST', 'PATCH', 'DELETE'].includes(method);
    let query: QueryString;
    try {
      query = parseQueryString(url.search, rpc !== null && (method === 'GET' || method === 'HEAD'));
    } catch (cause) {
      if (cause instanceof QueryStringError) return errorResponse(400, error('PGRST100', cause.message));
      throw cause;
    }
    // Preferences.hs; Plan.hs refuses invalid ones under handling=strict.
    const prefs = parsePreferences(headers.prefer);
    const kind: PlanKind = rpc ? 'call' : !isWrite ? 'read' : method === 'POST' ? 'insert' : method === 'PATCH' ? 'update' : 'delete';
    checkModelled(prefs, kind);
    if (prefs.invalid.length && prefs.handling === 'strict') {
      return errorResponse(400, error('PGRST122', 'Invalid preferences given with handling=strict', `Invalid preferences: ${prefs.invalid.join(', ')}`));
    }
    let range: RowRange;
    try {
      range = topLevelRange(query, method, headers.range);
    } catch (cause) {
      if (cause instanceof RangeError416) return errorResponse(416, error('PGRST103', cause.message, cause.details));
      throw cause;
    }
    const accepts = acceptedMediaTypes(headers.accept);
    const planned = rpc
      ? await planCall(sql, config, decodeURIComponent(rpc[1]!), method, query, req.body ?? null, headers, accepts, range, prefs)
      : isWrite
        ? await planWrite(sql, config, decodeURIComponent(relation![1]!), method, query, req.body ?? null, headers, accepts, prefs)
        : await planRead(sql, config, decodeURIComponent(relation![1]!), query, accepts, range, prefs);
    if (!('params' in planned)) return planned;
    const plan = planned;

    const outcome = await inRequestTransaction(
      sql,
      config,
      {
        method,
        path: url.pathname,
        role,
        claims,
        headers,
        cookies: parseCookies(req.headers),
        readOnly: plan.readOnly,
        preRequest: config.preRequest,
        timezone: prefs.timezone,
        settings: plan.routine?.settings,
        isolationLevel: plan.routine?.isolationLevel,
      },
      async (tx: postgres.TransactionSql) => (await tx.unsafe(plan.sql, plan.params as never[])) as unknown as ResultRow[],
    );
    if (!outcome.ok) return errorResponse(outcome.status, outcome.body, outcome.headers, plan.sql);
    if ('mutation' in plan) return answerWrite(plan as WritePlan, outcome.value[0], outcome.responseStatus, outcome.responseHeaders);
    return answer(plan, method, prefs, outcome.value[0], outcome.responseStatus, outcome.responseHeaders);
  }

  /** A fetch for clients (postgrest-js, the SDK): the same request, as a Response. */
  async function replayFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const incoming = new Request(input, init);
    const url = new URL(incoming.url);
    const body = incoming.body ? await incoming.text() : null;
    const result = await request({
      method: incoming.method,
      url: url.pathname + url.search,
      headers: Object.fromEntries(incoming.headers),
      body,
    });
    const empty = result.status === 204 || result.status === 304 || incoming.method === 'HEAD';
    return new Response(empty ? null : result.text, { status: result.status, headers: result.headers });
  }

  return { request, fetch: replayFetch as typeof fetch, config };
}

export type Replay = ReturnType<typeof createReplay>;

function parseCookies(headers: Record<string, string> = {}): Record<string, string> {
  const cookie = Object.entries(headers).find(([name]) => name.toLowerCase() === 'cookie')?.[1];
  if (!cookie) return {};
  return Object.fromEntries(
    cookie.split(';').flatMap((part) => {
      const at = part.indexOf('=');
      return at > 0 ? [[part.slice(0, at).trim(), part.slice(at + 1).trim()]] : [];
    }),
  );
}
