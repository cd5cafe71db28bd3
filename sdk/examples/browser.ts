import { createKpiHistoryClient, KpiHistoryError } from 'kpi-history';

// In the app: PostgREST's URL, the signed-in user's JWT, and the tenant they are looking at.
export async function showKpis(url: string, token: string, tenantId: string, fetchImpl?: typeof fetch) {
  const kpi = createKpiHistoryClient({ url, token, tenantId, fetch: fetchImpl });
  try {
    const weeks = await kpi.history({ limit: 12 }); // newest first, typed rows
    const latest = weeks[0];
    const summary = latest ? `AIV ${latest.aiv_pct}% in the week of ${latest.as_of}` : 'no history yet';
    const { blob, filename } = await kpi.exportCsvFile({ weeks: 52 }); // e.g. URL.createObjectURL(blob)
    return { summary, weeks, download: { filename, bytes: blob.size } };
  } catch (error) {
    if (error instanceof KpiHistoryError && error.code === 'FORBIDDEN') return { summary: 'not your tenant', weeks: [] };
    throw error;
  }
}
