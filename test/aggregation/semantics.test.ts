// Which report feeds which column: latest AVI week, VLI and HRP as of the end of that week, the VLI
// fallback, HRP conversion and every invalid HRP, the error codes, and backfill ranges.
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { insertAvi, insertClarity, insertVli, tenantFactory } from '../fixtures/sources.js';
import { UNKNOWN } from '../fixtures/tenants.js';

const db = useTestDatabase();
/** A tenant of its own for each test. */
const newTenant = tenantFactory(() => db.sql, 'semantics');

async function fill(tenantId: string) {
  const [{ result }] = await db.sql<[{ result: Record<string, unknown> }]>`select kpi.fill_kpi_history(${tenantId}) as result`;
  return result;
}

async function historyOf(tenantId: string) {
  return db.sql`
    select as_of::text, aiv_pct::float, ati_pct::float, crs_pct::float, elasticity_usd_per_point::float,
           vli_integrity_pct::float, vli_is_fallback, hrp_pct::float
    from kpi.kpi_history where tenant_id = ${tenantId} order by as_of`;
}

describe('kpi.fill_kpi_history', () => {
  it("writes the latest AVI week with that report's values, and returns the original shape", async () => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-01', aivPct: 10 });
    await insertAvi(db.sql, t, { weekStart: '2024-01-15', aivPct: 30, atiPct: 31, crsPct: 32, elasticityUsdPerPoint: -12.5 });
    await insertAvi(db.sql, t, { weekStart: '2024-01-08', aivPct: 20 });
    const result = await fill(t);
    expect(result).toMatchObject({ ok: true, as_of: '2024-01-15', rows_written: 1, warnings: [] });
    expect(await historyOf(t)).toEqual([
      { as_of: '2024-01-15', aiv_pct: 30, ati_pct: 31, crs_pct: 32, elasticity_usd_per_point: -12.5, vli_integrity_pct: 100, vli_is_fallback: true, hrp_pct: null },
    ]);
  });

  it('takes the latest VLI audit before the end of the week, ignoring later ones', async () => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08' });
    await insertVli(db.sql, t, '2024-01-02T09:00:00Z', 70); // the week before: older
    await insertVli(db.sql, t, '2024-01-14T23:59:59Z', 81); // last second of the week: latest
    await insertVli(db.sql, t, '2024-01-15T00:00:00Z', 99); // next week: look-ahead, ignored
    await fill(t);
    expect(await historyOf(t)).toMatchObject([{ vli_integrity_pct: 81, vli_is_fallback: false }]);
  });

  it('falls back to 100 and flags it when no audit precedes the end of the week', async () => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08' });
    await insertVli(db.sql, t, '2024-01-16T00:00:00Z', 55); // only after the week
    await fill(t);
    expect(await historyOf(t)).toMatchObject([{ vli_integrity_pct: 100, vli_is_fallback: true }]);
  });

  it('an audit of exactly 100 is not the fallback', async () => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08' });
    await insertVli(db.sql, t, '2024-01-09T00:00:00Z', 100);
    await fill(t);
    expect(await historyOf(t)).toMatchObject([{ vli_integrity_pct: 100, vli_is_fallback: false }]);
  });

  it('reads the week in UTC whatever the session time zone', async () => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08' });
    await insertVli(db.sql, t, '2024-01-14T20:00:00Z', 64); // Monday already in Kiritimati (UTC+14)
    await db.sql.begin(async (tx) => {
      await tx`set local timezone = 'Pacific/Kiritimati'`;
      await tx`select kpi.fill_kpi_history(${t})`;
    });
    expect(await historyOf(t)).toMatchObject([{ vli_integrity_pct: 64, vli_is_fallback: false }]);
  });

  it('takes HRP × 100 from the latest clarity report before the end of the week', async () => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08' });
    await insertClarity(db.sql, t, '2024-01-09T00:00:00Z', { hrp: 0.5 });
    await insertClarity(db.sql, t, '2024-01-12T00:00:00Z', { hrp: 0.12345, other: 'kept' });
    await insertClarity(db.sql, t, '2024-01-15T00:00:00Z', { hrp: 0.9 }); // next week
    await fill(t);
    expect(await historyOf(t)).toMatchObject([{ hrp_pct: 12.35 }]);
  });

  it.each([
    ['0', 0, 0],
    ['1', 1, 100],
    ['a small probability', 0.0001, 0.01],
  ])('converts an HRP of %s', async (_what, hrp, pct) => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08' });
    await insertClarity(db.sql, t, '2024-01-09T00:00:00Z', { hrp });
    const result = await fill(t);
    expect(result.warnings).toEqual([]);
    expect(await historyOf(t)).toMatchObject([{ hrp_pct: pct }]);
  });

  it.each([
    ['no clarity report at all', null],
    ['a report without hrp', { other: 1 }],
    ['hrp null', { hrp: null }],
  ])('leaves HRP NULL without a warning for %s', async (_what, metrics) => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08' });
    if (metrics) await insertClarity(db.sql, t, '2024-01-09T00:00:00Z', metrics);
    const result = await fill(t);
    expect(result.warnings).toEqual([]);
    expect(await historyOf(t)).toMatchObject([{ hrp_pct: null }]);
  });

  it.each([
    ['a string', 'high'],
    ['a numeric string', '0.4'],
    ['a boolean', true],
    ['an array', [0.4]],
    ['an object', { value: 0.4 }],
    ['negative', -0.01],
    ['above 1', 1.5],
    ['a percentage by mistake', 40],
  ])('leaves HRP NULL, writes the row and warns INVALID_CLARITY for %s', async (_what, hrp) => {
    const t = await newTenant();
    await insertAvi(db.sql, t, { weekStart: '2024-01-08', aivPct: 44 });
    await insertClarity(db.sql, t, '2024-01-10T08:30:00Z', { hrp });
    const result = await fill(t);
    expect(result.warnings).toEqual([
      {
        tenant_id: t,
        as_of: '2024-01-08',
        code: 'INVALID_CLARITY',
        message: expect.stringMatching(
          /^clarity report measured at 2024-01-10T08:30:00Z has hrp .+; expected a number from 0 to 1, so hrp_pct is NULL$/,
        ),
      },
    ]);
    expect(await historyOf(t)).toMatchObject([{ aiv_pct: 44, hrp_pct: null }]);
    if (hrp === 'high') expect((result.warnings as { message: string }[])[0]!.message).toContain('has hrp "high";');
  });

  it('raises NO_AVI (KH422) for a tenant without AVI reports, writing nothing', async () => {
    const t = await newTenant();
    await insertVli(db.sql, t, '2024-01-09T00:00:00Z', 90);
    await expect(fill(t)).rejects.toMatchObject({ code: 'KH422', message: expect.stringMatching(/has no AVI report/) });
    expect(await historyOf(t)).toEqual([]);
  });

  it('raises UNKNOWN_TENANT (KH404) for an id that is no tenant, and INVALID_INPUT (KH400) for NULL', async () => {
    await expect(fill(UNKNOWN)).rejects.toMatchObject({ code: 'KH404', message: `no tenant has the slug or id ${UNKNOWN}` });
    await expect(db.sql`select kpi.fill_kpi_history(null)`).rejects.toMatchObject({ code: 'KH400' });
  });

  it('the KH codes are the ones listed in kpi.error_codes', async () => {
    const codes = await db.sql`select code, sqlstate, http_status from kpi.error_codes where code in ('NO_AVI', 'UNKNOWN_TENANT', 'INVALID_INPUT') order by code`;
    expect(codes).toEqual([
      { code: 'INVALID_INPUT', sqlstate: 'KH400', http_status: 400 },
      { code: 'NO_AVI', sqlstate: 'KH422', http_status: 422 },
      { code: 'UNKNOWN_TENANT', sqlstate: 'KH404', http_status: 404 },
    ]);
  });
});

