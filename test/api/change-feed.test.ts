// The change feed (GET /rpc/kpi_history_changes) through the PostgREST replay: pages in position
// order with their cursors, updates with revisions, deletes, anomalies; a transaction that starts
// first and commits last is still delivered; concurrent writers, each change exactly once; pruning
// and CURSOR_EXPIRED; and another tenant's changes, tried from the attacker's side.
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, get, postgrestRequest } from '../helpers/postgrest.js';
import { insertTwoTenantsWithHistory, userClaims } from '../fixtures/api.js';
import { ACME, GLOBEX, UNKNOWN } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;
const acme = { claims: userClaims(ACME) };

interface Change {
  cursor: string;
  entity: 'history' | 'anomaly';
  op: 'insert' | 'update' | 'delete';
  as_of: string;
  kpi: string | null;
  data: Record<string, unknown> | null;
  changed_at: string;
}
interface Page {
  changes: Change[];
  next: string;
  has_more: boolean;
}

beforeAll(() => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
});
afterAll(() => api.end());
// Every test starts from the backfill's changes alone, whatever ran before it.
beforeEach(async () => {
  await db.sql`truncate kpi.tenants, kpi.kpi_changes cascade`;
  await insertTwoTenantsWithHistory(db.sql);
});

const page = (request: Parameters<typeof get>[2], after?: string) =>
  get<Page>(api, `/rpc/kpi_history_changes${after === undefined ? '' : `?after=${encodeURIComponent(after)}`}`, request);

/**
 * Every change after `after`, following `next` until a page comes back empty. The feed holds back
 * changes behind any older transaction still running in this database: unless `settle` is false,
 * an empty page while changes are held back is waited out (up to a minute).
 */
