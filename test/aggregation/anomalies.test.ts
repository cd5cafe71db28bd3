// Anomaly detection (kpi.kpi_anomalies): scores computed by hand for a spike, a drop, a baseline
// without spread, too short a baseline and missing HRPs; the rules and their overrides; backfills
// that create, change and remove anomalies; and, after random writes, equality with a detection
// from scratch. Detection runs in the writing transaction, whatever writes the history.
import type { TransactionSql } from 'postgres';
import { describe, expect, it } from 'vitest';
import { connect, useTestDatabase } from '../helpers/database.js';
import { insertAvi, tenantFactory } from '../fixtures/sources.js';

const db = useTestDatabase();
/** A tenant of its own for each test. */
const newTenant = tenantFactory(() => db.sql, 'anomalies');

/** Mondays from 2024-01-01: week n is 2024-01-01 + 7n days. */
const week = (n: number) => new Date(Date.UTC(2024, 0, 1 + 7 * n)).toISOString().slice(0, 10);

interface Week {
  aiv?: number;
  hrp?: number | null;
  vli?: number | null; // null: the fallback
  elasticity?: number;
}

/** History rows written directly (the detection scores whatever writes kpi_history). */
async function insertWeeks(tenantId: string, weeks: Week[], first = 0): Promise<void> {
  const rows = weeks.map((w, i) => ({
    tenant_id: tenantId,
    as_of: week(first + i),
    aiv_pct: w.aiv ?? 50,
    ati_pct: 40,
    crs_pct: 30,
    elasticity_usd_per_point: w.elasticity ?? 1000,
    vli_integrity_pct: w.vli ?? 100,
    vli_is_fallback: w.vli === null || w.vli === undefined,
    hrp_pct: w.hrp === undefined ? 10 : w.hrp,
  }));
  await db.sql`insert into kpi.kpi_history ${db.sql(rows)}`;
}

async function anomaliesOf(tenantId: string) {
  return db.sql<{ as_of: string; kpi: string; value: number; baseline_median: number; baseline_mad: number; baseline_weeks: number; score: number; direction: string; threshold: number }[]>`
    select as_of::text, kpi, value::float, baseline_median::float, baseline_mad::float, baseline_weeks, score, direction, threshold::float
    from kpi.kpi_anomalies where tenant_id = ${tenantId} order by as_of, kpi`;
}

// Twelve weeks around 51: median 51; deviations four 0s and eight 1s, so MAD 1.
const AROUND_51 = [50, 51, 52, 50, 51, 52, 50, 51, 52, 50, 51, 52].map((aiv) => ({ aiv }));