describe('kpi.backfill_kpi_history', () => {
  async function weeklyTenant() {
    const t = await newTenant();
    for (const [i, week] of ['2024-01-01', '2024-01-08', '2024-01-15', '2024-01-22'].entries()) {
      await insertAvi(db.sql, t, { weekStart: week, aivPct: 10 * (i + 1) });
    }
    await insertVli(db.sql, t, '2024-01-10T00:00:00Z', 71);
    await insertVli(db.sql, t, '2024-01-24T00:00:00Z', 73);
    await insertClarity(db.sql, t, '2024-01-03T00:00:00Z', { hrp: 0.2 });
    await insertClarity(db.sql, t, '2024-01-17T00:00:00Z', { hrp: 'bad' });
    return t;
  }

  it('writes every AVI week with VLI and HRP as of that week (no look-ahead)', async () => {
    const t = await weeklyTenant();
    const [{ result }] = await db.sql<[{ result: Record<string, unknown> }]>`select kpi.backfill_kpi_history(${t}) as result`;
    expect(result).toMatchObject({ ok: 1, total: 1, weeks: 4, rows_written: 4, status: 'ok', errors: [] });
    expect(result.warnings).toMatchObject([
      { as_of: '2024-01-15', code: 'INVALID_CLARITY' },
      { as_of: '2024-01-22', code: 'INVALID_CLARITY' },
    ]);
    expect(await historyOf(t)).toMatchObject([
      { as_of: '2024-01-01', aiv_pct: 10, vli_integrity_pct: 100, vli_is_fallback: true, hrp_pct: 20 },
      { as_of: '2024-01-08', aiv_pct: 20, vli_integrity_pct: 71, vli_is_fallback: false, hrp_pct: 20 },
      { as_of: '2024-01-15', aiv_pct: 30, vli_integrity_pct: 71, vli_is_fallback: false, hrp_pct: null },
      { as_of: '2024-01-22', aiv_pct: 40, vli_integrity_pct: 73, vli_is_fallback: false, hrp_pct: null },
    ]);
  });

  it('limits itself to [from, to], both inclusive', async () => {
    const t = await weeklyTenant();
    await db.sql`select kpi.backfill_kpi_history(${t}, '2024-01-08', '2024-01-15')`;
    expect((await historyOf(t)).map((r) => r.as_of)).toEqual(['2024-01-08', '2024-01-15']);
    await db.sql`select kpi.backfill_kpi_history(${t}, "to" => '2024-01-01')`;
    expect((await historyOf(t)).map((r) => r.as_of)).toEqual(['2024-01-01', '2024-01-08', '2024-01-15']);
  });

  it('agrees with the daily fill on the latest week, and is idempotent', async () => {
    const t = await weeklyTenant();
    await fill(t);
    const [latest] = await historyOf(t);
    const [{ result }] = await db.sql<[{ result: { rows_written: number } }]>`select kpi.backfill_kpi_history(${t}) as result`;
    expect(result.rows_written).toBe(3); // the latest week was already right
    expect((await historyOf(t)).at(-1)).toEqual(latest);
    const [{ again }] = await db.sql<[{ again: { rows_written: number } }]>`select kpi.backfill_kpi_history(${t}) as again`;
    expect(again.rows_written).toBe(0);
  });

  it('refuses from > to (INVALID_INPUT), unknown tenants and tenants without AVI', async () => {
    const t = await weeklyTenant();
    await expect(db.sql`select kpi.backfill_kpi_history(${t}, '2024-02-01', '2024-01-01')`).rejects.toMatchObject({ code: 'KH400' });
    await expect(db.sql`select kpi.backfill_kpi_history(${UNKNOWN})`).rejects.toMatchObject({ code: 'KH404' });
    await expect(db.sql`select kpi.backfill_kpi_history(${await newTenant()})`).rejects.toMatchObject({ code: 'KH422' });
  });
});
