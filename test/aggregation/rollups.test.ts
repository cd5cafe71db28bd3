// Monthly and quarterly rollups (kpi.kpi_history_rollups): which month a week belongs to, the
// figures of a period computed by hand, and agreement with the weekly rows after fills and backfills.
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { insertAvi, insertGeneratedTenants, tenantFactory } from '../fixtures/sources.js';

const db = useTestDatabase();
/** A tenant of its own for each test. */
const newTenant = tenantFactory(() => db.sql, 'rollups');

interface Week {
  as_of: string;
  aiv: number;
  ati?: number;
  hrp?: number | null;
  vli?: number;
  fallback?: boolean;
}

/** Weekly rows written directly: the rollups read kpi.kpi_history, whatever wrote it. */
async function insertWeeks(tenantId: string, weeks: Week[]): Promise<void> {
  for (const w of weeks) {
    await db.sql`
      insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
      values (${tenantId}, ${w.as_of}, ${w.aiv}, ${w.ati ?? 50}, 70, 1000, ${w.vli ?? 99}, ${w.fallback ?? false}, ${w.hrp === undefined ? 5 : w.hrp})`;
  }
}

type Period = 'month' | 'quarter';

async function rollups(tenantId: string, period: Period) {
  return db.sql<Record<string, unknown>[]>`
    select period_start::text, period_end::text, weeks, first_week::text, last_week::text, complete,
           aiv_pct_avg::float, aiv_pct_min::float, aiv_pct_max::float, aiv_pct_last::float,
           ati_pct_avg::float, hrp_pct_avg::float, hrp_pct_min::float, hrp_pct_max::float, hrp_pct_last::float, hrp_weeks,
           vli_integrity_pct_avg::float, vli_integrity_pct_min::float, vli_integrity_pct_max::float, vli_integrity_pct_last::float,
           vli_fallback_weeks
    from kpi.kpi_history_rollups where tenant_id = ${tenantId} and period = ${period} order by period_start`;
}

describe('a month with 4 weeks and one with 5, the week of June 29 straddling both a month and a quarter', () => {
  // Thursdays: Jun 4, 11, 18, 25 → June; Jul 2 (the week of Jun 29, 5 of its days in July), 9, 16, 23, 30 → July.
  const weeks: Week[] = [
    { as_of: '2026-06-01', aiv: 10, ati: 1, hrp: null, vli: 100, fallback: true },
    { as_of: '2026-06-08', aiv: 20, ati: 2, hrp: 10, vli: 100, fallback: true },
    { as_of: '2026-06-15', aiv: 30, ati: 2, hrp: 10, vli: 80 },
    { as_of: '2026-06-22', aiv: 41, ati: 2, hrp: 11, vli: 90 },
    { as_of: '2026-06-29', aiv: 50, hrp: 20 },
    { as_of: '2026-07-06', aiv: 60, hrp: 21 },
    { as_of: '2026-07-13', aiv: 70, hrp: 21 },
    { as_of: '2026-07-20', aiv: 80, hrp: null },
    { as_of: '2026-07-27', aiv: 91.5, hrp: null },
  ];

  it('months: figures computed by hand (NULL HRPs ignored, fallback VLIs counted and flagged)', async () => {
    const t = await newTenant();
    await insertWeeks(t, weeks);
    expect(await rollups(t, 'month')).toEqual([
      {
        period_start: '2026-06-01', period_end: '2026-06-30', weeks: 4, first_week: '2026-06-01', last_week: '2026-06-22', complete: true,
        aiv_pct_avg: 25.25, aiv_pct_min: 10, aiv_pct_max: 41, aiv_pct_last: 41,
        ati_pct_avg: 1.75, // 7 / 4
        hrp_pct_avg: 10.33, hrp_pct_min: 10, hrp_pct_max: 11, hrp_pct_last: 11, hrp_weeks: 3, // 31 / 3, rounded
        vli_integrity_pct_avg: 92.5, vli_integrity_pct_min: 80, vli_integrity_pct_max: 100, vli_integrity_pct_last: 90,
        vli_fallback_weeks: 2,
      },
      {
        period_start: '2026-07-01', period_end: '2026-07-31', weeks: 5, first_week: '2026-06-29', last_week: '2026-07-27', complete: true,
        aiv_pct_avg: 70.3, aiv_pct_min: 50, aiv_pct_max: 91.5, aiv_pct_last: 91.5, // 351.5 / 5
        ati_pct_avg: 50,
        hrp_pct_avg: 20.67, hrp_pct_min: 20, hrp_pct_max: 21, hrp_pct_last: null, hrp_weeks: 3, // 62 / 3; the last week has none
        vli_integrity_pct_avg: 99, vli_integrity_pct_min: 99, vli_integrity_pct_max: 99, vli_integrity_pct_last: 99,
        vli_fallback_weeks: 0,
      },
    ]);
  });

  it('quarters: June closes Q2, the week of June 29 opens Q3', async () => {
    const t = await newTenant();
    await insertWeeks(t, weeks);
    const quarters = await rollups(t, 'quarter');
    expect(quarters.map((q) => [q.period_start, q.period_end, q.weeks, q.first_week, q.last_week, q.aiv_pct_avg])).toEqual([
      ['2026-04-01', '2026-06-30', 4, '2026-06-01', '2026-06-22', 25.25],
      ['2026-07-01', '2026-09-30', 5, '2026-06-29', '2026-07-27', 70.3],
    ]);
  });
});