describe('scores, by hand', () => {
  it('a clear spike: AIV 60 after twelve weeks around 51 → 0.6745 × 9 / 1 = 6.0705, up', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 60 }]);
    const [anomaly, ...others] = await anomaliesOf(t);
    expect(others).toEqual([]);
    expect(anomaly).toMatchObject({ as_of: week(12), kpi: 'aiv_pct', value: 60, baseline_median: 51, baseline_mad: 1, baseline_weeks: 12, direction: 'up', threshold: 3.5 });
    expect(anomaly!.score).toBeCloseTo(6.0705, 10);
  });

  it('a clear drop: AIV 40 → 0.6745 × −11 / 1 = −7.4195, down', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 40 }]);
    expect(await anomaliesOf(t)).toMatchObject([{ kpi: 'aiv_pct', value: 40, direction: 'down' }]);
    expect((await anomaliesOf(t))[0]!.score).toBeCloseTo(-7.4195, 10);
  });

  it('a normal week is no anomaly: AIV 53 scores 0.6745 × 2 = 1.349', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 53 }]);
    expect(await anomaliesOf(t)).toEqual([]);
  });

  it('MAD 0: the mean absolute deviation takes over — HRP 15 after nine 10s, 12, 14, 16 → 5 / (1.253314 × 1) = 3.98942', async () => {
    const t = await newTenant();
    const hrps = [10, 10, 10, 12, 10, 10, 14, 10, 10, 16, 10, 10];
    await insertWeeks(t, [...hrps.map((hrp) => ({ hrp })), { hrp: 15 }]);
    const [earlier, anomaly] = await anomaliesOf(t);
    expect(anomaly).toMatchObject({ as_of: week(12), kpi: 'hrp_pct', value: 15, baseline_median: 10, baseline_mad: 0, direction: 'up' });
    expect(anomaly!.score).toBeCloseTo(5 / 1.253314, 10);
    // The 16 of week 9 is one too: after nine weeks (six 10s, 12, 14 … ) mean deviation 6/9 → 6 / (1.253314 × 2/3) = 7.1811.
    expect(earlier).toMatchObject({ as_of: week(9), value: 16, baseline_median: 10, baseline_mad: 0, baseline_weeks: 9 });
    expect(earlier!.score).toBeCloseTo(6 / (1.253314 * (6 / 9)), 10);
  });

  it('no spread at all: any difference scores ±Infinity, and min_delta decides (13 is, 11 is not, after twelve 10s)', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...Array.from({ length: 12 }, () => ({ hrp: 10 })), { hrp: 13 }]);
    expect(await anomaliesOf(t)).toMatchObject([{ kpi: 'hrp_pct', value: 13, score: Infinity, direction: 'up' }]);
    const quiet = await newTenant();
    await insertWeeks(quiet, [...Array.from({ length: 12 }, () => ({ hrp: 10 })), { hrp: 11 }]);
    expect(await anomaliesOf(quiet)).toEqual([]);
  });

  it('elasticity: the minimum difference is 5 % of the median', async () => {
    const t = await newTenant();
    // Median 1000, MAD 0, mean absolute deviation 1 → any change scores high; 1040 differs by 4 % (no), 1060 by 6 % (yes).
    const base = [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1006, 1000, 1006].map((elasticity) => ({ elasticity }));
    await insertWeeks(t, [...base, { elasticity: 1040 }]);
    expect(await anomaliesOf(t)).toEqual([]);
    const u = await newTenant();
    await insertWeeks(u, [...base, { elasticity: 1060 }]);
    expect(await anomaliesOf(u)).toMatchObject([{ kpi: 'elasticity_usd_per_point', value: 1060, baseline_median: 1000, direction: 'up' }]);
  });

  it('the minimum differences hold to the cent: 12.00 after twelve 10s is an anomaly, 11.99 is not; elasticity 1050.00 over a median of 1000 is, 1049.99 is not', async () => {
    const flat = (key: 'hrp' | 'elasticity', v: number) => Array.from({ length: 12 }, () => ({ [key]: v }));
    const cases = [
      { weeks: [...flat('hrp', 10), { hrp: 12 }], kpi: 'hrp_pct', value: 12 },
      { weeks: [...flat('hrp', 10), { hrp: 11.99 }], kpi: null },
      { weeks: [...flat('elasticity', 1000), { elasticity: 1050 }], kpi: 'elasticity_usd_per_point', value: 1050 },
      { weeks: [...flat('elasticity', 1000), { elasticity: 1049.99 }], kpi: null },
    ];
    for (const c of cases) {
      const t = await newTenant();
      await insertWeeks(t, c.weeks);
      const found = await anomaliesOf(t);
      if (c.kpi === null) expect(found).toEqual([]);
      else expect(found).toMatchObject([{ as_of: week(12), kpi: c.kpi, value: c.value, score: Infinity, direction: 'up' }]);
    }
  });

  it('fewer than 8 baseline values: no score (7 weeks of history, or 12 weeks with 5 HRPs missing)', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51.slice(0, 7), { aiv: 90 }]);
    expect(await anomaliesOf(t)).toEqual([]);
    const u = await newTenant();
    const hrps = [10, null, 10, null, 10, null, 10, null, 10, null, 10, 10].map((hrp) => ({ hrp }));
    await insertWeeks(u, [...hrps, { hrp: 60 }]);
    expect(await anomaliesOf(u)).toEqual([]);
    // One more HRP in the baseline (8 values): scored.
    const v = await newTenant();
    await insertWeeks(v, [...hrps.map((w, i) => (i === 1 ? { hrp: 10 } : w)), { hrp: 60 }]);
    expect(await anomaliesOf(v)).toMatchObject([{ kpi: 'hrp_pct', baseline_weeks: 8, score: Infinity }]);
  });

  it('a week without an HRP is not scored for it; the baseline is calendar weeks (a gap leaves too few)', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...Array.from({ length: 12 }, () => ({ hrp: 10 })), { hrp: null }]);
    expect(await anomaliesOf(t)).toEqual([]);
    const gap = await newTenant();
    await insertWeeks(gap, AROUND_51.slice(0, 6));
    await insertWeeks(gap, [...AROUND_51.slice(0, 6), { aiv: 90 }], 12); // weeks 0–5, then 12–18
    expect(await anomaliesOf(gap)).toEqual([]); // week 18's previous 12 weeks (6–17) hold 6 values: weeks 12–17
  });

  it('fallback VLIs are neither scored nor part of a baseline', async () => {
    const t = await newTenant();
    // Twelve audited weeks at 90, then a week with the fallback 100: not scored.
    await insertWeeks(t, [...Array.from({ length: 12 }, () => ({ vli: 90 })), { vli: null }]);
    expect(await anomaliesOf(t)).toEqual([]);
    // Twelve fallback weeks, then an audit at 60: no baseline, no score.
    const u = await newTenant();
    await insertWeeks(u, [...Array.from({ length: 12 }, () => ({ vli: null })), { vli: 60 }]);
    expect(await anomaliesOf(u)).toEqual([]);
    // Audited weeks: 60 after twelve 90s is one.
    const v = await newTenant();
    await insertWeeks(v, [...Array.from({ length: 12 }, () => ({ vli: 90 })), { vli: 60 }]);
    expect(await anomaliesOf(v)).toMatchObject([{ kpi: 'vli_integrity_pct', value: 60, direction: 'down' }]);
  });
});

