// Source retention per plan: the daily cleanup deletes source reports older than each tenant's
// retention, in batches, logs what it deleted — and never changes the history, nor deletes the
// rows the history still needs (the latest AVI report; the audit and clarity report still in
// effect at the cutoff, however old).
import { beforeEach, describe, expect, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { historySnapshot, insertTenant } from '../fixtures/sources.js';

const db = useTestDatabase();
const FREE = '00000000-0000-4000-a000-0000000f4ee1';
const PRO = '00000000-0000-4000-a000-000000000912';
const ONCE = '00000000-0000-4000-a000-00000000041c';
const FOREVER = '00000000-0000-4000-a000-0000000e7e41';
const TENANTS = [FREE, PRO, ONCE, FOREVER];

/**
 * Two years of weekly AVI reports, audits and clarity reports up to last week for each tenant —
 * but ONCE was audited only once, two years ago. Then a backfill, so the history has every week.
 */
async function twoYearsOfReports(sql: Sql): Promise<void> {
  await sql`truncate kpi.tenants cascade`;
  await sql`update kpi.retention_state set last_cleanup_as_of = null`; // no cleanup has run yet
  await insertTenant(sql, FREE, 'free-tenant');
  await insertTenant(sql, PRO, 'pro-tenant');
  await insertTenant(sql, ONCE, 'audited-once');
  await insertTenant(sql, FOREVER, 'enterprise-tenant');
  await sql`update kpi.tenants set plan = 'free' where id in (${FREE}, ${ONCE})`;
  await sql`update kpi.tenants set plan = 'pro' where id = ${PRO}`;
  await sql`
    insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
    select t.id, date_trunc('week', now() at time zone 'UTC')::date - 7 * w, 10 + w % 80, 20, 30, 1000 + w
    from unnest(${TENANTS}::uuid[]) t(id) cross join generate_series(1, 104) w`;
  await sql`
    insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct)
    select t.id, now() - make_interval(days => 7 * w + 3), 50 + w % 50
    from unnest(${TENANTS}::uuid[]) t(id) cross join generate_series(1, 104) w
    where t.id <> ${ONCE} or w = 104`;
  await sql`
    insert into kpi.clarity_reports (tenant_id, measured_at, metrics)
    select t.id, now() - make_interval(days => 7 * w + 2), jsonb_build_object('hrp', (w % 100) / 100.0)
    from unnest(${TENANTS}::uuid[]) t(id) cross join generate_series(1, 104) w`;
  await sql`select kpi.backfill_kpi_history()`;
}

const counts = (sql: Sql) => sql`
  select t.slug,
         (select count(*)::int from kpi.avi_reports r where r.tenant_id = t.id) as avi,
         (select count(*)::int from kpi.vli_audits v where v.tenant_id = t.id) as vli,
         (select count(*)::int from kpi.clarity_reports c where c.tenant_id = t.id) as clarity
  from kpi.tenants t order by t.slug`;
const oldestKept = (sql: Sql, tenantId: string) => sql`
  select (select min(week_start) from kpi.avi_reports where tenant_id = ${tenantId}) as avi,
         (select min(audited_at) from kpi.vli_audits where tenant_id = ${tenantId}) as vli,
         (select min(measured_at) from kpi.clarity_reports where tenant_id = ${tenantId}) as clarity`;
const lastCleanup = async (sql: Sql) =>
  (await sql`select status, rows_written, details from kpi.kpi_runs where kind = 'cleanup' order by id desc limit 1`)[0]!;

beforeEach(async () => {
  await twoYearsOfReports(db.sql);
});

describe('plans', () => {
  it('are seeded free 90 days, pro 400, enterprise forever; new tenants start on enterprise', async () => {
    expect(await db.sql`select plan, source_retention_days from kpi.plans order by plan`).toEqual([
      { plan: 'enterprise', source_retention_days: null },
      { plan: 'free', source_retention_days: 90 },
      { plan: 'pro', source_retention_days: 400 },
    ]);
    const [fresh] = await db.sql`insert into kpi.tenants (slug, name) values ('brand-new', 'New') returning plan`;
    expect(fresh!.plan).toBe('enterprise');
  });
});

describe('the preview of a plan change', () => {
  it('counts what the cleanup then deletes, row for row, for the retention asked; deletes nothing itself', async () => {
    const preview = async (tenant: string, days: number | null) =>
      Object.fromEntries((await db.sql<{ source: string; rows_to_delete: number }[]>`
        select source, rows_to_delete::int from kpi.preview_source_cleanup(${tenant}, ${days})`).map((r) => [r.source, r.rows_to_delete]));
    // enterprise-tenant, were it moved to the free plan's 90 days; pro-tenant as it is (400 days).
    const asFree = await preview('enterprise-tenant', 90);
    const asItIs = await preview('pro-tenant', null);
    expect(await preview('enterprise-tenant', null)).toEqual({ avi_reports: 0, vli_audits: 0, clarity_reports: 0 });
    expect(asFree.avi_reports).toBeGreaterThan(80);
    const before = await counts(db.sql);
    expect(await counts(db.sql)).toEqual(before);

    await db.sql`update kpi.tenants set plan = 'free' where slug = 'enterprise-tenant'`;
    await db.sql`call kpi.run_source_cleanup()`;
    const after = Object.fromEntries((await counts(db.sql)).map((r) => [r.slug, r]));
    const was = Object.fromEntries(before.map((r) => [r.slug, r]));
    for (const [slug, expected] of [['enterprise-tenant', asFree], ['pro-tenant', asItIs]] as const) {
      expect({
        avi_reports: was[slug]!.avi - after[slug]!.avi,
        vli_audits: was[slug]!.vli - after[slug]!.vli,
        clarity_reports: was[slug]!.clarity - after[slug]!.clarity,
      }, slug).toEqual(expected);
    }
  });

  it('a tenant’s own override still wins over the retention previewed, as in the cleanup', async () => {
    await db.sql`update kpi.tenants set source_retention_days = 30 where slug = 'pro-tenant'`;
    const [{ n: with30 }] = await db.sql<[{ n: number }]>`select sum(rows_to_delete)::int as n from kpi.preview_source_cleanup('pro-tenant', 400)`;
    const [{ n: own }] = await db.sql<[{ n: number }]>`select sum(rows_to_delete)::int as n from kpi.preview_source_cleanup('pro-tenant')`;
    expect(with30).toBe(own);
    await expect(db.sql`select * from kpi.preview_source_cleanup('pro-tenant', 0)`).rejects.toMatchObject({ code: 'KH400' });
  });
});

describe('the cleanup', () => {
  it('deletes what is older than each retention, keeps what the history needs, and logs it', async () => {
    await db.sql`call kpi.run_source_cleanup()`;
    const after = await counts(db.sql);
    const by = Object.fromEntries(after.map((row) => [row.slug, row]));
    // enterprise: forever.
    expect(by['enterprise-tenant']).toMatchObject({ avi: 104, vli: 104, clarity: 104 });
    // free, 90 days: the weeks ending after the cutoff, plus the report, audit and clarity report
    // in effect at it (for AVI: the last week that ended before it).
    const [free] = await oldestKept(db.sql, FREE);
    expect(free!.avi.getTime()).toBeGreaterThan(Date.now() - 105 * 86_400_000);
    expect(by['free-tenant']!.avi).toBeLessThanOrEqual(14);
    expect(by['free-tenant']!.vli).toBeLessThanOrEqual(14);
    expect(free!.vli.getTime()).toBeLessThan(Date.now() - 90 * 86_400_000); // the one still in effect at the cutoff
    expect(free!.vli.getTime()).toBeGreaterThan(Date.now() - 98 * 86_400_000);
    expect(by['pro-tenant']!.avi).toBeGreaterThan(50);
    expect(by['pro-tenant']!.avi).toBeLessThan(104);
    // Audited once, two years ago: that audit stays.
    expect(by['audited-once']!.vli).toBe(1);
    const run = await lastCleanup(db.sql);
    expect(run).toMatchObject({ status: 'ok' });
    const deleted = run.details.deleted as Record<string, number>;
    const remaining = (kind: 'avi' | 'vli' | 'clarity') => after.reduce((n, r) => n + (r[kind] as number), 0);
    expect(deleted.avi_reports).toBe(4 * 104 - remaining('avi'));
    expect(deleted.vli_audits).toBe(3 * 104 + 1 - remaining('vli'));
    expect(deleted.clarity_reports).toBe(4 * 104 - remaining('clarity'));
    expect(run.details.rows_deleted).toBe(deleted.avi_reports! + deleted.vli_audits! + deleted.clarity_reports!);
    expect(run.rows_written).toBe(0); // a cleanup writes no history
    expect(run.details.batches).toBeGreaterThanOrEqual(3);
    expect(run.details.longest_batch_ms).toBeGreaterThan(0);
  });

  it('deletes in batches of batch_size rows, each its own transaction, to the same end', async () => {
    await db.sql`call kpi.run_source_cleanup(7)`;
    const run = await lastCleanup(db.sql);
    const total = run.details.rows_deleted as number;
    expect(run.details.batch_size).toBe(7);
    expect(run.details.batches).toBeGreaterThanOrEqual(Math.ceil(total / 7));
    await db.sql`call kpi.run_source_cleanup()`;
    expect((await lastCleanup(db.sql)).details.rows_deleted).toBe(0); // nothing was left behind
  });

  it('never changes the history: not the cleanup, not the next fill, not a backfill over the purged weeks (which says so)', async () => {
    const history = await historySnapshot(db.sql);
    await db.sql`call kpi.run_source_cleanup()`;
    expect(await historySnapshot(db.sql)).toEqual(history);
    await db.sql`select kpi.fill_all_kpi_history()`;
    expect(await historySnapshot(db.sql)).toEqual(history);
    const [{ result }] = await db.sql<[{ result: Record<string, number> }]>`select kpi.backfill_kpi_history() as result`;
    expect(await historySnapshot(db.sql)).toEqual(history);
    expect(result.rows_written).toBe(0);
    // The history weeks before each horizon were left as they are, and the result says how many.
    const [{ final }] = await db.sql<[{ final: number }]>`
      select count(*)::int as final from kpi.kpi_history h join kpi.tenants t on t.id = h.tenant_id
      where t.plan in ('free', 'pro') and kpi.week_end(h.as_of) <= now() - make_interval(days => case t.plan when 'free' then 90 else 400 end)`;
    expect(final).toBeGreaterThan(3 * 52);
    expect(result.weeks_kept).toBe(final);
    const [{ one }] = await db.sql<[{ one: Record<string, number> }]>`select kpi.backfill_kpi_history(${FREE}, "from" => current_date - 365, "to" => current_date - 200) as one`;
    expect(one).toMatchObject({ rows_written: 0, weeks: 0 });
    expect(one.weeks_kept).toBeGreaterThanOrEqual(23);
  });

  it('a shorter plan takes effect on the next cleanup; a longer one never brings purged weeks back into play', async () => {
    await db.sql`call kpi.run_source_cleanup()`;
    const proBefore = (await counts(db.sql)).find((r) => r.slug === 'pro-tenant')!;
    await db.sql`update kpi.tenants set plan = 'free' where id = ${PRO}`;
    expect((await counts(db.sql)).find((r) => r.slug === 'pro-tenant')).toEqual(proBefore); // nothing until the cleanup
    await db.sql`call kpi.run_source_cleanup()`;
    const proAfter = (await counts(db.sql)).find((r) => r.slug === 'pro-tenant')!;
    expect(proAfter.avi).toBeLessThanOrEqual(14);
    // Back to a longer retention: the weeks whose sources went stay final.
    const history = await historySnapshot(db.sql);
    await db.sql`update kpi.tenants set plan = 'enterprise' where id in (${PRO}, ${FREE})`;
    const [{ horizon }] = await db.sql<[{ horizon: Date }]>`select sources_purged_before as horizon from kpi.tenants where id = ${PRO}`;
    expect(horizon.getTime()).toBeGreaterThan(Date.now() - 91 * 86_400_000);
    await db.sql`select kpi.backfill_kpi_history()`;
    expect(await historySnapshot(db.sql)).toEqual(history);
  });

  it('keeps the latest AVI report of a tenant that stopped reporting long ago: the daily fill still has its week, no NO_AVI', async () => {
    // The free tenant's last report was 200 days ago (the guard is moot for tenants that report).
    await db.sql`delete from kpi.avi_reports where tenant_id = ${FREE} and week_start > current_date - 200`;
    const [{ latest }] = await db.sql<[{ latest: Date }]>`select max(week_start) as latest from kpi.avi_reports where tenant_id = ${FREE}`;
    await db.sql`call kpi.run_source_cleanup()`;
    expect(await db.sql`select week_start from kpi.avi_reports where tenant_id = ${FREE}`).toEqual([{ week_start: latest }]);
    const [{ run }] = await db.sql<[{ run: { errors: { tenant_id: string }[] } }]>`select kpi.fill_all_kpi_history(full => true) as run`;
    expect(run.errors.filter((e) => e.tenant_id === FREE)).toEqual([]);
    const [{ result }] = await db.sql<[{ result: { ok: boolean; as_of: string } }]>`select kpi.fill_kpi_history(${FREE}) as result`;
    expect(new Date(result.as_of).getTime()).toBe(latest.getTime());
  });

  it("a per-tenant override wins over the plan; a plan's retention is editable data", async () => {
    await db.sql`update kpi.tenants set source_retention_days = 30 where id = ${PRO}`;
    await db.sql`update kpi.plans set source_retention_days = 200 where plan = 'free'`;
    await db.sql`call kpi.run_source_cleanup()`;
    const [pro] = await oldestKept(db.sql, PRO);
    const [free] = await oldestKept(db.sql, FREE);
    expect(pro!.avi.getTime()).toBeGreaterThan(Date.now() - 45 * 86_400_000);
    expect(free!.avi.getTime()).toBeGreaterThan(Date.now() - 215 * 86_400_000);
    expect(free!.avi.getTime()).toBeLessThan(Date.now() - 150 * 86_400_000);
  });

  it('refuses to run inside a transaction block, before it writes anything', async () => {
    const runs = await db.sql`select count(*)::int as n from kpi.kpi_runs where kind = 'cleanup'`;
    const error = await db.sql
      .begin((tx) => tx`call kpi.run_source_cleanup()`)
      .then(
        () => null,
        (e: { code?: string }) => e.code,
      );
    expect(error).toBe('2D000');
    expect(await db.sql`select count(*)::int as n from kpi.kpi_runs where kind = 'cleanup'`).toEqual(runs);
    expect(await counts(db.sql)).toHaveLength(4);
  });

  it('beside a concurrent fill: the fill never waits on it, both finish, and the history is unchanged', async () => {
    const history = await historySnapshot(db.sql);
    const cleanup = connect(db.url, { max: 1 });
    const fill = connect(db.url, { max: 1 });
    const [{ pid: cleanupPid }] = await cleanup<[{ pid: number }]>`select pg_backend_pid() as pid`;
    const [{ pid: fillPid }] = await fill<[{ pid: number }]>`select pg_backend_pid() as pid`;
    try {
      const waits: number[][] = [];
      let done = false;
      const running = cleanup`call kpi.run_source_cleanup(3)`.execute().finally(() => (done = true));
      let fills = 0;
      while (!done) {
        const watcher = (async () => {
          const [row] = await db.sql<{ blockers: number[] }[]>`select pg_blocking_pids(${fillPid}) as blockers`;
          if (row && row.blockers.length) waits.push(row.blockers);
        })();
        await fill`select kpi.backfill_kpi_history(${PRO})`;
        await watcher;
        fills++;
      }
      await running;
      expect(fills).toBeGreaterThan(0);
      expect(waits.filter((blockers) => blockers.includes(cleanupPid))).toEqual([]);
      expect((await lastCleanup(db.sql)).status).toBe('ok');
      expect(await historySnapshot(db.sql)).toEqual(history);
    } finally {
      await cleanup.end();
      await fill.end();
    }
  });
});
