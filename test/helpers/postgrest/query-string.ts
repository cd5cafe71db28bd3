// PostgREST v16.2's reading of a query string (src/library/PostgREST/ApiRequest/QueryParams.hs,
// `parse`): which keys are its own, which are filters, and — for a GET on a function — which are
// the function's arguments. What the replay does not implement it refuses, loudly, rather than
// answer something PostgREST would not.

/** Keys PostgREST keeps for itself, whatever a function's parameters are called. */
export const RESERVED_KEYS = ['select', 'columns', 'on_conflict'] as const;
/** Keys whose last dot-separated word is one of these are PostgREST's too (`limit`, `x.order`, …). */
export const RESERVED_LAST_WORDS = ['order', 'limit', 'offset', 'and', 'or'] as const;

/** True when PostgREST would never pass a query key or parameter of this name to a function. */
export function isReservedKey(key: string): boolean {
  const lastWord = key.split('.').at(-1)!;
  return (RESERVED_KEYS as readonly string[]).includes(key) || (RESERVED_LAST_WORDS as readonly string[]).includes(lastWord);
}

/** The operators of QueryParams.hs (simple, quantifiable, fts, is, in), as they open a value. */
const OPERATOR = /^(not\.)?(eq|neq|gt|gte|lt|lte|like|ilike|match|imatch|is|isdistinct|in|cs|cd|ov|sl|sr|nxr|nxl|adj|fts|plfts|phfts|wfts)(\((any|all)\)|\([^)]*\))?\.(.*)$/s;

export interface Filter {
  column: string;
  negated: boolean;
  operator: string;
  value: string;
}

export interface OrderTerm {
  column: string;
  direction: 'asc' | 'desc' | null;
  nulls: 'nullsfirst' | 'nullslast' | null;
}

export interface QueryString {
  /** Keys without an operator on a function GET: its arguments, by name (the last one wins). */
  args: Map<string, string>;
  filters: Filter[];
  order: OrderTerm[];
  /** Top-level `limit` and `offset` (the last of each); a value that is not an integer is ignored, as PostgREST does. */
  limit: number | null;
  offset: number | null;
  /** The `select` columns; `*` when absent. */
  select: string[];
}

/**
 * The list of an `in` filter as QueryParams.hs `pListVal` reads it: `(`, elements separated by
 * commas — each double-quoted with backslash escapes when a `,` or `)` follows the closing quote,
 * else unquoted up to `,` or `)` — then `)`. What follows the `)` is not read (`in.(a,b)x` is a, b).
 */
export function parseListValue(value: string): string[] {
  const refuse = () => new QueryStringError(`failed to parse filter (in.${value})`);
  if (value[0] !== '(') throw refuse();
  let at = 1;
  while (value[at] === ' ') at++; // lexeme
  const elements: string[] = [];
  for (;;) {
    let element: string | null = null;
    if (value[at] === '"') {
      let end = at + 1;
      let quoted = '';
      while (end < value.length && value[end] !== '"') {
        if (value[end] === '\\' && end + 1 < value.length) end++;
        quoted += value[end++];
      }
      if (value[end] === '"' && (value[end + 1] === ',' || value[end + 1] === ')')) {
        element = quoted;
        at = end + 1;
      }
    }
    if (element === null) {
      element = '';
      while (at < value.length && value[at] !== ',' && value[at] !== ')') element += value[at++];
    }
    elements.push(element);
    if (value[at] === ',') {
      at++;
      continue;
    }
    if (value[at] === ')') return elements;
    throw refuse();
  }
}

export class ReplayUnsupported extends Error {
  constructor(what: string) {
    super(`the PostgREST replay does not implement ${what}; add it (from PostgREST's source) before relying on it`);
  }
}

/** Haskell's `readMaybe` for an Integer: optional spaces around an optional minus and digits. */
const integer = (value: string) => (/^\s*-?\d+\s*$/.test(value) ? Number(value) : null);

/**
 * Parses a query string as PostgREST does. `isRpcRead`: a GET/HEAD on `/rpc/…`, where a value
 * without an operator is an argument rather than a malformed filter.
 */
