// Deterministic benchmark data, generated set-based in the database: `tenants` tenants with
// `weeks` weekly AVI reports ending on LAST_WEEK, a VLI audit and a clarity report in each week.
// Tenant ids are md5-derived uuids: random-looking like real ones, the same on every run.
//   every 50th tenant has no AVI report (a NO_AVI error), every 10th no VLI audit (the fallback),
//   every 97th an invalid HRP in its latest clarity report (an INVALID_CLARITY warning).
import type postgres from 'postgres';

export const LAST_WEEK = '2026-11-23';

export async function generate(sql: postgres.Sql, tenants: number, weeks: number): Promise<void> {
  await sql`
    insert into kpi.tenants (id, slug, name)
    select md5('bench-' || i)::uuid, 'bench-' || i, 'Bench tenant ' || i
    from generate_series(1, ${tenants}::int) i`;
  await sql`
    insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, computed_at)
    select md5('bench-' || i)::uuid, ${LAST_WEEK}::date - 7 * w,
           ((i * 7 + w * 13) % 10001) / 100.0, ((i * 3 + w * 7) % 10001) / 100.0, ((i + w * 11) % 10001) / 100.0,
           ((i * 31 + w) % 500000) / 100.0, ${LAST_WEEK}::date - 7 * w + interval '8 days'
    from generate_series(1, ${tenants}::int) i cross join generate_series(0, ${weeks - 1}::int) w
    where i % 50 <> 0`;
  await sql`
    insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct)
    select md5('bench-' || i)::uuid, ${LAST_WEEK}::date - 7 * w + interval '2 days 10 hours', ((i * 17 + w) % 10001) / 100.0
    from generate_series(1, ${tenants}::int) i cross join generate_series(0, ${weeks - 1}::int) w
    where i % 10 <> 0`;
  await sql`
    insert into kpi.clarity_reports (tenant_id, measured_at, metrics)
    select md5('bench-' || i)::uuid, ${LAST_WEEK}::date - 7 * w + interval '3 days 14 hours',
           case when i % 97 = 0 and w = 0 then '{"hrp": "n/a"}'::jsonb
                else jsonb_build_object('hrp', ((i + w) % 1001) / 1000.0, 'tokens_sampled', 1000 + w) end
    from generate_series(1, ${tenants}::int) i cross join generate_series(0, ${weeks - 1}::int) w`;
  await sql`vacuum analyze kpi.tenants, kpi.avi_reports, kpi.vli_audits, kpi.clarity_reports`;
}

/** Gives `count` tenants (every `step`-th with reports) a report for the week `weeksAhead` after LAST_WEEK. */
export async function addNextWeek(sql: postgres.Sql, tenants: number, count: number, weeksAhead = 1): Promise<number> {
  const step = Math.max(1, Math.floor(tenants / count));
  const [row] = await sql<[{ n: number }]>`
    with added as (
      insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point)
      select md5('bench-' || i)::uuid, ${LAST_WEEK}::date + 7 * ${weeksAhead}::int, 50, 50, 50, 1000
      from generate_series(1, ${tenants}::int) i
      where i % ${step} = 1 % ${step} and i % 50 <> 0
      limit ${count}
      returning 1)
    select count(*)::int as n from added`;
  return row.n;
}

/** Gives `count` random tenants at least `weeks` weeks of history, for the read measurements. */
export async function deepenHistory(sql: postgres.Sql, tenantIds: string[], weeks: number): Promise<void> {
  await sql`
    insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
    select t, ${LAST_WEEK}::date - 7 * w, w % 100, 50, 50, 1000, 99, false, 10
    from unnest(${tenantIds}::uuid[]) t cross join generate_series(0, ${weeks - 1}::int) w
    on conflict (tenant_id, as_of) do nothing`;
  await sql`analyze kpi.kpi_history`;
}
