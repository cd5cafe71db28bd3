// End to end: the documented calls and the SDK against a real PostgREST v16.2 — the same calls and
// assertions as the replay runs in `npm test` (test/fixtures/documented-calls.ts), plus what only a
// real server shows (CORS, the admin port, the OpenAPI document). `npm run test:e2e` brings the
// compose stack up, seeds the demo data, runs this file and brings the stack down. Without a
// running PostgREST (POSTGREST_URL, PGRST_JWT_SECRET, CRON_SECRET) it reports that it did not run.
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../scripts/token.js';
import { DOCUMENTED_CALLS, SDK_SCENARIOS, sendCall, type CallContext } from '../fixtures/documented-calls.js';
import { ACME, HOOLI } from '../fixtures/tenants.js';

const { POSTGREST_URL, POSTGREST_ADMIN_URL, PGRST_JWT_SECRET, CRON_SECRET, DATABASE_URL } = process.env;
const missing = Object.entries({ POSTGREST_URL, PGRST_JWT_SECRET, CRON_SECRET, DATABASE_URL })
  .filter(([, value]) => !value)
  .map(([name]) => name);
const reason = missing.length
  ? ` — not run: no running PostgREST given (${missing.join(', ')} unset; \`npm run test:e2e\` starts one where Docker runs)`
  : '';
// Said in the run's output too: a skipped suite's name is not printed by the default reporter.
if (reason) console.warn(`[kpi-history tests] PostgREST end-to-end suite${reason}`);

describe.skipIf(missing.length > 0)(`PostgREST at ${POSTGREST_URL ?? '(none)'}${reason}`, () => {
  const context = async (): Promise<CallContext> => ({
    token: await mintToken({ secret: PGRST_JWT_SECRET!, tenantIds: [ACME] }),
    hooliToken: await mintToken({ secret: PGRST_JWT_SECRET!, tenantIds: [HOOLI] }),
    adminToken: await mintToken({ secret: PGRST_JWT_SECRET!, tenantIds: [ACME], admin: true }),
    cronSecret: CRON_SECRET!,
    today: new Date().toISOString().slice(0, 10),
  });

  // The owner's connection, for the state a call is documented in (DocumentedCall.given).
  const owner = DATABASE_URL ? postgres(DATABASE_URL, { max: 1, onnotice: () => {} }) : null;
  afterAll(() => owner?.end());

  describe('the README’s HTTP calls', () => {
    it.each(DOCUMENTED_CALLS.map((call) => [call.name, call] as const))('%s', async (_name, call) => {
      const ctx = await context();
      await call.given?.(owner!);
      call.check(await sendCall(fetch, POSTGREST_URL!, call, ctx), ctx);
    });
  });

  describe('the SDK’s calls', () => {
    it.each(SDK_SCENARIOS.map((scenario) => [scenario.name, scenario] as const))('%s', async (_name, scenario) => {
      await scenario.given?.(owner!);
      await scenario.run({ url: POSTGREST_URL!, fetch, ctx: await context() });
    });
  });

  describe('what only a real PostgREST shows', () => {
    it('CORS does not expose Content-Disposition to a cross-origin app (why the SDK names files itself)', async () => {
      const ctx = await context();
      const response = await fetch(`${POSTGREST_URL}/rpc/kpi_history_csv?weeks=1`, {
        headers: { Authorization: `Bearer ${ctx.token}`, Accept: 'text/csv', Origin: 'https://app.example' },
      });
      expect(response.status).toBe(200);
      const exposed = (response.headers.get('access-control-expose-headers') ?? '').toLowerCase();
      expect(exposed).toContain('content-range');
      expect(exposed).not.toContain('content-disposition');
    });

    it('the OpenAPI document at / carries the COMMENTs of what the caller may use (openapi-mode follow-privileges)', async () => {
      // SqlFragment.hs `accessibleFuncs`/`accessibleTables`: a tenant's user sees the tenant's endpoints …
      const ctx = await context();
      const asUser = await fetch(`${POSTGREST_URL}/`, { headers: { Accept: 'application/openapi+json', Authorization: `Bearer ${ctx.token}` } });
      expect(asUser.status).toBe(200);
      const text = await asUser.text();
      expect(text).toContain('kpi_history_csv');
      expect(text).toContain('Example: GET /rpc/kpi_history_csv?weeks=12');
      // … and anon only what anon may call.
      const anon = await (await fetch(`${POSTGREST_URL}/`, { headers: { Accept: 'application/openapi+json' } })).text();
      expect(anon).toContain('kpi_history_health');
      expect(anon).not.toContain('kpi_history_csv');
    });

    it.skipIf(!POSTGREST_ADMIN_URL)('the admin port answers /live and /ready, and has no /config (v12 printed the secrets there)', async () => {
      expect((await fetch(`${POSTGREST_ADMIN_URL}/live`)).status).toBe(200);
      expect((await fetch(`${POSTGREST_ADMIN_URL}/ready`)).status).toBe(200);
      const config = await fetch(`${POSTGREST_ADMIN_URL}/config`);
      expect(config.status).not.toBe(200);
      expect(await config.text()).not.toContain(PGRST_JWT_SECRET!);
    });
  });
});