describe('rules', () => {
  it('a per-tenant threshold and a disabled KPI take effect at once, on the history already scored', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 60, hrp: 40 }]);
    expect((await anomaliesOf(t)).map((a) => a.kpi)).toEqual(['aiv_pct', 'hrp_pct']);

    await db.sql`insert into kpi.tenant_anomaly_rules (tenant_id, kpi, threshold) values (${t}, 'aiv_pct', 7)`;
    expect((await anomaliesOf(t)).map((a) => a.kpi)).toEqual(['hrp_pct']); // 6.07 ≤ 7
    await db.sql`update kpi.tenant_anomaly_rules set threshold = 6 where tenant_id = ${t}`;
    expect(await anomaliesOf(t)).toMatchObject([{ kpi: 'aiv_pct', threshold: 6 }, { kpi: 'hrp_pct', threshold: 3.5 }]);

    await db.sql`insert into kpi.tenant_anomaly_rules (tenant_id, kpi, enabled) values (${t}, 'hrp_pct', false)`;
    expect((await anomaliesOf(t)).map((a) => a.kpi)).toEqual(['aiv_pct']);
    await db.sql`delete from kpi.tenant_anomaly_rules where tenant_id = ${t}`;
    expect(await anomaliesOf(t)).toMatchObject([{ kpi: 'aiv_pct', threshold: 3.5 }, { kpi: 'hrp_pct' }]);
  });

  it('another tenant’s rules change nothing here', async () => {
    const [mine, theirs] = [await newTenant(), await newTenant()];
    await insertWeeks(mine, [...AROUND_51, { aiv: 60 }]);
    await db.sql`insert into kpi.tenant_anomaly_rules (tenant_id, kpi, enabled) values (${theirs}, 'aiv_pct', false)`;
    expect(await anomaliesOf(mine)).toHaveLength(1);
  });

  it('a per-tenant minimum difference below the default: 11 after twelve 10s is an anomaly for it alone', async () => {
    // The default (2 points) rules 11 out before anything is sorted; the tenant's own 0.5 must not be.
    const [t, other] = [await newTenant(), await newTenant()];
    await db.sql`insert into kpi.tenant_anomaly_rules (tenant_id, kpi, min_delta) values (${t}, 'hrp_pct', 0.5)`;
    for (const tenant of [t, other]) await insertWeeks(tenant, [...Array.from({ length: 12 }, () => ({ hrp: 10 })), { hrp: 11 }]);
    expect(await anomaliesOf(t)).toMatchObject([{ kpi: 'hrp_pct', value: 11, baseline_median: 10, score: Infinity, direction: 'up' }]);
    expect(await anomaliesOf(other)).toEqual([]);
  });

  it('a per-tenant minimum difference: 10 points turns the spike of 9 into no anomaly', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 60 }]);
    await db.sql`insert into kpi.tenant_anomaly_rules (tenant_id, kpi, min_delta) values (${t}, 'aiv_pct', 10)`;
    expect(await anomaliesOf(t)).toEqual([]);
  });
});

