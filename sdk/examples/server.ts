import { closeKpiHistory, fillAllKpiHistory, fillKpiHistory, KpiHistoryError } from 'kpi-history/server';

// A worker or a Next.js route handler; DATABASE_URL points at the database.
export async function refreshKpis(tenantId: string) {
  try {
    const one = await fillKpiHistory(tenantId); // { ok: true, as_of: '2026-11-23', … }
    const all = await fillAllKpiHistory(); // { ok, total, errors, … } or { skipped: true, … }
    return { tenant: one.as_of, all: 'skipped' in all ? 'another run is going' : `${all.ok}/${all.total} tenants` };
  } catch (error) {
    if (error instanceof KpiHistoryError && error.code === 'NO_AVI') return { tenant: null, all: 'no AVI report yet' };
    throw error;
  } finally {
    await closeKpiHistory(); // lets a script exit; a long-lived server keeps the pool instead
  }
}
