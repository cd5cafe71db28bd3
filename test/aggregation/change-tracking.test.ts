// Change tracking: every kind of source change reaches the history through the daily incremental
// run exactly as a full re-derivation would, concurrent writers lose nothing, NO_AVI keeps being
// reported, and the weekly full run corrects nothing — unless a change went untracked, which it
// then reports.
import { beforeEach, describe, expect, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { historySnapshot, insertGeneratedTenants, insertTenant } from '../fixtures/sources.js';

const db = useTestDatabase();
const TENANTS = 40;
const WEEKS = 6;
const LAST_WEEK = '2024-03-25';
const NO_REPORTS = '00000000-0000-4000-a000-00000000a0a0';

type Run = Record<string, unknown> & { rows_written: number; mode: string; tenants_considered: number; corrected?: number };
const incremental = async (sql: Sql = db.sql) => (await sql<[{ r: Run }]>`select kpi.fill_all_kpi_history() as r`)[0].r;
const full = async () => (await db.sql<[{ r: Run }]>`select kpi.fill_all_kpi_history(full => true) as r`)[0].r;
const backfillWrites = async () => (await db.sql<[{ r: Run }]>`select kpi.backfill_kpi_history() as r`)[0].r.rows_written;
const stale = () => db.sql<{ tenant_id: string; from_week: string }[]>`select tenant_id, from_week::text from kpi.stale_tenants order by tenant_id`;
const someTenant = async (n = 0) => (await db.sql<{ id: string }[]>`select id from kpi.tenants where slug like 'gen-%' order by id offset ${n} limit 1`)[0]!.id;

/** The incremental run brought the history to what a full re-derivation of every week gives. */
async function expectUpToDate(): Promise<void> {
  expect(await stale()).toEqual([]);
  const before = await historySnapshot(db.sql);
  expect(await backfillWrites(), 're-deriving every week changed rows the incremental run missed').toBe(0);
  expect(await historySnapshot(db.sql)).toEqual(before);
}

beforeEach(async () => {
  await db.sql`truncate kpi.tenants cascade`;
  await insertGeneratedTenants(db.sql, TENANTS, WEEKS, LAST_WEEK);
  await insertTenant(db.sql, NO_REPORTS, 'no-reports');
  await db.sql`select kpi.backfill_kpi_history()`;
  await db.sql`truncate kpi.source_changes`;
});

describe('what a write records', () => {
  it('a bulk load records one row per tenant, its earliest week', async () => {
    await db.sql`
      insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
      select t.id, ${LAST_WEEK}::date + 7 * w, 1, 2, 3, 4 from kpi.tenants t cross join generate_series(1, 3) w`;
    const rows = await stale();
    expect(rows).toHaveLength(TENANTS + 1);
    expect(new Set(rows.map((r) => r.from_week))).toEqual(new Set(['2024-04-01']));
  });

  it('keeps the earliest week across writes, and a late audit names the week it falls in (UTC)', async () => {
    const tenant = await someTenant();
    await db.sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point) values (${tenant}, '2024-04-01', 1, 2, 3, 4)`;
    await db.sql`insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct) values (${tenant}, '2024-03-03T23:30:00Z', 42)`;
    await db.sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point) values (${tenant}, '2024-04-08', 1, 2, 3, 4)`;
    // Sunday 2024-03-03 23:30 UTC is in the week of Monday 2024-02-26.
    expect(await stale()).toEqual([{ tenant_id: tenant, from_week: '2024-02-26' }]);
  });

  it('the source cleanup records nothing (what it deletes only fed final weeks)', async () => {
    await db.sql`update kpi.tenants set plan = 'free'`;
    await db.sql`call kpi.run_source_cleanup()`;
    const [run] = await db.sql`select (details ->> 'rows_deleted')::int as rows_deleted from kpi.kpi_runs where kind = 'cleanup' order by id desc limit 1`;
    expect(run!.rows_deleted).toBeGreaterThan(0);
    expect(await stale()).toEqual([]);
  });
});

