// Overlapping runs: all-tenant runs exclude each other (the later ones are skipped and logged),
// single-tenant runs go on beside anything, and the final table is the same as after serial runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { historySnapshot, insertAvi, insertGeneratedTenants, insertTenant } from '../fixtures/sources.js';
import { UMBRELLA } from '../fixtures/tenants.js';

const db = useTestDatabase();
const TENANTS = 400;
let pool: Sql;

type RunResult = { status: string; skipped?: boolean; run_id: number; ok?: number };

beforeAll(async () => {
  await insertGeneratedTenants(db.sql, TENANTS, 4);
  // Enough connections for every call to run in its own session at the same time.
  pool = connect(db.url, { max: 20 });
});
afterAll(() => pool.end());

const fillAll = () => pool<[{ r: RunResult }]>`select kpi.fill_all_kpi_history() as r`.then(([row]) => row.r);
const fillOne = (tenantId: string) => pool<[{ r: { ok: boolean } }]>`select kpi.fill_kpi_history(${tenantId}) as r`.then(([row]) => row.r);
const fillScheduled = () => pool`call kpi.run_scheduled_kpi_fill()`;

describe('all-tenant runs at once', () => {
  it('a run that finds another holding the lock returns at once as skipped, and says so in the log', async () => {
    const holder = connect(db.url, { max: 1 });
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let started!: () => void;
      const holding = new Promise<void>((resolve) => (started = resolve));
      const first = holder.begin(async (tx) => {
        const [{ r }] = await tx<[{ r: RunResult }]>`select kpi.fill_all_kpi_history() as r`;
        started();
        await released; // keep the transaction, and so the lock, open
        return r;
      });
      await holding;
      const others = await Promise.all([...Array(8)].map(fillAll));
      const scheduled = await fillScheduled().then(() => db.sql`select status from kpi.kpi_runs order by id desc limit 1`);
      release();
      const firstResult = await first;

      expect(firstResult.status).toBe('ok');
      for (const other of others) expect(other).toMatchObject({ skipped: true, status: 'skipped' });
      expect(scheduled).toEqual([{ status: 'skipped' }]);
      const skippedRuns = await db.sql`
        select count(*)::int as n from kpi.kpi_runs
        where status = 'skipped' and id = any(${others.map((o) => o.run_id)}::bigint[])
          and finished_at is not null and rows_written is null`;
      expect(skippedRuns[0]!.n).toBe(8);
    } finally {
      await holder.end();
    }
  });

  it('8 all-tenant runs, a scheduled run and 40 single-tenant runs at once: no error, no duplicate, same table as serial', async () => {
    // New data for every tenant, so that the runs really write.
    await db.sql`update kpi.avi_reports set aiv_pct = (aiv_pct + 1) % 100 where week_start = '2024-03-25'`;
    const tenants = (await db.sql`select id from kpi.tenants order by id limit 40`).map((r) => r.id as string);
    const settled = await Promise.allSettled([
      ...[...Array(8)].map(fillAll),
      fillScheduled(),
      ...tenants.map(fillOne),
    ]);
    const failures = settled.filter((s) => s.status === 'rejected');
    expect(failures).toEqual([]);
    const allRuns = settled.slice(0, 8).map((s) => (s as PromiseFulfilledResult<RunResult>).value);
    for (const run of allRuns) expect(['ok', 'skipped']).toContain(run.status);

    const [{ duplicates }] = await db.sql<[{ duplicates: number }]>`
      select count(*)::int as duplicates from (
        select tenant_id, as_of from kpi.kpi_history group by 1, 2 having count(*) > 1) d`;
    expect(duplicates).toBe(0);

    // One serial run after the storm must find nothing left to do.
    const concurrent = await historySnapshot(db.sql);
    const serial = await fillAll();
    expect(serial).toMatchObject({ status: 'ok', rows_written: 0 });
    expect(await historySnapshot(db.sql)).toEqual(concurrent);

    const skippedResults = allRuns.filter((r) => r.skipped).length;
    const [{ logged }] = await db.sql<[{ logged: number }]>`
      select count(*)::int as logged from kpi.kpi_runs where status = 'skipped' and id = any(${allRuns.map((r) => r.run_id)}::bigint[])`;
    expect(logged).toBe(skippedResults);
  });
});

describe('single-tenant runs at once', () => {
  it('16 fills of the same tenant with no row yet: one row, no error', async () => {
    await insertTenant(db.sql, UMBRELLA, 'umbrella');
    await insertAvi(db.sql, UMBRELLA, { weekStart: '2024-05-06' });
    const results = await Promise.all([...Array(16)].map(() => fillOne(UMBRELLA)));
    for (const result of results) expect(result).toMatchObject({ ok: true, as_of: '2024-05-06' });
    const rows = await db.sql`select as_of::text from kpi.kpi_history where tenant_id = ${UMBRELLA}`;
    expect(rows).toEqual([{ as_of: '2024-05-06' }]);
  });

  it('backfills of one tenant beside an all-tenant fill do not deadlock', async () => {
    await db.sql`update kpi.avi_reports set ati_pct = (ati_pct + 1) % 100`;
    const tenants = (await db.sql`select id from kpi.tenants where slug like 'gen-%' order by id desc limit 10`).map((r) => r.id as string);
    const settled = await Promise.allSettled([
      fillAll(),
      ...tenants.flatMap((t) => [pool`select kpi.backfill_kpi_history(${t})`, pool`select kpi.backfill_kpi_history(${t})`]),
    ]);
    expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
  });
});
