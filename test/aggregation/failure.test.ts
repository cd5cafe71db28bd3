// A run stopped mid-way leaves kpi_history exactly as it was and shows in the run log; the next
// run heals it. The run is stopped while it waits for a row another session holds, after it has
// already written the rows before that one.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { historySnapshot, insertGeneratedTenants } from '../fixtures/sources.js';

const db = useTestDatabase();
const TENANTS = 200;

beforeAll(async () => {
  await insertGeneratedTenants(db.sql, TENANTS, 3);
  await db.sql`select kpi.fill_all_kpi_history()`;
});

beforeEach(async () => {
  // Every tenant's latest report changes, so a run would rewrite every row.
  await db.sql`update kpi.avi_reports set crs_pct = (crs_pct + 7) % 100 where week_start = '2024-03-25'`;
});

/**
 * Runs `stopMidway` while `run` (on a session of its own) is blocked on the last tenant's row,
 * i.e. after it wrote all the others. Returns what `run` returned or threw.
 */
async function interrupted(run: (session: Sql) => Promise<unknown>, stop: (pid: number) => Promise<unknown>) {
  const blocker = connect(db.url, { max: 1 });
  const session = connect(db.url, { max: 1 });
  try {
    const [{ pid }] = await session<[{ pid: number }]>`select pg_backend_pid() as pid`;
    return await blocker.begin(async (tx) => {
      await tx`select 1 from kpi.kpi_history where tenant_id = (select tenant_id from kpi.kpi_history order by tenant_id desc limit 1) for update`;
      const outcome = run(session).then(
        (value) => ({ value }),
        (error) => ({ error }),
      );
      // Wait until the run waits for the row lock.
      for (let i = 0; i < 200; i++) {
        const [{ waiting }] = await db.sql<[{ waiting: boolean }]>`
          select coalesce(wait_event_type = 'Lock', false) as waiting from pg_stat_activity where pid = ${pid}`;
        if (waiting) break;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      await stop(pid);
      return outcome;
    });
  } finally {
    // A terminated connection never answers a polite goodbye: close it without waiting.
    await session.end({ timeout: 0 });
    await blocker.end();
  }
}

describe('a run stopped mid-way', () => {
  it('cancelled (pg_cancel_backend): table unchanged, run logged as failed with the cancel', async () => {
    const before = await historySnapshot(db.sql);
    const outcome = await interrupted(
      (s) => s`select kpi.fill_all_kpi_history() as r`.then(([row]) => row!.r),
      (pid) => db.sql`select pg_cancel_backend(${pid})`,
    );
    expect(outcome).toMatchObject({ value: { status: 'failed', ok: 0, rows_written: 0 } });
    expect(await historySnapshot(db.sql)).toEqual(before);
    const [run] = await db.sql`select status, errors, finished_at from kpi.kpi_runs order by id desc limit 1`;
    expect(run).toMatchObject({ status: 'failed', errors: [{ code: 'INTERNAL_ERROR', sqlstate: '57014' }] });
    expect(run!.finished_at).toBeInstanceOf(Date);
  });

  it('timed out (statement_timeout): table unchanged, run logged as failed', async () => {
    const before = await historySnapshot(db.sql);
    const outcome = await interrupted(
      (s) =>
        s.begin(async (tx) => {
          await tx`set local statement_timeout = '300ms'`;
          const [row] = await tx`select kpi.fill_all_kpi_history() as r`;
          return row!.r;
        }),
      async () => {}, // the timeout does it
    );
    expect(outcome).toMatchObject({ value: { status: 'failed' } });
    expect(await historySnapshot(db.sql)).toEqual(before);
    const [run] = await db.sql`select status, errors from kpi.kpi_runs order by id desc limit 1`;
    expect(run).toMatchObject({ status: 'failed', errors: [{ sqlstate: '57014' }] });
  });

  it('the daily job killed (pg_terminate_backend): table unchanged, run left as running, never finished', async () => {
    const before = await historySnapshot(db.sql);
    const outcome = await interrupted(
      (s) => s`call kpi.run_scheduled_kpi_fill()`,
      (pid) => db.sql`select pg_terminate_backend(${pid})`,
    );
    expect(outcome).toHaveProperty('error');
    expect(await historySnapshot(db.sql)).toEqual(before);
    const [run] = await db.sql`select kind, status, finished_at from kpi.kpi_runs order by id desc limit 1`;
    expect(run).toEqual({ kind: 'fill_all', status: 'running', finished_at: null });
  });

  it('the daily procedure cancelled: its failed run is committed, then the CALL fails with INTERNAL_ERROR naming the run', async () => {
    const before = await historySnapshot(db.sql);
    const outcome = (await interrupted(
      (s) => s`call kpi.run_scheduled_kpi_fill()`,
      (pid) => db.sql`select pg_cancel_backend(${pid})`,
    )) as { error?: { code: string; message: string; hint: string } };
    const [run] = await db.sql`select id, status, errors from kpi.kpi_runs where kind = 'fill_all' order by id desc limit 1`;
    expect(run).toMatchObject({ status: 'failed', errors: [{ code: 'INTERNAL_ERROR', sqlstate: '57014' }] });
    expect(outcome.error).toMatchObject({
      code: 'KH500',
      message: `fill_all run ${run!.id} failed (SQLSTATE 57014): canceling statement due to user request`,
      hint: `Details: select errors, details from kpi.kpi_runs where id = ${run!.id};`,
    });
    expect(await historySnapshot(db.sql)).toEqual(before);
  });

  it('is healed by the next run, which writes every row', async () => {
    // The procedure, as pg_cron runs it: from psql it says how the run went.
    const notices: string[] = [];
    const session = connect(db.url, { max: 1, onnotice: (notice) => notices.push(notice.message ?? '') });
    try {
      await session`call kpi.run_scheduled_kpi_fill()`;
    } finally {
      await session.end();
    }
    const [run] = await db.sql`select id, status, ok_count, rows_written from kpi.kpi_runs where kind = 'fill_all' order by id desc limit 1`;
    expect(run).toMatchObject({ status: 'ok', ok_count: TENANTS, rows_written: TENANTS });
    expect(notices).toContain(`fill_all run ${run!.id}: ok, ${TENANTS} of ${TENANTS} tenants, ${TENANTS} rows written`);
    const [{ stale }] = await db.sql<[{ stale: number }]>`
      select count(*)::int as stale from kpi.kpi_history h
      join kpi.avi_reports a on a.tenant_id = h.tenant_id and a.week_start = h.as_of
      where a.crs_pct <> h.crs_pct`;
    expect(stale).toBe(0);
  });
});