describe('weeks across month, quarter and year boundaries go to the period of their Thursday', () => {
  it.each([
    ['2026-04-27', 'April: Thursday Apr 30, 4 of 7 days in April', '2026-04-01', '2026-04-01'],
    ['2027-09-27', 'September and Q3: Thursday Sep 30', '2027-09-01', '2027-07-01'],
    ['2026-12-28', 'December 2026 and Q4 2026: Thursday Dec 31', '2026-12-01', '2026-10-01'],
    ['2029-12-31', 'January 2030 and Q1 2030: Thursday Jan 3', '2030-01-01', '2030-01-01'],
  ])('the week of %s: %s', async (asOf, _why, month, quarter) => {
    const t = await newTenant();
    await insertWeeks(t, [{ as_of: asOf, aiv: 12.34 }]);
    const [m] = await rollups(t, 'month');
    const [q] = await rollups(t, 'quarter');
    expect([m!.period_start, m!.first_week, m!.weeks, m!.aiv_pct_last]).toEqual([month, asOf, 1, 12.34]);
    expect([q!.period_start, q!.first_week, q!.weeks]).toEqual([quarter, asOf, 1]);
  });

  it('the current period is not complete; a past one is', async () => {
    const t = await newTenant();
    const [{ monday }] = await db.sql<[{ monday: string }]>`
      select date_trunc('week', now() at time zone 'UTC')::date::text as monday`;
    await insertWeeks(t, [{ as_of: '2025-01-06', aiv: 1 }, { as_of: monday, aiv: 2 }]);
    expect((await rollups(t, 'month')).map((r) => r.complete)).toEqual([true, false]);
    expect((await rollups(t, 'quarter')).map((r) => r.complete)).toEqual([true, false]);
  });
});

// The same aggregation, written independently in TypeScript from the weekly rows.
interface WeeklyRow {
  tenant_id: string;
  as_of: string;
  aiv_pct: string;
  elasticity_usd_per_point: string;
  vli_integrity_pct: string;
  vli_is_fallback: boolean;
  hrp_pct: string | null;
}

function periodStart(asOf: string, period: Period): string {
  const thursday = new Date(`${asOf}T00:00:00Z`);
  thursday.setUTCDate(thursday.getUTCDate() + 3);
  const month = period === 'month' ? thursday.getUTCMonth() : Math.floor(thursday.getUTCMonth() / 3) * 3;
  return `${thursday.getUTCFullYear()}-${String(month + 1).padStart(2, '0')}-01`;
}

/** Mean of numeric(…, 2) values in cents, rounded half away from zero like PostgreSQL's round(numeric, 2). */
function meanOf(values: string[]): number | null {
  if (values.length === 0) return null;
  const cents = values.reduce((sum, v) => sum + Math.round(Number(v) * 100), 0);
  const rounded = Math.sign(cents) * Math.floor((2 * Math.abs(cents) + values.length) / (2 * values.length));
  return rounded / 100;
}