describe('changing a rule', () => {
  it('an anomaly that only meets another threshold is updated quietly: no new alert, the same detected_at', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 60 }]);
    const [before] = await db.sql`select detected_at::text, threshold::float from kpi.kpi_anomalies where tenant_id = ${t}`;
    await db.sql`insert into kpi.tenant_anomaly_rules (tenant_id, kpi, threshold) values (${t}, 'aiv_pct', 5)`;
    const [after] = await db.sql`select detected_at::text, threshold::float from kpi.kpi_anomalies where tenant_id = ${t}`;
    expect(after).toEqual({ detected_at: before!.detected_at, threshold: 5 });
    expect(await db.sql`select count(*)::int as n from kpi.alerts where tenant_id = ${t}`).toEqual([{ n: 1 }]);
  });

  it('an UPDATE of the rules that changes nothing re-scores nothing; one that changes something does', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 60 }]);
    const rescores = async (tx: TransactionSql) =>
      (await tx<[{ n: number }]>`select coalesce(pg_stat_get_xact_function_calls('kpi.rescore_anomalies(uuid[], date[], text)'::regprocedure), 0)::int as n`)[0].n;
    const rollBack = new Error('rolled back on purpose');
    await db.sql
      .begin(async (tx) => {
        await tx`set local track_functions = 'all'`;
        await tx`update kpi.anomaly_rules set threshold = threshold`;
        await tx`update kpi.tenant_anomaly_rules set threshold = threshold`;
        expect(await rescores(tx)).toBe(0);
        await tx`update kpi.anomaly_rules set threshold = threshold + 1 where kpi = 'crs_pct'`;
        expect(await rescores(tx)).toBeGreaterThan(0);
        throw rollBack;
      })
      .catch((error: unknown) => {
        if (error !== rollBack) throw error;
      });
    expect(await db.sql`select threshold::float from kpi.anomaly_rules where kpi = 'crs_pct'`).toEqual([{ threshold: 3.5 }]);
  });

  it('a default’s change deferred to kpi.run_rescore_anomalies(): batches with progress in the run log, then the anomalies the new rule gives', async () => {
    const tenants = [await newTenant(), await newTenant(), await newTenant()];
    for (const t of tenants) await insertWeeks(t, [...AROUND_51, { aiv: 60 }]);
    const aivAnomalies = async () =>
      (await db.sql<[{ n: number }]>`select count(*)::int as n from kpi.kpi_anomalies where tenant_id = any(${tenants}::uuid[]) and kpi = 'aiv_pct'`)[0].n;
    const notices: string[] = [];
    const session = connect(db.url, { max: 1, onnotice: (notice) => notices.push(notice.message ?? '') });
    try {
      await session.begin(async (tx) => {
        await tx`set local kpi.rescore = 'deferred'`;
        await tx`update kpi.anomaly_rules set threshold = 7 where kpi = 'aiv_pct'`;
      });
      expect(notices.join('\n')).toContain('call kpi.run_rescore_anomalies()');
      expect(await aivAnomalies()).toBe(3); // the old rule still, until the rescoring
      await session`call kpi.run_rescore_anomalies(batch_size => 2)`;
      expect(await aivAnomalies()).toBe(0); // 6.07 ≤ 7
      const [run] = await db.sql`select id, status, ok_count, total_count, details from kpi.kpi_runs where kind = 'rescore' order by id desc limit 1`;
      expect(run).toMatchObject({ status: 'ok', ok_count: run!.total_count, details: { batch_size: 2 } });
      expect(run!.details.batches).toBe(Math.ceil(run!.total_count / 2));
      expect(notices).toContainEqual(expect.stringMatching(new RegExp(`^rescore run ${run!.id}: batch 1 done, 2 of \\d+ tenants`)));
      expect(notices).toContain(`rescore run ${run!.id}: ok, ${run!.total_count} of ${run!.total_count} tenants, 0 rows written`);
    } finally {
      await session.end();
      await db.sql`update kpi.anomaly_rules set threshold = 3.5 where kpi = 'aiv_pct'`;
    }
    expect(await aivAnomalies()).toBe(3);
  });
});