async function follow(after?: string, { settle = true } = {}): Promise<{ changes: Change[]; next: string }> {
  const changes: Change[] = [];
  let cursor = after;
  for (let waits = 0; ; ) {
    const response = await page(acme, cursor);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    const body = response.body as Page;
    changes.push(...body.changes);
    if (body.changes.length === 0) {
      const [{ held }] = await db.sql<[{ held: boolean }]>`select kpi_api.changes_held_back(${body.next}, ${ACME}) as held`;
      if (!settle || !held || ++waits > 1200) return { changes, next: body.next };
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    cursor = body.next;
  }
}

const historyRow = (as_of: string, aiv: number) => ({
  tenant_id: ACME, as_of, aiv_pct: aiv, ati_pct: 1, crs_pct: 1, elasticity_usd_per_point: 1, vli_integrity_pct: 100, vli_is_fallback: true, hrp_pct: null,
});

/** Acme's position after every change so far. */
const headNow = async () => (await follow()).next;

/** `count` weeks of Acme's history from 2025-01-06, AIV around 51 and a spike at the 13th. */
const acmeWeeks = (count: number) =>
  Array.from({ length: count }, (_, w) => historyRow(new Date(Date.UTC(2025, 0, 6 + 7 * w)).toISOString().slice(0, 10), w === 12 ? 90 : 50 + (w % 3)));

describe('a page of changes', () => {
  it('starts at the oldest change kept: the backfill’s four weeks, in order, with the rows as the API shows them', async () => {
    const { changes, next } = await follow();
    expect(changes.map((c) => [c.entity, c.op, c.as_of])).toEqual([
      ['history', 'insert', '2024-01-01'],
      ['history', 'insert', '2024-01-08'],
      ['history', 'insert', '2024-01-15'],
      ['history', 'insert', '2024-01-22'],
    ]);
    expect(changes[0]!.data).toMatchObject({ as_of: '2024-01-01', aiv_pct: 10, vli_is_fallback: true, hrp_pct: 12.5, revision: 1 });
    expect(changes.map((c) => c.cursor)).toEqual([...changes.map((c) => c.cursor)].sort((a, b) => compareCursors(a, b)));
    expect(next).toBe(changes.at(-1)!.cursor);
  });

  it('an update carries the new values and a higher revision; a delete carries the key', async () => {
    const head = await headNow();
    await db.sql`update kpi.kpi_history set aiv_pct = 99 where tenant_id = ${ACME} and as_of = '2024-01-08'`;
    await db.sql`delete from kpi.kpi_history where tenant_id = ${ACME} and as_of = '2024-01-01'`;
    const { changes } = await follow(head);
    expect(changes.map((c) => [c.op, c.as_of, c.data?.aiv_pct ?? null, c.data?.revision ?? null])).toEqual([
      ['update', '2024-01-08', 99, 2],
      ['delete', '2024-01-01', null, null],
    ]);
  });

  it('anomalies are in the feed too', async () => {
    const head = await headNow();
    await db.sql`insert into kpi.kpi_history ${db.sql(acmeWeeks(13))}`;
    const { changes } = await follow(head);
    expect(changes.filter((c) => c.entity === 'history')).toHaveLength(13);
    expect(changes.filter((c) => c.entity === 'anomaly')).toMatchObject([{ op: 'insert', as_of: '2025-03-31', kpi: 'aiv_pct', data: { value: 90, direction: 'up' } }]);
  });

  it('a malformed cursor is INVALID_INPUT 400', async () => {
    for (const cursor of ['abc', '1.2.3', '-1.5', `${'9'.repeat(25)}.1`]) {
      expect(await page(acme, cursor), cursor).toMatchObject({ status: 400, body: { code: 'INVALID_INPUT' } });
    }
  });
});

function compareCursors(a: string, b: string): number {
  const [ta, sa] = a.split('.').map(BigInt);
  const [tb, sb] = b.split('.').map(BigInt);
  return ta! === tb! ? Number(sa! - sb!) : ta! < tb! ? -1 : 1;
}

describe('nothing is ever skipped', () => {
  it('a transaction that starts first and commits last is still delivered, to a reader that polled in between', async () => {
    const head = await headNow();
    const first = await db.sql.reserve();
    try {
      await first`begin`;
      await first`insert into kpi.kpi_history ${first(historyRow('2026-01-05', 11))}`; // takes its transaction id now
      await db.sql`insert into kpi.kpi_history ${db.sql(historyRow('2026-01-12', 12))}`; // starts later, commits first

      // The reader polls while the first is still open: the later one is held back behind it.
      const between = await follow(head, { settle: false });
      expect(between.changes).toEqual([]);
      expect(between.next).toBe(head);

      await first`commit`;
    } finally {
      first.release();
    }
    const after = await follow(head);
    expect(after.changes.map((c) => c.as_of)).toEqual(['2026-01-05', '2026-01-12']);
  });

  it('a transaction still open in another database of the server holds nothing back (it cannot write this log)', async () => {
    const head = await headNow();
    const elsewhere = connect(inject('testDatabase').serverUrl, { max: 1 });
    try {
      await elsewhere.begin(async (tx) => {
        await tx`select pg_current_xact_id()`; // holds a transaction id older than the write below
        await db.sql`insert into kpi.kpi_history ${db.sql(historyRow('2026-01-12', 12))}`;
        const during = await follow(head, { settle: false });
        expect(during.changes.map((c) => c.as_of)).toEqual(['2026-01-12']);
      });
    } finally {
      await elsewhere.end();
    }
  });

  it('4 concurrent writers × 25 transactions while a reader follows: every change exactly once', async () => {
    const head = await headNow();
    const delivered: string[] = [];
    let cursor = head;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const response = await postgrestRequest(api, { method: 'GET', path: '/rpc/kpi_history_changes', claims: acme.claims }, (tx) =>
          tx`select kpi_api.changes_page(${cursor}, 7) as page`,
        );
        const body = (response.body as unknown as [{ page: Page }])[0].page;
        delivered.push(...body.changes.map((c) => c.cursor));
        cursor = body.next;
      }
    })();
    await Promise.all(
      [0, 1, 2, 3].map(async (writer) => {
        for (let n = 0; n < 25; n++) {
          const week = new Date(Date.UTC(2030, 0, 7 + 7 * (writer * 25 + n))).toISOString().slice(0, 10);
          await db.sql.begin(async (tx) => {
            await tx`insert into kpi.kpi_history ${tx(historyRow(week, n))}`;
            await tx`select pg_sleep(${Math.random() / 200})`;
          });
        }
      }),
    );
    writing = false;
    await reader;
    const rest = await follow(cursor);
    delivered.push(...rest.changes.map((c) => c.cursor));
    expect(new Set(delivered).size).toBe(delivered.length);
    const logged = await db.sql<{ cursor: string }[]>`
      select txid::text || '.' || seq as cursor from kpi.kpi_changes
      where tenant_id = ${ACME} and (txid, seq) > (split_part(${head}, '.', 1)::xid8, split_part(${head}, '.', 2)::bigint)
      order by txid, seq`;
    // The 100 rows written, and whatever anomalies their scoring found or withdrew.
    expect(rest.changes.length + delivered.length).toBeGreaterThanOrEqual(100);
    const [{ inserts }] = await db.sql<[{ inserts: number }]>`
      select count(*)::int as inserts from kpi.kpi_changes
      where tenant_id = ${ACME} and entity = 'history' and op = 'insert' and as_of >= '2030-01-07'`;
    expect(inserts).toBe(100);
    expect(delivered).toEqual(logged.map((r) => r.cursor));
  });
});

