// End to end: the browser entry against a running PostgREST. Runs where one is given
// (POSTGREST_URL, e.g. `docker compose up` → http://localhost:3000, with PGRST_JWT_SECRET and
// CRON_SECRET from .env); PostgREST cannot be installed on every machine, so elsewhere this suite
// reports that it did not run, and why.
import { describe, expect, it } from 'vitest';
import { createKpiCronClient, createKpiHistoryClient, KpiHistoryError } from '../../sdk/src/index.js';
import { mintToken } from '../../scripts/token.js';

const { POSTGREST_URL, PGRST_JWT_SECRET, CRON_SECRET } = process.env;
const TENANT_ID = process.env.TENANT_ID ?? '00000000-0000-4000-a000-00000000ac01';
const missing = [
  ['POSTGREST_URL', POSTGREST_URL],
  ['PGRST_JWT_SECRET', PGRST_JWT_SECRET],
  ['CRON_SECRET', CRON_SECRET],
]
  .filter(([, value]) => !value)
  .map(([name]) => name);
const reason = missing.length ? ` — not run: no running PostgREST given (${missing.join(', ')} unset)` : '';
// Said in the run's output too: a skipped suite's name is not printed by the default reporter.
if (reason) console.warn(`[kpi-history tests] SDK end-to-end suite${reason}`);

describe.skipIf(missing.length > 0)(`SDK against PostgREST at ${POSTGREST_URL ?? '(none)'}${reason}`, () => {
  const token = () => mintToken({ secret: PGRST_JWT_SECRET!, tenantIds: [TENANT_ID] });

  it('health, a cron run, the history and the CSV', async () => {
    const kpi = createKpiHistoryClient({ url: POSTGREST_URL!, token: token(), tenantId: TENANT_ID });
    expect((await kpi.health()).status).toMatch(/healthy|degraded/);
    const run = await createKpiCronClient({ url: POSTGREST_URL!, cronSecret: CRON_SECRET! }).run({ tenantId: TENANT_ID });
    expect(run).toMatchObject({ ok: true });
    const weeks = await kpi.history({ limit: 5 });
    expect(weeks[0]!.as_of).toBe(run.as_of);
    expect((await kpi.exportCsv({ limit: 5 })).split('\r\n')[0]).toMatch(/^tenant,as_of,/);
  });

  it('a wrong secret is FORBIDDEN', async () => {
    const error = await createKpiCronClient({ url: POSTGREST_URL!, cronSecret: 'x'.repeat(40) })
      .run()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KpiHistoryError);
    expect(error).toMatchObject({ code: 'FORBIDDEN', status: 403 });
  });
});