describe('fills and backfills keep the anomalies right', () => {
  async function tenantWithReports(aivs: number[]): Promise<string> {
    const t = await newTenant();
    for (const [i, aiv] of aivs.entries()) await insertAvi(db.sql, t, { weekStart: week(i), aivPct: aiv });
    return t;
  }

  it('a backfill that creates an anomaly, one that changes it through its baseline, one that removes it; each run says how many', async () => {
    const t = await tenantWithReports([...Array.from({ length: 12 }, () => 50), 50]);
    expect((await db.sql`select kpi.backfill_kpi_history(${t}::text) as r`)[0]!.r).toMatchObject({ anomalies: 0 });
    expect(await anomaliesOf(t)).toEqual([]);

    await db.sql`update kpi.avi_reports set aiv_pct = 53 where tenant_id = ${t} and week_start = ${week(12)}`;
    expect((await db.sql`select kpi.backfill_kpi_history(${t}::text, ${week(12)}::date, ${week(12)}::date) as r`)[0]!.r).toMatchObject({ anomalies: 1 });
    expect(await anomaliesOf(t)).toMatchObject([{ as_of: week(12), value: 53, baseline_mad: 0, score: Infinity }]);

    // A week nine weeks earlier changes: it is in week 12's baseline, so week 12 is re-scored.
    // Eleven 50s and one 49: MAD 0, mean absolute deviation 1/12 → 3 / (1.253314 / 12) = 28.7238.
    await db.sql`update kpi.avi_reports set aiv_pct = 49 where tenant_id = ${t} and week_start = ${week(3)}`;
    expect((await db.sql`select kpi.backfill_kpi_history(${t}::text, ${week(3)}::date, ${week(3)}::date) as r`)[0]!.r).toMatchObject({ anomalies: 1 });
    const [changed] = await anomaliesOf(t);
    expect(changed!.score).toBeCloseTo(3 / (1.253314 / 12), 8);

    await db.sql`update kpi.avi_reports set aiv_pct = 50 where tenant_id = ${t} and week_start = ${week(12)}`;
    await db.sql`select kpi.backfill_kpi_history(${t}::text, ${week(12)}::date, ${week(12)}::date)`;
    expect(await anomaliesOf(t)).toEqual([]);
  });

  it('the daily fill scores the week it writes; running it again changes nothing (same rows, same detected_at)', async () => {
    const t = await tenantWithReports([...AROUND_51.map((w) => w.aiv), 30]);
    await db.sql`select kpi.backfill_kpi_history(${t}::text, ${week(0)}::date, ${week(11)}::date)`;
    expect(await anomaliesOf(t)).toEqual([]);
    expect((await db.sql`select kpi.fill_kpi_history(${t}::text) as r`)[0]!.r).toMatchObject({ as_of: week(12), anomalies: 1 });
    const before = await db.sql`select *, detected_at::text from kpi.kpi_anomalies where tenant_id = ${t}`;
    expect(before).toHaveLength(1);
    expect((await db.sql`select kpi.fill_kpi_history(${t}::text) as r`)[0]!.r).toMatchObject({ anomalies: 0 });
    expect((await db.sql`select kpi.fill_all_kpi_history(full => true) as r`)[0]!.r).toMatchObject({ anomalies: 0 });
    expect(await db.sql`select *, detected_at::text from kpi.kpi_anomalies where tenant_id = ${t}`).toEqual(before);
    const [{ run_id: runId }] = await db.sql<[{ run_id: string }]>`select run_id from kpi.kpi_anomalies where tenant_id = ${t}`;
    expect((await db.sql`select kind, tenant_id from kpi.kpi_runs where id = ${runId}`)[0]).toEqual({ kind: 'fill', tenant_id: t });
  });

  it('the incremental daily run reports the anomalies of the weeks it wrote', async () => {
    const t = await tenantWithReports(AROUND_51.map((w) => w.aiv));
    await db.sql`select kpi.fill_all_kpi_history()`;
    await insertAvi(db.sql, t, { weekStart: week(12), aivPct: 75 });
    const [{ r }] = await db.sql<[{ r: unknown }]>`select kpi.fill_all_kpi_history() as r`;
    expect(r).toMatchObject({ mode: 'incremental', anomalies: 1 });
    expect(await anomaliesOf(t)).toMatchObject([{ as_of: week(12), value: 75 }]);
  });
});

