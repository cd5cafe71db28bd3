// The all-tenant lock is held by one transaction at a time and released on every path: a cancel
// anywhere in the daily procedure, a call inside a transaction block, an error. A skipped run
// names the holder; health reports a lock held longer than a run takes.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { insertGeneratedTenants } from '../fixtures/sources.js';

const db = useTestDatabase();
const sessions: Sql[] = [];
const session = () => {
  const sql = connect(db.url, { max: 1 });
  sessions.push(sql);
  return sql;
};

beforeAll(async () => {
  await insertGeneratedTenants(db.sql, 20, 2);
});
afterEach(async () => {
  await Promise.all(sessions.splice(0).map((sql) => sql.end({ timeout: 0 })));
});

const lockHolders = () => db.sql<{ pid: number }[]>`
  select pid from pg_locks where locktype = 'advisory' and classid = 1263552840 and objid = 1 and objsubid = 2 and granted`;
const pidOf = async (sql: Sql) => (await sql<[{ pid: number }]>`select pg_backend_pid() as pid`)[0].pid;

async function waitUntilWaiting(pid: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const [row] = await db.sql<{ waiting: boolean }[]>`select coalesce(wait_event_type = 'Lock', false) as waiting from pg_stat_activity where pid = ${pid}`;
    if (row?.waiting) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`pid ${pid} never waited for a lock`);
}

describe('the daily procedure never leaves the lock held', () => {
  it('cancelled while logging its run (before the work): the session lives on and holds nothing; the next run runs', async () => {
    const procedure = session();
    const pid = await pidOf(procedure);
    const blocker = session();
    // The procedure waits to insert its run while another session holds the run log.
    await blocker.begin(async (tx) => {
      await tx`lock table kpi.kpi_runs in exclusive mode`;
      const call = procedure`call kpi.run_scheduled_kpi_fill()`.then(
        () => null,
        (error: { code?: string }) => error.code,
      );
      await waitUntilWaiting(pid);
      await db.sql`select pg_cancel_backend(${pid})`;
      expect(await call).toBe('57014');
    });
    // The pooled connection is still there, and holds no lock.
    expect(await pidOf(procedure)).toBe(pid);
    expect(await lockHolders()).toEqual([]);
    const next = await session()`select kpi.fill_all_kpi_history() as r`;
    expect(next[0]!.r).toMatchObject({ status: 'ok' });
  });

  it('called inside a transaction block: refused before anything is written or locked', async () => {
    const caller = session();
    const runsBefore = await db.sql`select count(*)::int as n from kpi.kpi_runs`;
    const refused = await caller
      .begin(async (tx) => {
        await tx`call kpi.run_scheduled_kpi_fill()`;
      })
      .then(
        () => null,
        (error: { code?: string; message?: string }) => error,
      );
    expect(refused).toMatchObject({ code: '2D000', message: 'invalid transaction termination' });
    expect(await db.sql`select count(*)::int as n from kpi.kpi_runs`).toEqual(runsBefore);
    expect(await lockHolders()).toEqual([]);
    expect((await session()`select kpi.fill_all_kpi_history() as r`)[0]!.r).toMatchObject({ status: 'ok' });
  });

  it('run to the end: the lock is gone with its last transaction', async () => {
    const caller = session();
    await caller`call kpi.run_scheduled_kpi_fill()`;
    expect(await lockHolders()).toEqual([]);
    const [run] = await db.sql`select status, trigger from kpi.kpi_runs where kind = 'fill_all' order by id desc limit 1`;
    expect(run).toEqual({ status: 'ok', trigger: 'sql' });
  });
});

describe('a skipped run names the holder', () => {
  it('the procedure skipped while a SQL fill holds the lock: pid, since, in the answer and the log', async () => {
    const holder = session();
    const holderPid = await pidOf(holder);
    await holder.begin(async (tx) => {
      await tx`select kpi.fill_all_kpi_history()`;
      await session()`call kpi.run_scheduled_kpi_fill()`;
      const [run] = await db.sql`select status, lock_holder from kpi.kpi_runs where kind = 'fill_all' order by id desc limit 1`;
      expect(run).toMatchObject({ status: 'skipped', lock_holder: { pid: holderPid, since: expect.stringMatching(/\+00:00$/) } });
      const [{ r }] = (await session()`select kpi.fill_all_kpi_history() as r`) as unknown as [{ r: { message: string } }];
      expect(r).toMatchObject({ skipped: true, holder: { pid: holderPid } });
      expect(r.message).toContain(`pid ${holderPid} since `);
    });
  });

  it('a SQL fill skipped while the procedure runs names the procedure’s run', async () => {
    const blocker = session();
    const procedure = session();
    const pid = await pidOf(procedure);
    // History to change: every tenant's latest week written, then every source changed.
    await db.sql`select kpi.fill_all_kpi_history(full => true)`;
    await db.sql`update kpi.avi_reports set aiv_pct = (aiv_pct + 1) % 100`;
    let call: Promise<unknown> = Promise.resolve();
    await blocker.begin(async (tx) => {
      // The procedure's work waits on a history row: it holds the lock meanwhile.
      await tx`select 1 from kpi.kpi_history order by tenant_id desc limit 1 for update`;
      call = procedure`call kpi.run_scheduled_kpi_fill()`.execute();
      await waitUntilWaiting(pid);
      const [{ r }] = (await session()`select kpi.fill_all_kpi_history() as r`) as unknown as [{ r: { message: string } }];
      const [running] = await db.sql`select id from kpi.kpi_runs where backend_pid = ${pid} and status = 'running'`;
      expect(r).toMatchObject({ skipped: true, holder: { pid, run_id: Number(running!.id) } });
      expect(r.message).toContain(`(run ${running!.id})`);
    });
    await call;
    expect(await lockHolders()).toEqual([]);
  });
});

describe('health', () => {
  it('is degraded while the lock is held longer than a run takes (a transaction that never ended)', async () => {
    await db.sql`call kpi.run_scheduled_kpi_fill()`;
    const holder = session();
    const pid = await pidOf(holder);
    await holder.begin(async (tx) => {
      await tx`select kpi.try_lock_all_tenants()`;
      const [fresh] = await db.sql`select kpi.health_report() as h`;
      expect(fresh!.h.reasons).toEqual([]);
      // The holder's run started two hours ago and is still going.
      await db.sql`insert into kpi.kpi_runs (kind, trigger, backend_pid, status, started_at)
                   values ('fill_all', 'sql', ${pid}, 'running', now() - interval '2 hours')`;
      const [stale] = await db.sql`select kpi.health_report() as h`;
      expect(stale!.h.status).toBe('degraded');
      expect(stale!.h.reasons).toContainEqual(expect.stringMatching(new RegExp(`^the all-tenant lock has been held since .+ by pid ${pid} \\(longer than a run takes\\)$`)));
    });
  });
});