function expectedRollups(rows: WeeklyRow[], period: Period) {
  const groups = new Map<string, WeeklyRow[]>();
  for (const row of rows) {
    const key = `${row.tenant_id} ${periodStart(row.as_of, period)}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  return [...groups.entries()]
    .map(([key, weeks]) => {
      const sorted = [...weeks].sort((a, b) => a.as_of.localeCompare(b.as_of));
      const last = sorted.at(-1)!;
      const hrps = sorted.map((w) => w.hrp_pct).filter((v): v is string => v !== null);
      return {
        key,
        weeks: sorted.length,
        first_week: sorted[0]!.as_of,
        last_week: last.as_of,
        aiv_pct_avg: meanOf(sorted.map((w) => w.aiv_pct)),
        aiv_pct_min: Math.min(...sorted.map((w) => Number(w.aiv_pct))),
        elasticity_usd_per_point_avg: meanOf(sorted.map((w) => w.elasticity_usd_per_point)),
        elasticity_usd_per_point_max: Math.max(...sorted.map((w) => Number(w.elasticity_usd_per_point))),
        vli_integrity_pct_last: Number(last.vli_integrity_pct),
        hrp_pct_avg: meanOf(hrps),
        hrp_pct_last: last.hrp_pct === null ? null : Number(last.hrp_pct),
        hrp_weeks: hrps.length,
        vli_fallback_weeks: sorted.filter((w) => w.vli_is_fallback).length,
      };
    })
    .sort((a, b) => a.key.localeCompare(b.key));
}

async function actualRollups(period: Period) {
  const rows = await db.sql<Record<string, unknown>[]>`
    select tenant_id::text || ' ' || period_start::text as key, weeks, first_week::text, last_week::text,
           aiv_pct_avg::float, aiv_pct_min::float, elasticity_usd_per_point_avg::float, elasticity_usd_per_point_max::float,
           vli_integrity_pct_last::float, hrp_pct_avg::float, hrp_pct_last::float, hrp_weeks, vli_fallback_weeks
    from kpi.kpi_history_rollups
    where period = ${period} and tenant_id in (select id from kpi.tenants where slug like 'gen-%')`;
  return [...rows].sort((a, b) => String(a.key).localeCompare(String(b.key)));
}

async function weeklyRows(): Promise<WeeklyRow[]> {
  return db.sql<WeeklyRow[]>`
    select tenant_id::text, as_of::text, aiv_pct::text, elasticity_usd_per_point::text, vli_integrity_pct::text, vli_is_fallback, hrp_pct::text
    from kpi.kpi_history where tenant_id in (select id from kpi.tenants where slug like 'gen-%')`;
}

describe('rollups always agree with the weekly rows', () => {
  it('after a backfill, after a source change in an old week and the daily run, and after a full run', async () => {
    await insertGeneratedTenants(db.sql, 4, 30, '2024-03-25');
    // Odd elasticities and missing HRPs, so that rounding and NULLs are exercised.
    await db.sql`
      update kpi.avi_reports set elasticity_usd_per_point = elasticity_usd_per_point + 0.37 * (extract(day from week_start)::int % 3)
      where tenant_id in (select id from kpi.tenants where slug like 'gen-%')`;
    await db.sql`
      delete from kpi.clarity_reports
      where tenant_id in (select id from kpi.tenants where slug like 'gen-%') and extract(day from measured_at)::int % 4 = 0`;
    await db.sql`select kpi.backfill_kpi_history()`;

    const check = async () => {
      const weekly = await weeklyRows();
      expect(weekly.length).toBeGreaterThan(100);
      for (const period of ['month', 'quarter'] as const) {
        expect(await actualRollups(period), period).toEqual(expectedRollups(weekly, period));
      }
    };
    await check();

    // An old week changes at its source: the incremental daily run re-derives it, the rollup follows.
    const [{ id }] = await db.sql<[{ id: string }]>`select id from kpi.tenants where slug = 'gen-0002'`;
    const [before] = await db.sql`select aiv_pct_avg from kpi.kpi_history_rollups where tenant_id = ${id} and period = 'month' and period_start = '2023-10-01'`;
    await db.sql`update kpi.avi_reports set aiv_pct = 99.99 where tenant_id = ${id} and week_start = '2023-10-09'`;
    await db.sql`select kpi.fill_all_kpi_history()`;
    const [after] = await db.sql`select aiv_pct_avg from kpi.kpi_history_rollups where tenant_id = ${id} and period = 'month' and period_start = '2023-10-01'`;
    expect(after!.aiv_pct_avg).not.toBe(before!.aiv_pct_avg);
    await check();

    await db.sql`select kpi.fill_all_kpi_history(full => true)`;
    await check();
  });

  it('a backfill that changes an old week changes its month and quarter, and nothing else', async () => {
    const t = await newTenant();
    for (const [i, week] of ['2025-03-03', '2025-03-10', '2025-03-17', '2025-03-24', '2025-03-31', '2025-04-07'].entries()) {
      await insertAvi(db.sql, t, { weekStart: week, aivPct: 10 * (i + 1) });
    }
    await db.sql`select kpi.backfill_kpi_history(${t}::text)`;
    const months = async () => (await rollups(t, 'month')).map((r) => [r.period_start, r.weeks, r.aiv_pct_avg]);
    // Week of Mar 31: Thursday Apr 3 → April.
    expect(await months()).toEqual([['2025-03-01', 4, 25], ['2025-04-01', 2, 55]]);

    await db.sql`update kpi.avi_reports set aiv_pct = 90 where tenant_id = ${t} and week_start = '2025-03-10'`;
    const quartersBefore = await rollups(t, 'quarter');
    await db.sql`select kpi.backfill_kpi_history(${t}::text, '2025-03-10'::date, '2025-03-10'::date)`;
    expect(await months()).toEqual([['2025-03-01', 4, 42.5], ['2025-04-01', 2, 55]]); // (10 + 90 + 30 + 40) / 4
    const quartersAfter = await rollups(t, 'quarter');
    expect(quartersAfter[0]).toMatchObject({ period_start: '2025-01-01', aiv_pct_avg: 42.5, aiv_pct_max: 90 });
    expect(quartersAfter[1]).toEqual(quartersBefore[1]);
  });
});
