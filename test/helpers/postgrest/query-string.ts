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
  /** Top-level `limit` and `offset`; a value that is not a whole number is ignored, as PostgREST does. */
  limit: number | null;
  offset: number | null;
  /** The `select` columns; `*` when absent. */
  select: string[];
}

/**
 * The list of an `in` filter, `(a,b,"c,d")`, as QueryParams.hs `pListVal` reads it: elements
 * separated by commas, each unquoted (up to `,` or `)`) or double-quoted with backslash escapes.
 */
export function parseListValue(value: string): string[] {
  const trimmed = value.trim();
  if (!trimmed.startsWith('(') || !trimmed.endsWith(')')) throw new QueryStringError(`failed to parse filter (in.${value})`);
  const inner = trimmed.slice(1, -1);
  const elements: string[] = [];
  let at = 0;
  for (;;) {
    let element = '';
    if (inner[at] === '"') {
      at++;
      while (at < inner.length && inner[at] !== '"') {
        if (inner[at] === '\\' && at + 1 < inner.length) at++;
        element += inner[at++];
      }
      if (inner[at] !== '"') throw new QueryStringError(`failed to parse filter (in.${value})`);
      at++;
    } else {
      while (at < inner.length && inner[at] !== ',' && inner[at] !== ')') element += inner[at++];
    }
    elements.push(element);
    if (at >= inner.length) return elements;
    if (inner[at] !== ',') throw new QueryStringError(`failed to parse filter (in.${value})`);
    at++;
  }
}

export class ReplayUnsupported extends Error {
  constructor(what: string) {
    super(`the PostgREST replay does not implement ${what}; add it (from PostgREST's source) before relying on it`);
  }
}

const wholeNumber = (value: string) => (/^\d+$/.test(value) ? Number(value) : null);

/**
 * Parses a query string as PostgREST does. `isRpcRead`: a GET/HEAD on `/rpc/…`, where a value
 * without an operator is an argument rather than a malformed filter.
 */
export function parseQueryString(search: string, isRpcRead: boolean): QueryString {
  const result: QueryString = { args: new Map(), filters: [], order: [], limit: null, offset: null, select: ['*'] };
  for (const [key, value] of queryPairs(search)) {
    const lastWord = key.split('.').at(-1)!;
    if (key === 'select') {
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
      if (key === 'order') result.order = value.split(',').map(parseOrderTerm);
      if (key === 'limit') result.limit = wholeNumber(value);
      if (key === 'offset') result.offset = wholeNumber(value);
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
