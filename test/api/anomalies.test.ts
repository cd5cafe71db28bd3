// GET /kpi_anomalies through the PostgREST replay, and every way a user of one tenant might reach
// another tenant's anomalies, alerts or rules.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, get, postgrestRequest } from '../helpers/postgrest.js';
import { userClaims } from '../fixtures/api.js';
import { insertTenant } from '../fixtures/sources.js';
import { ACME, GLOBEX, UNKNOWN } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;
const acme = { claims: userClaims(ACME) };

/** Twelve steady weeks from 2024-01-01, then a spike of `spike` in AIV. */
async function historyWithSpike(tenantId: string, spike: number): Promise<void> {
  await db.sql`
    insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
    select ${tenantId}, date '2024-01-01' + 7 * w, case when w = 12 then ${spike} else 50 + w % 3 end, 40, 30, 1000, 100, true, 10
    from generate_series(0, 12) w`;
}

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTenant(db.sql, ACME, 'acme');
  await insertTenant(db.sql, GLOBEX, 'globex');
  await historyWithSpike(ACME, 80);
  await historyWithSpike(GLOBEX, 20);
  await db.sql`insert into kpi.alert_webhooks (tenant_id, url) values (${GLOBEX}, 'https://globex.example/hook?token=secret')`;
});
afterAll(() => api.end());

const anomalies = (request: Parameters<typeof get>[2], query = '') =>
  get<Record<string, unknown>[]>(api, `/kpi_anomalies${query ? `?${query}` : ''}`, request);

describe('GET /kpi_anomalies', () => {
  it('the active tenant’s anomalies, with the documented columns', async () => {
    const response = await anomalies(acme);
    expect(response.status).toBe(200);
    expect(response.body).toEqual([
      {
        as_of: '2024-03-25', kpi: 'aiv_pct', value: 80, baseline_median: 51, baseline_mad: 1, baseline_weeks: 12,
        score: expect.closeTo(0.6745 * 29, 6), direction: 'up', threshold: 3.5, detected_at: expect.any(String),
      },
    ]);
  });

  it('filters narrow it (kpi, as_of, direction)', async () => {
    expect((await anomalies(acme, 'kpi=eq.hrp_pct')).body).toEqual([]);
    expect((await anomalies(acme, 'direction=eq.up&as_of=gte.2024-03-01')).body).toHaveLength(1);
  });
});

describe('Acme’s user cannot reach Globex’s anomalies, alerts or rules', () => {
  const forbidden = { status: 403, body: { code: 'FORBIDDEN' } };

  it('forged x-tenant → FORBIDDEN 403', async () => {
    for (const header of [GLOBEX, UNKNOWN, `${GLOBEX}' or '1'='1`, '*']) {
      expect(await anomalies({ ...acme, headers: { 'x-tenant': header } }), header).toMatchObject(forbidden);
    }
  });

  it('filters that match everything still return Acme’s alone', async () => {
    const response = await anomalies(acme, 'as_of=gte.1900-01-01&direction=neq.sideways&limit=1000');
    expect((response.body as { direction: string }[]).map((a) => a.direction)).toEqual(['up']); // Globex's is down
  });

  it('kpi.kpi_anomalies read directly is filtered by row-level security', async () => {
    const response = await postgrestRequest(api, { method: 'GET', path: '/x', claims: acme.claims }, (tx) =>
      tx`select distinct tenant_id from kpi.kpi_anomalies`,
    );
    expect(response.body).toEqual([{ tenant_id: ACME }]);
  });

  it.each(['alerts', 'alert_webhooks', 'alert_settings', 'anomaly_rules', 'tenant_anomaly_rules'])(
    'kpi.%s cannot be read at all (403)',
    async (table) => {
      const response = await postgrestRequest(api, { method: 'GET', path: '/x', claims: acme.claims }, (tx) => tx.unsafe(`select * from kpi.${table}`));
      expect(response).toMatchObject({ status: 403, body: { code: '42501' } });
    },
  );

  it.each([
    ['delete its anomalies', `delete from kpi.kpi_anomalies where tenant_id = '${ACME}'`],
    ['switch its own detection off', `insert into kpi.tenant_anomaly_rules (tenant_id, kpi, enabled) values ('${ACME}', 'aiv_pct', false)`],
    ['point Globex’s alerts elsewhere', `update kpi.alert_webhooks set url = 'https://evil.example' where tenant_id = '${GLOBEX}'`],
    ['re-score anything', `select kpi.rescore_all_anomalies('${GLOBEX}')`],
  ])('cannot %s (403)', async (_what, query) => {
    const response = await postgrestRequest(api, { method: 'POST', path: '/x', claims: acme.claims }, (tx) => tx.unsafe(query));
    expect(response).toMatchObject({ status: 403, body: { code: '42501' } });
    expect(await db.sql`select url from kpi.alert_webhooks where tenant_id = ${GLOBEX}`).toEqual([{ url: 'https://globex.example/hook?token=secret' }]);
  });

  it('anonymous callers read nothing (401)', async () => {
    expect(await anomalies({})).toMatchObject({ status: 401 });
    expect(await anomalies({ headers: { 'x-tenant': ACME } })).toMatchObject({ status: 401 });
  });
});