describe('every kind of change reaches the history, as a full re-derivation would', () => {
  const changes: [string, (tenant: string) => Promise<unknown>][] = [
    ['a new latest week', (t) => db.sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point) values (${t}, '2024-04-01', 11, 22, 33, 44)`],
    ['an AVI report corrected in an old week', (t) => db.sql`update kpi.avi_reports set aiv_pct = 99 where tenant_id = ${t} and week_start = '2024-03-04'`],
    ['an out-of-order AVI week (a gap filled)', async (t) => {
      await db.sql`delete from kpi.avi_reports where tenant_id = ${t} and week_start = '2024-03-11'`;
      await incremental();
      await db.sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point) values (${t}, '2024-03-11', 77, 66, 55, 44)`;
    }],
    ['a late audit for a past week', (t) => db.sql`insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct) values (${t}, '2024-03-05T12:00:00Z', 12.5)`],
    ['an audit corrected', (t) => db.sql`update kpi.vli_audits set integrity_pct = 1 where tenant_id = ${t} and audited_at = (select min(audited_at) from kpi.vli_audits where tenant_id = ${t})`],
    ['an audit deleted', (t) => db.sql`delete from kpi.vli_audits where tenant_id = ${t} and audited_at = (select max(audited_at) from kpi.vli_audits where tenant_id = ${t})`],
    ['an audit moved to another week', (t) => db.sql`update kpi.vli_audits set audited_at = audited_at - interval '14 days' where tenant_id = ${t} and audited_at = (select max(audited_at) from kpi.vli_audits where tenant_id = ${t})`],
    ['a clarity report added', (t) => db.sql`insert into kpi.clarity_reports (tenant_id, measured_at, metrics) values (${t}, '2024-03-13T08:00:00Z', '{"hrp": 0.9}')`],
    ['a clarity report with an invalid HRP', (t) => db.sql`update kpi.clarity_reports set metrics = '{"hrp": "high"}' where tenant_id = ${t} and measured_at = (select max(measured_at) from kpi.clarity_reports where tenant_id = ${t})`],
    ['a clarity report deleted', (t) => db.sql`delete from kpi.clarity_reports where tenant_id = ${t} and measured_at = (select min(measured_at) from kpi.clarity_reports where tenant_id = ${t})`],
    ['an AVI report moved to another tenant', async (t) => {
      const other = await someTenant(1);
      await db.sql`delete from kpi.avi_reports where tenant_id = ${other} and week_start = '2024-03-18'`;
      await db.sql`update kpi.avi_reports set tenant_id = ${other} where tenant_id = ${t} and week_start = '2024-03-18'`;
    }],
  ];

  it.each(changes)('%s', async (_what, change) => {
    const tenant = await someTenant();
    await change(tenant);
    expect((await stale()).length).toBeGreaterThan(0);
    const run = await incremental();
    expect(run).toMatchObject({ mode: 'incremental', status: 'partial' }); // the tenant without reports
    expect(run.tenants_considered).toBeGreaterThan(0);
    expect(run.tenants_considered).toBeLessThanOrEqual(2);
    await expectUpToDate();
  });

  it('a deleted tenant takes its history and its change records with it', async () => {
    const tenant = await someTenant();
    await db.sql`insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct) values (${tenant}, '2024-03-05T12:00:00Z', 12.5)`;
    await db.sql`delete from kpi.tenants where id = ${tenant}`;
    expect(await stale()).toEqual([]);
    expect(await db.sql`select 1 from kpi.kpi_history where tenant_id = ${tenant}`).toEqual([]);
    await incremental();
    await expectUpToDate();
  });
});