describe('pruning', () => {
  it('prunes what is older than the keep period, up to a settled position; an older cursor is CURSOR_EXPIRED 410', async () => {
    await db.sql`insert into kpi.kpi_history ${db.sql(acmeWeeks(8))}`;
    const { changes: all } = await follow();
    const oldCursor = all[0]!.cursor;
    await db.sql`update kpi.kpi_changes set changed_at = now() - interval '40 days' where tenant_id = ${ACME} and (txid, seq) <= (split_part(${all[5]!.cursor}, '.', 1)::xid8, split_part(${all[5]!.cursor}, '.', 2)::bigint)`;
    const [{ result }] = await db.sql<[{ result: { kpi_changes_deleted: number } }]>`select kpi.clean_up_run_history() as result`;
    expect(Number(result.kpi_changes_deleted)).toBeGreaterThanOrEqual(6);

    const expired = await page(acme, oldCursor);
    expect(expired).toMatchObject({ status: 410, body: { code: 'CURSOR_EXPIRED' } });
    expect((expired.body as { hint: string }).hint).toMatch(/Re-read the current state/);
    // From the start again: the oldest change kept is the one after the pruned ones.
    expect((await follow()).changes[0]!.cursor).toBe(all[6]!.cursor);
    // A cursor at or after the watermark still works.
    expect((await page(acme, all[5]!.cursor)).status).toBe(200);
  });
});

describe('Acme’s user cannot read Globex’s changes', () => {
  it('the feed has Acme’s changes only, though Globex’s are in the log', async () => {
    await db.sql`insert into kpi.kpi_history ${db.sql(acmeWeeks(100))}`;
    await db.sql`update kpi.kpi_history set aiv_pct = aiv_pct + 1 where tenant_id = ${GLOBEX}`;
    const [{ n }] = await db.sql<[{ n: number }]>`select count(*)::int as n from kpi.kpi_changes where tenant_id = ${GLOBEX}`;
    expect(n).toBeGreaterThan(0);
    const response = await postgrestRequest(api, { method: 'GET', path: '/x', claims: acme.claims }, (tx) => tx`select distinct tenant_id from kpi.kpi_changes`);
    expect(response.body).toEqual([{ tenant_id: ACME }]);
    const cursors = (await follow()).changes.map((c) => c.cursor);
    expect(cursors.length).toBeGreaterThan(100);
    const owners = await db.sql`
      select tenant_id, count(*)::int as n from kpi.kpi_changes where txid::text || '.' || seq = any(${cursors}) group by 1`;
    expect(owners).toEqual([{ tenant_id: ACME, n: cursors.length }]);
  });

  it('forged x-tenant → FORBIDDEN 403; no token → 401', async () => {
    for (const header of [GLOBEX, UNKNOWN, '*']) {
      expect(await page({ ...acme, headers: { 'x-tenant': header } }), header).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    }
    expect(await page({})).toMatchObject({ status: 401 });
  });

  it('a cursor taken from Globex’s feed reads nothing of Globex', async () => {
    const [{ cursor }] = await db.sql<[{ cursor: string }]>`
      select txid::text || '.' || (seq - 1) as cursor from kpi.kpi_changes where tenant_id = ${GLOBEX} order by txid desc, seq desc limit 1`;
    const body = (await page(acme, cursor)).body as Page;
    expect(body.changes.every((c) => c.as_of !== undefined)).toBe(true);
    const [{ n }] = await db.sql<[{ n: number }]>`
      select count(*)::int as n from kpi.kpi_changes where tenant_id = ${GLOBEX} and txid::text || '.' || seq = any(${body.changes.map((c) => c.cursor)})`;
    expect(n).toBe(0);
  });
});