export function parseQueryString(search: string, isRpcRead: boolean): QueryString {
  const result: QueryString = { args: new Map(), filters: [], order: [], limit: null, offset: null, select: ['*'] };
  let selectSeen = false;
  let orderSeen = false;
  for (const [key, value] of queryPairs(search)) {
    const lastWord = key.split('.').at(-1)!;
    if (key === 'select') {
      // QueryParams.hs `lookupParam`: the first `select` is the one read.
      if (selectSeen) continue;
      selectSeen = true;
      result.select = value.split(',').map((column) => column.trim());
      if (result.select.some((column) => column !== '*' && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(column))) {
        throw new ReplayUnsupported(`select=${value} (only * and plain column names)`);
      }
    } else if (key === 'columns' || key === 'on_conflict') {
      throw new ReplayUnsupported(`the ${key} parameter`);
    } else if (lastWord === 'and' || lastWord === 'or') {
      throw new ReplayUnsupported(`logic trees (${key}=…)`);
    } else if (lastWord === 'order' || lastWord === 'limit' || lastWord === 'offset') {
      if (key !== lastWord) throw new ReplayUnsupported(`ordering or paging an embedded resource (${key})`);
      // The first `order` is the one applied (Plan.hs `addOrders`); the last `limit` and `offset`
      // (QueryParams.hs `ranges`, HM.fromList). A limit or offset that is no integer is ignored.
      if (key === 'order' && !orderSeen) {
        orderSeen = true;
        result.order = value.split(',').map(parseOrderTerm);
      }
      if (key === 'limit') result.limit = integer(value);
      if (key === 'offset') result.offset = integer(value);
    } else {
      const match = OPERATOR.exec(value);
      if (match) {
        if (key.includes('.')) throw new ReplayUnsupported(`filters on embedded resources (${key})`);
        if (match[3]) throw new ReplayUnsupported(`operator modifiers (${match[2]}${match[3]})`);
        result.filters.push({ column: key, negated: Boolean(match[1]), operator: match[2]!, value: match[5]! });
      } else if (isRpcRead) {
        result.args.set(key, value);
      } else {
        // PostgREST answers 400 PGRST100 "failed to parse filter".
        throw new QueryStringError(`failed to parse filter (${value})`);
      }
    }
  }
  return result;
}

/** A query string PostgREST itself refuses: 400 PGRST100. */
export class QueryStringError extends Error {}

function parseOrderTerm(term: string): OrderTerm {
  const [column, ...modifiers] = term.split('.');
  const direction = modifiers.find((m) => m === 'asc' || m === 'desc') ?? null;
  const nulls = modifiers.find((m) => m === 'nullsfirst' || m === 'nullslast') ?? null;
  if (!column || modifiers.some((m) => m !== direction && m !== nulls)) {
    throw new QueryStringError(`failed to parse order (${term})`);
  }
  return { column, direction: direction as OrderTerm['direction'], nulls: nulls as OrderTerm['nulls'] };
}

/**
 * The key/value pairs of a query string, decoded as parseQueryReplacePlus True does (`+` is a
 * space). A key without `=` is dropped (`nonemptyParams`); `k=` keeps its empty value.
 */
function queryPairs(search: string): [string, string][] {
  const decode = (text: string) => decodeURIComponent(text.replaceAll('+', ' '));
  return search
    .replace(/^\?/, '')
    .split('&')
    .filter((part) => part.includes('='))
    .map((part) => {
      const at = part.indexOf('=');
      return [decode(part.slice(0, at)), decode(part.slice(at + 1))];
    });
}

/** A range of rows, `upper` null for no end (RangeQuery.hs `NonnegRange`). */
export interface RowRange {
  lower: number;
  upper: number | null;
}

/** Why a range cannot be satisfied (Error.hs `InvalidRange`): 416 PGRST103. */
export class RangeError416 extends Error {
  constructor(readonly details: string) {
    super('Requested range not satisfiable');
  }
}

/**
 * ApiRequest.hs `getRanges`: the top-level range from `limit` and `offset` and, on a GET, the
 * Range header (`<first>-[<last>]`, RangeQuery.hs `rangeParse`), intersected. `limit=0` is the one
 * empty range allowed; any other empty range is 416.
 */
export function topLevelRange(query: QueryString, method: string, rangeHeader: string | undefined): RowRange {
  const intersect = (a: RowRange, b: RowRange): RowRange => ({
    lower: Math.max(a.lower, b.lower),
    upper: a.upper === null ? b.upper : b.upper === null ? a.upper : Math.min(a.upper, b.upper),
  });
  const offset = query.offset ?? 0;
  const limitRange: RowRange = query.limit === null ? { lower: offset, upper: null } : { lower: offset, upper: offset + query.limit - 1 };
  // RangeQuery.hs `hasLimitZero`: a limit range ending at -1 (limit=0 without an offset) stands.
  if (limitRange.upper === -1) return { lower: 0, upper: -1 };
  let headerRange: RowRange = { lower: 0, upper: null };
  const header = method === 'GET' && rangeHeader !== undefined ? /^([0-9]+)-([0-9]*)$/.exec(rangeHeader) : null;
  if (header) headerRange = { lower: Number(header[1]), upper: header[2] ? Number(header[2]) : null };
  const range = intersect(headerRange, limitRange);
  if (range.upper !== null && range.upper < range.lower) {
    const headerEmpty = headerRange.upper !== null && headerRange.upper < headerRange.lower;
    throw new RangeError416(
      headerEmpty
        ? 'The lower boundary must be lower than or equal to the upper boundary in the Range header.'
        : 'Limit should be greater than or equal to zero.',
    );
  }
  return range;
}