describe('the incremental run', () => {
  it('reads only the recorded tenants, and when nothing changed, writes and reads nothing', async () => {
    const run = await incremental();
    expect(run).toMatchObject({ mode: 'incremental', tenants_considered: 0, rows_written: 0, ok: TENANTS, total: TENANTS + 1 });
  });

  it('counts the tenants without counting them: kpi.tenant_count follows inserts, deletes and truncation', async () => {
    const count = async () => (await db.sql`select tenants::int as n from kpi.tenant_count`)[0]!.n;
    const actual = async () => (await db.sql`select count(*)::int as n from kpi.tenants`)[0]!.n;
    expect(await count()).toBe(await actual());
    await db.sql`insert into kpi.tenants (slug, name) select 'more-' || i, 'More' from generate_series(1, 5) i`;
    await db.sql`delete from kpi.tenants where slug in ('more-1', 'more-2')`;
    expect(await count()).toBe(await actual());
    expect((await incremental()).total).toBe(TENANTS + 4);
    await db.sql`truncate kpi.tenants cascade`;
    expect(await count()).toBe(0);
  });

  it('keeps reporting NO_AVI, from the list the triggers keep', async () => {
    const noAvi = (run: Run) => (run.errors as { code: string; tenant_id: string }[]).map((e) => e.tenant_id);
    const generatedWithout = { id: NO_REPORTS };
    expect(noAvi(await incremental())).toEqual([generatedWithout.id]);
    const fresh = '00000000-0000-4000-a000-0000000f4e54';
    await insertTenant(db.sql, fresh, 'fresh');
    expect(noAvi(await incremental()).sort()).toEqual([generatedWithout.id, fresh].sort());
    await db.sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point) values (${fresh}, ${LAST_WEEK}, 1, 2, 3, 4)`;
    expect(noAvi(await incremental())).toEqual([generatedWithout.id]);
    await db.sql`delete from kpi.avi_reports where tenant_id = ${fresh}`;
    expect(noAvi(await incremental()).sort()).toEqual([generatedWithout.id, fresh].sort());
  });

  it('never loses a change written while it runs: the record stays for the next run', async () => {
    const tenant = await someTenant();
    await db.sql`update kpi.avi_reports set crs_pct = (crs_pct + 1) % 100 where tenant_id = ${tenant}`;
    const blocker = connect(db.url, { max: 1 });
    const runner = connect(db.url, { max: 1 });
    const writer = connect(db.url, { max: 1 });
    try {
      const [{ pid }] = await runner<[{ pid: number }]>`select pg_backend_pid() as pid`;
      let running: Promise<Run> = Promise.resolve({} as Run);
      let writing: Promise<unknown> = Promise.resolve();
      await blocker.begin(async (tx) => {
        // The run waits on the tenant's latest history row…
        await tx`select 1 from kpi.kpi_history where tenant_id = ${tenant} and as_of = ${LAST_WEEK} for update`;
        running = incremental(runner);
        for (let i = 0; i < 400; i++) {
          const [row] = await db.sql<{ waiting: boolean }[]>`select coalesce(wait_event_type = 'Lock', false) as waiting from pg_stat_activity where pid = ${pid}`;
          if (row?.waiting) break;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        // …while another transaction changes the same tenant (its record waits, if need be, for
        // the run's transaction: never the other way round).
        writing = writer`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point) values (${tenant}, '2024-04-01', 5, 5, 5, 5)`.execute();
        await new Promise((resolve) => setTimeout(resolve, 200));
      });
      await writing;
      const run = await running;
      expect(run.tenants_considered).toBe(1);
      // The run could not see the new week; its record survived the run.
      expect(await stale()).toEqual([{ tenant_id: tenant, from_week: '2024-04-01' }]);
      expect(await db.sql`select 1 from kpi.kpi_history where tenant_id = ${tenant} and as_of = '2024-04-01'`).toEqual([]);
      expect((await incremental()).rows_written).toBe(1);
      await expectUpToDate();
    } finally {
      await Promise.all([blocker.end(), runner.end(), writer.end()]);
    }
  });

  it('concurrent writers and runs: after 4 writers × 50 changes beside runs, nothing is missing', async () => {
    const writers = [0, 1, 2, 3].map(async (w) => {
      const sql = connect(db.url, { max: 1 });
      try {
        for (let i = 0; i < 50; i++) {
          const tenant = await someTenant((w * 50 + i) % TENANTS);
          await sql`update kpi.vli_audits set integrity_pct = ${(w * 7 + i) % 100} where tenant_id = ${tenant}
                    and audited_at = (select max(audited_at) from kpi.vli_audits where tenant_id = ${tenant})`;
        }
      } finally {
        await sql.end();
      }
    });
    const runner = connect(db.url, { max: 1 });
    let done = false;
    const runs = (async () => {
      while (!done) await incremental(runner);
    })();
    await Promise.all(writers);
    done = true;
    await runs;
    await runner.end();
    await incremental();
    await expectUpToDate();
  });
});

describe('the full run (weekly reconciliation)', () => {
  it('after a random mix of 10,000 changes and incremental runs, corrects 0 rows', async () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    let applied = 0;
    while (applied < 10_000) {
      // A batch of 500 random changes of every kind, in a few statements, then a daily run.
      const kind = Math.floor(random() * 6);
      const offset = Math.floor(random() * 1000);
      if (kind === 0) {
        await db.sql`update kpi.avi_reports set aiv_pct = ((aiv_pct * 7 + ${offset}::int) % 100) where id in (select id from kpi.avi_reports order by hashtext(id::text || ${offset}::text) limit 500)`;
      } else if (kind === 1) {
        await db.sql`insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct)
                     select t.id, ${LAST_WEEK}::date - (g * 3 + ${offset % 40}::int) * interval '1 day', (g * 13 + ${offset}::int) % 100
                     from kpi.tenants t cross join generate_series(1, 12) g where t.slug like 'gen-%'
                     limit 500`;
      } else if (kind === 2) {
        await db.sql`delete from kpi.vli_audits where id in (select id from kpi.vli_audits order by hashtext(id::text || ${offset}::text) limit 250)`;
      } else if (kind === 3) {
        await db.sql`update kpi.clarity_reports set metrics = jsonb_build_object('hrp', ((hashtext(id::text) & 1023) % 1001) / 1000.0)
                     where id in (select id from kpi.clarity_reports order by hashtext(id::text || ${offset}::text) limit 500)`;
      } else if (kind === 4) {
        await db.sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
                     select t.id, ${LAST_WEEK}::date - 7 * (${WEEKS}::int + ${offset % 20}::int), 10, 20, 30, 40 from kpi.tenants t
                     where t.slug like 'gen-%' on conflict do nothing`;
      } else {
        await db.sql`update kpi.vli_audits set audited_at = audited_at + interval '5 days'
                     where id in (select id from kpi.vli_audits order by hashtext(id::text || ${offset}::text) limit 500)`;
      }
      applied += 500;
      if (random() < 0.5) await incremental();
    }
    await incremental();
    const reconciled = await full();
    expect(reconciled).toMatchObject({ mode: 'full', corrected: 0 });
    await expectUpToDate();
  }, 120_000);

  it('reports an untracked change: corrected > 0, a warning in the run log, health degraded', async () => {
    const tenant = await someTenant();
    // A write that went around the tracking (as a bug in a trigger would).
    await db.sql.begin(async (tx) => {
      await tx`select set_config('kpi.tracking', 'off', true)`;
      await tx`update kpi.avi_reports set aiv_pct = 1 where tenant_id = ${tenant} and week_start = ${LAST_WEEK}`;
    });
    expect((await incremental()).rows_written).toBe(0);
    const run = await full();
    expect(run).toMatchObject({ mode: 'full', corrected: 1 });
    expect(run.warnings).toContainEqual(expect.objectContaining({ tenant_id: tenant, as_of: LAST_WEEK, code: 'UNTRACKED_CHANGE' }));
    const [{ health }] = await db.sql<[{ health: { status: string; reasons: string[] } }]>`select kpi.health_report() as health`;
    expect(health.status).toBe('degraded');
    expect(health.reasons).toContainEqual(expect.stringMatching(/^the last full run corrected 1 rows the change tracking missed \(run \d+\)$/));
  });
});
