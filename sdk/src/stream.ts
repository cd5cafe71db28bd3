// The change feed as Server-Sent Events: GET /v1/stream, authenticated with the same JWT as
// PostgREST, one tenant's changes per connection, resumable with Last-Event-ID.
//
// The database decides who may see what, as for the API: the token's claims and the tenant asked
// for (x-tenant header, or `tenant` in the query) go through kpi_api.current_tenant_id() under the
// role `authenticated`, and a reconnecting client's missed changes are read through
// kpi_api.changes_page() under row-level security. Live changes come from one reader of the whole
// log (kpi_api.read_changes: settled transactions only, as for every reader of the feed), woken by
// NOTIFY on commit (no polling while idle), and are handed to the connected clients of each
// change's tenant.
//
// No client can fail or starve another: connections are capped per token and per tenant (429 with
// Retry-After); a resumed client catches up page by page, as fast as it reads, outside the queue
// the live reader runs in; a live client whose unsent output passes a limit goes back to catching
// up, and one that reads nothing for a while is dropped (it reconnects with Last-Event-ID and loses
// nothing); a stream ends when its token expires.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import createDebug from 'debug';
import { errors as joseErrors, jwtVerify } from 'jose';
import postgres from 'postgres';
import { KpiHistoryError } from './errors.js';
import { changeLogReader, compareCursors, recheckWhilePending } from './follow.js';

const log = createDebug('kpi-history:stream');

export interface ChangeStreamOptions {
  /** A postgres.js instance to use (and not to end); otherwise databaseUrl, or DATABASE_URL. */
  sql?: postgres.Sql;
  databaseUrl?: string;
  /** PostgREST's PGRST_JWT_SECRET: tokens are HS256, signed with it. */
  jwtSecret: string;
  /** Default 3002; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1; 0.0.0.0 to serve other machines (behind TLS). */
  host?: string;
  /** A comment line this often keeps proxies from closing idle streams (default 15 s). */
  heartbeatMs?: number;
  /** Access-Control-Allow-Origin for browser apps (default *: the token, not a cookie, authorizes). */
  allowOrigin?: string;
  /** Streams open at once on one token (default 5); more answer 429. */
  maxStreamsPerToken?: number;
  /** Streams open at once for one tenant (default 200); more answer 429. */
  maxStreamsPerTenant?: number;
  /** Output a live client has not read yet, past which it goes back to catching up, a page at a time (default 1 MiB). */
  maxBufferedBytes?: number;
  /** How long a catching-up client may take to read what it was sent before it is dropped (default 30 s). */
  drainTimeoutMs?: number;
}

export interface ChangeStream {
  readonly port: number;
  readonly url: string;
  /** Clients connected now. */
  clients(): number;
  /** Clients dropped so far for reading too slowly (they resume with Last-Event-ID). */
  dropped(): number;
  stop(): Promise<void>;
}

interface StreamClient {
  tenantId: string;
  tokenKey: string;
  access: Access;
  /** The cursor of the last change sent, "<txid>.<seq>". */
  cursor: string;
  /** False while it catches up: the live reader leaves it alone until then. */
  live: boolean;
  response: ServerResponse;
  expiry: ReturnType<typeof setTimeout> | null;
  /** The token's exp (seconds), checked by the heartbeat when too far for a timer. */
  expiresAt: number | null;
  gone: boolean;
}

interface FeedChange {
  cursor: string;
  entity: string;
  op: string;
  as_of: string;
  kpi: string | null;
  data: unknown;
  changed_at: string;
}

interface Access {
  claims: Record<string, unknown>;
  headers: Record<string, string>;
}

class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

const PAGE = 1000;
// The longest a timer may wait (2^31 − 1 ms, about 24.8 days); a later expiry is left to the heartbeat.
const LONGEST_TIMER_MS = 2_147_483_647;
const eventText = (change: FeedChange) => `id: ${change.cursor}\nevent: change\ndata: ${JSON.stringify(change)}\n\n`;

