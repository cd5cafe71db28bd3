// The change feed as Server-Sent Events: GET /v1/stream, authenticated with the same JWT as
// PostgREST, one tenant's changes per connection, resumable with Last-Event-ID.
//
// The database decides who may see what, as for the API: the token's claims and the tenant asked
// for (x-tenant header, or `tenant` in the query) go through kpi_api.current_tenant_id() under the
// role `authenticated`, and a reconnecting client's missed changes are read through
// kpi_api.changes_page() under row-level security. Live changes come from one reader of the whole
// log (settled transactions only, as for every reader of the feed), woken by NOTIFY on commit (no
// polling while idle), and are handed to the connected clients of each change's tenant.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import createDebug from 'debug';
import { errors as joseErrors, jwtVerify } from 'jose';
import postgres from 'postgres';
import { KpiHistoryError } from './errors.js';
import { changeLogReader, recheckWhilePending } from './follow.js';

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
}

export interface ChangeStream {
  readonly port: number;
  readonly url: string;
  /** Clients connected now. */
  clients(): number;
  stop(): Promise<void>;
}

interface StreamClient {
  tenantId: string;
  /** The position of the last change sent (txid, seq). */
  txid: bigint;
  seq: bigint;
  response: ServerResponse;
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

class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const after = (txid: bigint, seq: bigint, client: { txid: bigint; seq: bigint }) => txid > client.txid || (txid === client.txid && seq > client.seq);
const parseCursor = (cursor: string) => cursor.split('.').map(BigInt) as [bigint, bigint];

export async function startChangeStream(options: ChangeStreamOptions): Promise<ChangeStream> {
  if (typeof options.jwtSecret !== 'string' || options.jwtSecret.length < 32) {
    throw new KpiHistoryError({ code: 'INVALID_INPUT', message: 'the JWT secret must have at least 32 characters (PGRST_JWT_SECRET)' });
  }
  const url = options.databaseUrl ?? process.env.DATABASE_URL;
  if (!options.sql && !url) throw new KpiHistoryError({ code: 'INVALID_INPUT', message: 'no database: pass { sql } or { databaseUrl }, or set DATABASE_URL' });
  // One connection for every client (and postgres.js's own for LISTEN).
  const sql = options.sql ?? postgres(url!, { max: 1, onnotice: () => {}, connection: { application_name: 'kpi-history-stream' } });
  const ownsConnection = !options.sql;
  const key = new TextEncoder().encode(options.jwtSecret);
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const allowOrigin = options.allowOrigin ?? '*';
  const clients = new Set<StreamClient>();

  // Reads of the log one at a time: a client's catch-up and the live reader never interleave, so
  // a change is neither skipped nor sent twice between them.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };

  // The live reader: everything settled up to its position has been handed out.
  const live = changeLogReader(sql);
  await live.skipToHead();

  function send(client: StreamClient, change: FeedChange): void {
    client.response.write(`id: ${change.cursor}\nevent: change\ndata: ${JSON.stringify(change)}\n\n`);
    [client.txid, client.seq] = parseCursor(change.cursor);
  }

  async function readLive(): Promise<void> {
    await live.read(({ tenant_id: tenantId, ...change }) => {
      const [txid, seq] = parseCursor(change.cursor);
      for (const client of clients) {
        if (client.tenantId === tenantId && after(txid, seq, client)) send(client, change);
      }
    });
    await recheck.after();
  }
  const recheck = recheckWhilePending(live, () => void wakeLive());
  const wakeLive = () => serially(readLive).catch((error: unknown) => log('reading the log failed: %s', (error as Error).message));

  /** The request's tenant, by the API's own rules, or an HTTP refusal. */
  async function authorize(request: IncomingMessage, query: URLSearchParams): Promise<{ tenantId: string; claims: Record<string, unknown>; headers: Record<string, string> }> {
    const token = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (!token) throw new HttpRefusal(401, 'UNAUTHORIZED', 'a JWT is required (Authorization: Bearer …)');
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
  async function asTenantUser<T>(access: { claims: Record<string, unknown>; headers: Record<string, string> }, work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
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

  /** A reconnecting client's missed changes, through row-level security, from its cursor on. */
  async function missedChanges(access: { claims: Record<string, unknown>; headers: Record<string, string> }, cursor: string): Promise<FeedChange[]> {
    const missed: FeedChange[] = [];
    let next = cursor;
    for (;;) {
      const page = await asTenantUser(
        access,
        async (tx) => (await tx<[{ page: { changes: FeedChange[]; next: string; has_more: boolean } }]>`select kpi_api.changes_page(${next}, 1000) as page`)[0].page,
      );
      missed.push(...page.changes);
      next = page.next;
      if (!page.has_more) return missed;
    }
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
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
    if (requestUrl.pathname !== '/v1/stream' || request.method !== 'GET') {
      response.writeHead(404, { 'Content-Type': 'application/json' });
      return void response.end(JSON.stringify({ code: 'NOT_FOUND', message: 'the stream is GET /v1/stream' }));
    }
    try {
      const access = await authorize(request, requestUrl.searchParams);
      const resumeFrom = (request.headers['last-event-id'] as string | undefined) ?? requestUrl.searchParams.get('after') ?? undefined;
      const client: StreamClient = { tenantId: access.tenantId, txid: 0n, seq: 0n, response };
      await serially(async () => {
        // A resumed stream first gets what it missed — read (and its cursor checked: INVALID_INPUT,
        // CURSOR_EXPIRED) by the database before any header goes out; a new one starts now.
        const missed = resumeFrom === undefined ? [] : await missedChanges(access, resumeFrom);
        if (resumeFrom === undefined) [client.txid, client.seq] = parseCursor(live.position());
        else if (/^\d+\.\d+$/.test(resumeFrom.trim())) [client.txid, client.seq] = parseCursor(resumeFrom.trim());
        response.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
        response.write(': connected\n\n');
        for (const change of missed) send(client, change);
        clients.add(client);
      });
      log('client for tenant %s connected (%d clients)', access.tenantId, clients.size);
      request.on('close', () => {
        clients.delete(client);
        log('client for tenant %s left (%d clients)', access.tenantId, clients.size);
      });
    } catch (error) {
      if (response.headersSent) return;
      const refusal = error instanceof HttpRefusal ? error : new HttpRefusal(500, 'INTERNAL_ERROR', 'the stream failed');
      if (!(error instanceof HttpRefusal)) log('request failed: %s', (error as Error).message);
      response.writeHead(refusal.status, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ code: refusal.code, message: refusal.message }));
    }
  }

  const server: Server = createServer((request, response) => void handle(request, response));
  // No polling: a notification wakes the reader, and so does every (re)connection of the listener,
  // so that nothing committed while it was away waits for the next write.
  const listening = await sql.listen('kpi_changes', () => void wakeLive(), () => void wakeLive());
  const heartbeat = setInterval(() => {
    for (const client of clients) client.response.write(': ping\n\n');
  }, heartbeatMs);
  await new Promise<void>((resolve) => server.listen(options.port ?? 3002, options.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    url: `http://${options.host ?? '127.0.0.1'}:${port}/v1/stream`,
    clients: () => clients.size,
    async stop() {
      clearInterval(heartbeat);
      recheck.stop();
      for (const client of clients) client.response.end();
      clients.clear();
      await new Promise((resolve) => server.close(resolve));
      await listening.unlisten();
      await queue;
      if (ownsConnection) await sql.end({ timeout: 5 });
    },
  };
}