describe('the outbox: every new or changed anomaly has an alert, written with it', () => {
  it('a recent week’s anomaly enqueues a pending alert; an old week’s is recorded as suppressed', async () => {
    const recent = await newTenant();
    const [{ monday }] = await db.sql<[{ monday: string }]>`select date_trunc('week', now() at time zone 'UTC')::date::text as monday`;
    const rows = Array.from({ length: 13 }, (_, i) => ({
      tenant_id: recent, as_of: new Date(Date.parse(`${monday}T00:00:00Z`) - (12 - i) * 7 * 86400000).toISOString().slice(0, 10),
      aiv_pct: i === 12 ? 90 : AROUND_51[i]!.aiv, ati_pct: 40, crs_pct: 30, elasticity_usd_per_point: 1000, vli_integrity_pct: 100, vli_is_fallback: true, hrp_pct: 10,
    }));
    await db.sql`insert into kpi.kpi_history ${db.sql(rows)}`;
    const alerts = await db.sql`select as_of::text, kpi, status, payload from kpi.alerts where tenant_id = ${recent}`;
    expect(alerts).toEqual([{ as_of: monday, kpi: 'aiv_pct', status: 'pending', payload: expect.objectContaining({ kpi: 'aiv_pct', value: 90, direction: 'up', baseline_median: 51 }) }]);
    expect(alerts[0]!.payload.tenant).toEqual({ id: recent, slug: expect.stringMatching(/^anomalies-/) });

    const old = await newTenant();
    await insertWeeks(old, [...AROUND_51, { aiv: 90 }]);
    expect(await db.sql`select status from kpi.alerts where tenant_id = ${old}`).toEqual([{ status: 'suppressed' }]);
  });

  it('a changed anomaly enqueues another alert; a removed one takes its alerts with it', async () => {
    const t = await newTenant();
    await insertWeeks(t, [...AROUND_51, { aiv: 90 }]);
    await db.sql`update kpi.kpi_history set aiv_pct = 95 where tenant_id = ${t} and as_of = ${week(12)}`;
    expect((await db.sql`select payload from kpi.alerts where tenant_id = ${t} order by id`).map((a) => a.payload.value)).toEqual([90, 95]);
    await db.sql`update kpi.kpi_history set aiv_pct = 51 where tenant_id = ${t} and as_of = ${week(12)}`;
    expect(await db.sql`select 1 from kpi.alerts where tenant_id = ${t}`).toEqual([]);
  });

  it('nothing without the other: every anomaly has an alert, every alert its anomaly', async () => {
    // Anomalies created, changed and removed by every kind of write, in tenants of this test's own.
    const tenants: string[] = [];
    for (let n = 0; n < 4; n++) {
      const t = await newTenant();
      tenants.push(t);
      await insertWeeks(t, [...AROUND_51, { aiv: 80 + n }, ...AROUND_51.slice(0, 3), { aiv: 90, hrp: 60 }]);
    }
    await db.sql`update kpi.kpi_history set aiv_pct = 95 where tenant_id = ${tenants[0]!} and as_of = ${week(12)}`;
    await db.sql`update kpi.kpi_history set aiv_pct = 51 where tenant_id = ${tenants[1]!} and as_of = ${week(12)}`;
    await db.sql`delete from kpi.kpi_history where tenant_id = ${tenants[2]!} and as_of = ${week(16)}`;
    const [orphans] = await db.sql`
      select (select count(*) from kpi.kpi_anomalies a where tenant_id = any(${tenants}::uuid[]) and not exists (
                select from kpi.alerts l where (l.tenant_id, l.as_of, l.kpi) = (a.tenant_id, a.as_of, a.kpi)))::int as anomalies_without_alert,
             (select count(*) from kpi.alerts l where tenant_id = any(${tenants}::uuid[]) and not exists (
                select from kpi.kpi_anomalies a where (l.tenant_id, l.as_of, l.kpi) = (a.tenant_id, a.as_of, a.kpi)))::int as alerts_without_anomaly,
             (select count(*) from kpi.kpi_anomalies where tenant_id = any(${tenants}::uuid[]))::int as anomalies`;
    expect(orphans).toMatchObject({ anomalies_without_alert: 0, alerts_without_anomaly: 0 });
    expect(orphans!.anomalies).toBeGreaterThan(5);
  });
});