export async function startChangeStream(options: ChangeStreamOptions): Promise<ChangeStream> {
  if (typeof options.jwtSecret !== 'string' || options.jwtSecret.length < 32) {
    throw new KpiHistoryError({ code: 'INVALID_INPUT', message: 'the JWT secret must have at least 32 characters (PGRST_JWT_SECRET)' });
  }
  const url = options.databaseUrl ?? process.env.DATABASE_URL;
  if (!options.sql && !url) throw new KpiHistoryError({ code: 'INVALID_INPUT', message: 'no database: pass { sql } or { databaseUrl }, or set DATABASE_URL' });
  // A few connections for every client's queries (postgres.js keeps another for LISTEN).
  const sql = options.sql ?? postgres(url!, { max: 4, onnotice: () => {}, connection: { application_name: 'kpi-history-stream' } });
  const ownsConnection = !options.sql;
  const key = new TextEncoder().encode(options.jwtSecret);
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const allowOrigin = options.allowOrigin ?? '*';
  const maxPerToken = options.maxStreamsPerToken ?? 5;
  const maxPerTenant = options.maxStreamsPerTenant ?? 200;
  const maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
  const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
  const byTenant = new Map<string, Set<StreamClient>>();
  const perToken = new Map<string, number>();
  let connected = 0;
  let droppedCount = 0;

  // The live reader's turn and a client's switch to live never interleave, so a change is neither
  // skipped nor sent twice between a catch-up and the live changes. Only short work runs here.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };

  // The live reader: everything settled up to its position has been handed out.
  const live = changeLogReader(sql);
  await live.skipToHead();

  /** Ends a client's stream now, freeing what it had not read. */
  function drop(client: StreamClient, why: string): void {
    if (client.gone) return;
    log('dropping a client of tenant %s: %s', client.tenantId, why);
    droppedCount += 1;
    client.response.destroy();
    forget(client);
  }

  function forget(client: StreamClient): void {
    if (client.gone) return;
    client.gone = true;
    if (client.expiry) clearTimeout(client.expiry);
    byTenant.get(client.tenantId)?.delete(client);
    if (byTenant.get(client.tenantId)?.size === 0) byTenant.delete(client.tenantId);
    const left = (perToken.get(client.tokenKey) ?? 1) - 1;
    if (left > 0) perToken.set(client.tokenKey, left);
    else perToken.delete(client.tokenKey);
    connected -= 1;
    log('client for tenant %s left (%d clients)', client.tenantId, connected);
  }

  /**
   * Writes to a live client unless its unsent output is past the limit: then it goes back to
   * catching up, a page at a time as it reads (and is dropped if it reads nothing for
   * drainTimeoutMs). A page of a catch-up is written whole: what it holds is bounded by the page.
   */
  function write(client: StreamClient, text: string): boolean {
    if (client.gone) return false;
    if (client.live && client.response.writableLength > maxBuffered) {
      client.live = false;
      log('a client of tenant %s is %d bytes behind: catching up', client.tenantId, client.response.writableLength);
      void catchUp(client, { changes: [], has_more: true }).catch((error: unknown) => {
        log('catching up failed: %s', (error as Error).message);
        drop(client, 'catching up failed');
      });
      return false;
    }
    client.response.write(text);
    return true;
  }

  function send(client: StreamClient, change: FeedChange, text = eventText(change)): void {
    if (write(client, text)) client.cursor = change.cursor;
  }

  async function readLive(): Promise<void> {
    const handed = await live.read(({ tenant_id: tenantId, ...change }) => {
      const clients = byTenant.get(tenantId);
      if (!clients) return;
      const text = eventText(change);
      for (const client of clients) {
        if (client.live && compareCursors(change.cursor, client.cursor) > 0) send(client, change, text);
      }
    });
    log('read %d live changes, up to %s', handed, live.position());
    await recheck.after();
  }
  const recheck = recheckWhilePending(live, () => void wakeLive());
  const wakeLive = () => serially(readLive).catch((error: unknown) => log('reading the log failed: %s', (error as Error).message));

  /** The request's tenant, by the API's own rules, or an HTTP refusal. */
  async function authorize(token: string, request: IncomingMessage, query: URLSearchParams): Promise<Access & { tenantId: string }> {
    let claims: Record<string, unknown>;
    try {
      claims = (await jwtVerify(token, key, { algorithms: ['HS256'] })).payload as Record<string, unknown>;
    } catch (error) {
      const reason = error instanceof joseErrors.JWTExpired ? 'the JWT has expired' : 'the JWT is not valid';
      throw new HttpRefusal(401, 'UNAUTHORIZED', reason);
    }
    if (claims.role !== 'authenticated') throw new HttpRefusal(403, 'FORBIDDEN', 'the stream needs a token with role "authenticated"');
    const tenant = (request.headers['x-tenant'] as string | undefined) ?? query.get('tenant') ?? undefined;
    const headers: Record<string, string> = tenant === undefined ? {} : { 'x-tenant': tenant };
    const [row] = await asTenantUser({ claims, headers }, (tx) => tx<[{ id: string }]>`select kpi_api.current_tenant_id()::text as id`);
    return { tenantId: row!.id, claims, headers };
  }

  /**
   * Runs `work` as PostgREST would for this request — role authenticated, the token's claims, the
   * headers — so that row-level security and the tenant rules decide; refusals come back as such.
   */
  async function asTenantUser<T>(access: Access, work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
    try {
      return (await sql.begin(async (tx) => {
        // As PostgREST sets them: the database answers a refusal as an HTTP error (SQLSTATE PGRST).
        await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify(access.claims)}, true),
                        set_config('request.headers', ${JSON.stringify(access.headers)}, true),
                        set_config('request.method', 'GET', true), set_config('request.path', '/v1/stream', true)`;
        return work(tx);
      })) as T;
    } catch (error) {
      throw refusalOf(error);
    }
  }

  /** A raise_http_error from the database (SQLSTATE PGRST, the answer in message and detail) as a refusal. */
  function refusalOf(error: unknown): Error {
    if (error instanceof postgres.PostgresError && error.code === 'PGRST') {
      const body = JSON.parse(error.message) as { code: string; message: string };
      const status = (JSON.parse(error.detail ?? '{}') as { status?: number }).status ?? 400;
      return new HttpRefusal(status, body.code, body.message);
    }
    return error as Error;
  }

  /** One page of the tenant's changes after `cursor`, through row-level security (the cursor checked there). */
  async function page(access: Access, cursor: string): Promise<{ changes: FeedChange[]; has_more: boolean }> {
    return asTenantUser(access, async (tx) => (await tx<[{ page: { changes: FeedChange[]; has_more: boolean } }]>`select kpi_api.changes_page(${cursor}, ${PAGE}) as page`)[0].page);
  }

  /** Resolves when the client has read what was written (or it is gone); drops it after drainTimeoutMs. */
  function drained(client: StreamClient): Promise<void> {
    if (client.gone || !client.response.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        client.response.off('drain', done);
        client.response.off('close', done);
        resolve();
      };
      const timer = setTimeout(() => {
        drop(client, `read nothing for ${drainTimeoutMs} ms while catching up`);
        done();
      }, drainTimeoutMs);
      client.response.once('drain', done);
      client.response.once('close', done);
    });
  }

  /** A client behind (resumed, or too slow for the live pace): a page at a time as it reads them; then live. */
  async function catchUp(client: StreamClient, first: { changes: FeedChange[]; has_more: boolean }): Promise<void> {
    let current = first;
    for (;;) {
      for (const change of current.changes) send(client, change);
      if (client.gone) return;
      await drained(client);
      if (client.gone) return;
      if (!current.has_more) {
        // Caught up: whatever committed since, and the switch to live, in the live reader's queue.
        const switched = await serially(async () => {
          const rest = await page(client.access, client.cursor);
          for (const change of rest.changes) send(client, change);
          if (rest.has_more || client.gone) return false;
          client.live = true;
          return true;
        });
        if (switched || client.gone) return;
      }
      current = await page(client.access, client.cursor);
    }
  }

  function refuse(response: ServerResponse, refusal: HttpRefusal): void {
    if (response.headersSent || response.destroyed) return;
    response.writeHead(refusal.status, {
      'Content-Type': 'application/json',
      ...(refusal.retryAfterSeconds ? { 'Retry-After': String(refusal.retryAfterSeconds) } : {}),
    });
    response.end(JSON.stringify({ code: refusal.code, message: refusal.message }));
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    // Registered before anything waits: a client that leaves at once is never counted as staying.
    let client: StreamClient | null = null;
    let left = false;
    let reservedToken: string | null = null;
    response.on('close', () => {
      left = true;
      if (client) forget(client);
      else if (reservedToken) releaseToken(reservedToken);
      reservedToken = null;
    });
    const requestUrl = new URL(request.url ?? '/', 'http://stream');
    response.setHeader('Access-Control-Allow-Origin', allowOrigin);
    if (request.method === 'OPTIONS') {
      response.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET',
        'Access-Control-Allow-Headers': 'Authorization, X-Tenant, Last-Event-ID',
        'Access-Control-Max-Age': '600',
      });
      return void response.end();
    }
    if (requestUrl.pathname === '/v1/health' && request.method === 'GET') {
      // For a container's health check: the server answers and its database does.
      const healthy = await sql`select 1`.then(() => true, () => false);
      response.writeHead(healthy ? 200 : 503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      return void response.end(JSON.stringify({ status: healthy ? 'ok' : 'unavailable', clients: connected }));
    }
    if (requestUrl.pathname !== '/v1/stream' || request.method !== 'GET') {
      response.writeHead(404, { 'Content-Type': 'application/json' });
      return void response.end(JSON.stringify({ code: 'NOT_FOUND', message: 'the stream is GET /v1/stream' }));
    }
    try {
      const token = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
      if (!token) throw new HttpRefusal(401, 'UNAUTHORIZED', 'a JWT is required (Authorization: Bearer …)');
      // The token's slot is taken before anything waits, so that simultaneous connections cannot
      // all pass the count.
      const tokenKey = createHash('sha256').update(token).digest('hex');
      if ((perToken.get(tokenKey) ?? 0) >= maxPerToken) {
        throw new HttpRefusal(429, 'RATE_LIMITED', `this token has ${maxPerToken} streams open already`, 5);
      }
      perToken.set(tokenKey, (perToken.get(tokenKey) ?? 0) + 1);
      reservedToken = tokenKey;

      const access = await authorize(token, request, requestUrl.searchParams);
      if (left) return;
      const tenantClients = byTenant.get(access.tenantId) ?? new Set<StreamClient>();
      if (tenantClients.size >= maxPerTenant) {
        throw new HttpRefusal(429, 'RATE_LIMITED', `this tenant has ${maxPerTenant} streams open already`, 5);
      }
      // An empty Last-Event-ID (a client that never got an event) starts from now, like none.
      const resumeFrom = ((request.headers['last-event-id'] as string | undefined) ?? requestUrl.searchParams.get('after') ?? '').trim();
      // A resumed stream's first page is read (and its cursor checked: INVALID_INPUT,
      // CURSOR_EXPIRED) before any header goes out.
      const first = resumeFrom ? await page(access, resumeFrom) : null;
      if (left) return;
      const exp = typeof access.claims.exp === 'number' ? access.claims.exp : null;
      client = {
        tenantId: access.tenantId, tokenKey, access: { claims: access.claims, headers: access.headers },
        cursor: resumeFrom || live.position(), live: false, response, expiry: null, expiresAt: exp, gone: false,
      };
      reservedToken = null; // the client holds the token's slot now
      tenantClients.add(client);
      byTenant.set(access.tenantId, tenantClients);
      connected += 1;
      response.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
      response.write(': connected\n\n');
      if (exp !== null) {
        const untilExpiry = exp * 1000 - Date.now();
        if (untilExpiry < LONGEST_TIMER_MS) client.expiry = setTimeout(() => expire(client!), Math.max(0, untilExpiry));
      }
      log('client for tenant %s connected (%d clients)', access.tenantId, connected);
      // A new client starts at the live reader's position now. Its switch to live waits in the
      // queue behind a read that may be under way, and what that read hands out before the switch
      // is not sent to it: so it too catches up from its cursor first (a page, usually empty).
      await catchUp(client, first ?? { changes: [], has_more: false });
    } catch (error) {
      if (reservedToken) releaseToken(reservedToken);
      reservedToken = null;
      if (client) {
        // Failed after the headers (the database while catching up): end the stream; the client resumes.
        log('stream of tenant %s failed: %s', client.tenantId, (error as Error).message);
        drop(client, 'catching up failed');
        return;
      }
      const refusal = error instanceof HttpRefusal ? error : new HttpRefusal(500, 'INTERNAL_ERROR', 'the stream failed');
      if (!(error instanceof HttpRefusal)) log('request failed: %s', (error as Error).message);
      refuse(response, refusal);
    }
  }

  function releaseToken(tokenKey: string): void {
    const left = (perToken.get(tokenKey) ?? 1) - 1;
    if (left > 0) perToken.set(tokenKey, left);
    else perToken.delete(tokenKey);
  }

  /** The token's time is up: the stream says so and ends; the client comes back with a fresh token. */
  function expire(client: StreamClient): void {
    if (client.gone) return;
    client.response.end(`event: error\ndata: ${JSON.stringify({ code: 'UNAUTHORIZED', message: 'the JWT has expired' })}\n\n`);
    forget(client);
  }

  const server: Server = createServer((request, response) => void handle(request, response));
  // No polling: a notification wakes the reader, and so does every (re)connection of the listener,
  // so that nothing committed while it was away waits for the next write.
  const listening = await sql.listen('kpi_changes', () => void wakeLive(), () => void wakeLive());
  const heartbeat = setInterval(() => {
    const now = Date.now() / 1000;
    for (const clients of byTenant.values()) {
      for (const client of clients) {
        if (client.expiresAt !== null && client.expiresAt <= now) expire(client);
        else write(client, ': ping\n\n');
      }
    }
  }, heartbeatMs);
  await new Promise<void>((resolve) => server.listen(options.port ?? 3002, options.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    url: `http://${options.host ?? '127.0.0.1'}:${port}/v1/stream`,
    clients: () => connected,
    dropped: () => droppedCount,
    async stop() {
      clearInterval(heartbeat);
      recheck.stop();
      for (const clients of [...byTenant.values()]) {
        for (const client of [...clients]) {
          client.response.end();
          forget(client);
        }
      }
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await listening.unlisten();
      await queue;
      if (ownsConnection) await sql.end({ timeout: 5 });
    },
  };
}