describe('after random writes and backfills, the anomalies equal a detection from scratch', () => {
  it('8 tenants × 40 weeks, 30 rounds of random source changes and random-range backfills', async () => {
    // A deterministic generator, so a failure can be replayed.
    let seed = 20261130;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const tenants: string[] = [];
    for (let n = 0; n < 8; n++) {
      const t = await newTenant();
      tenants.push(t);
      for (let w = 0; w < 40; w++) {
        await insertAvi(db.sql, t, { weekStart: week(w), aivPct: Math.round((50 + random() * 4) * 100) / 100, atiPct: 40 + (w % 3), crsPct: 30, elasticityUsdPerPoint: 1000 + (w % 2) * 4 });
      }
    }
    await db.sql`select kpi.backfill_kpi_history()`;
    for (let round = 0; round < 30; round++) {
      const t = tenants[Math.floor(random() * tenants.length)]!;
      const w = Math.floor(random() * 40);
      const aiv = random() < 0.5 ? Math.round(random() * 10000) / 100 : 52;
      await db.sql`update kpi.avi_reports set aiv_pct = ${aiv}, ati_pct = ${random() < 0.2 ? 90 : 41} where tenant_id = ${t} and week_start = ${week(w)}`;
      const from = Math.max(0, w - Math.floor(random() * 3));
      const to = Math.min(39, w + Math.floor(random() * 3));
      await db.sql`select kpi.backfill_kpi_history(${random() < 0.3 ? null : t}::text, ${week(from)}::date, ${week(to)}::date)`;
    }
    const snapshot = (sql: typeof db.sql) => sql`
      select tenant_id, as_of::text, kpi, value, baseline_median, baseline_mad, baseline_weeks, score, direction, threshold
      from kpi.kpi_anomalies where tenant_id = any(${tenants}::uuid[]) order by 1, 2, 3`;
    const kept = await snapshot(db.sql);
    expect(kept.length).toBeGreaterThan(3);
    const fromScratch = await db.sql
      .begin(async (tx) => {
        await tx`delete from kpi.kpi_anomalies where tenant_id = any(${tenants}::uuid[])`;
        await tx`select kpi.rescore_all_anomalies(t) from unnest(${tenants}::uuid[]) t`;
        const rows = await snapshot(tx as unknown as typeof db.sql);
        throw Object.assign(new Error('rollback'), { rows });
      })
      .catch((e: { rows?: unknown }) => e.rows);
    expect(fromScratch).toEqual(kept);
  });
});
