// The SDK examples of docs/sdk.md are these files, verbatim; here they run (type-checked by `npm test`).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { showKpis } from '../../sdk/examples/browser.js';
import { refreshKpis } from '../../sdk/examples/server.js';
import { insertTwoTenantsWithHistory } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';
import { json, postgrestError, recordingFetch } from './recording-fetch.js';
import { connectAsAuthenticator, createReplay, TEST_JWT_SECRET } from '../helpers/postgrest.js';
import { mintToken } from '../../scripts/token.js';

const db = useTestDatabase();
const sdkDoc = readFileSync(`${projectRoot}docs/sdk.md`, 'utf8');

describe('docs/sdk.md examples', () => {
  it.each(['sdk/examples/browser.ts', 'sdk/examples/server.ts'])('%s is in docs/sdk.md verbatim', (file) => {
    expect(sdkDoc).toContain(readFileSync(`${projectRoot}${file}`, 'utf8').trim());
  });

  it('sdk/examples/alert-receiver.ts is in docs/alerts.md verbatim (test/alerts/delivery.test.ts runs it)', () => {
    expect(readFileSync(`${projectRoot}docs/alerts.md`, 'utf8')).toContain(readFileSync(`${projectRoot}sdk/examples/alert-receiver.ts`, 'utf8').trim());
  });

  it('the browser example, through the PostgREST replay: the history, the CSV file and its name, FORBIDDEN', async () => {
    await insertTwoTenantsWithHistory(db.sql);
    const authenticator = connectAsAuthenticator(db.urlAs('authenticator'));
    try {
      const replay = createReplay(authenticator, { jwtSecret: TEST_JWT_SECRET });
      const token = await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME] });
      const today = new Date().toISOString().slice(0, 10);
      const shown = await showKpis('http://postgrest.test', token, ACME, replay.fetch);
      expect(shown).toMatchObject({ summary: 'AIV 13% in the week of 2024-01-22', download: { filename: `kpi-history-acme-${today}.csv` } });
      expect(shown.weeks).toHaveLength(4);
      expect(await showKpis('http://postgrest.test', token, GLOBEX, replay.fetch)).toEqual({ summary: 'not your tenant', weeks: [] });
    } finally {
      await authenticator.end();
    }
  });

  it('the browser example’s exact requests (scripted answers)', async () => {
    const row = { as_of: '2024-01-22', aiv_pct: 13 };
    const { fetch, requests } = recordingFetch((request) =>
      request.url.pathname === '/kpi_history'
        ? json([row])
        : new Response('tenant,as_of\r\nacme,2024-01-22\r\n', { headers: { 'content-disposition': 'attachment; filename="kpi-history-acme-2024-02-01.csv"' } }),
    );
    const shown = await showKpis('http://localhost:3000', 'jwt', ACME, fetch);
    expect(shown).toMatchObject({
      summary: 'AIV 13% in the week of 2024-01-22',
      download: { filename: 'kpi-history-acme-2024-02-01.csv', bytes: 31 },
    });
    expect(requests.map((r) => r.url.pathname)).toEqual(['/kpi_history', '/rpc/kpi_history_csv']);

    const denied = recordingFetch(() => postgrestError(403, 'FORBIDDEN', 'the x-tenant header names a tenant this token does not grant'));
    expect(await showKpis('http://localhost:3000', 'jwt', GLOBEX, denied.fetch)).toEqual({ summary: 'not your tenant', weeks: [] });
  });

  describe('the server example, against the database', () => {
    const saved = process.env.DATABASE_URL;
    beforeAll(async () => {
      if ((await db.sql`select count(*)::int as n from kpi.tenants`)[0]!.n === 0) await insertTwoTenantsWithHistory(db.sql);
      process.env.DATABASE_URL = db.url;
    });
    afterAll(() => {
      if (saved === undefined) delete process.env.DATABASE_URL;
      else process.env.DATABASE_URL = saved;
    });

    it('fills one tenant and all tenants', async () => {
      expect(await refreshKpis(ACME)).toEqual({ tenant: '2024-01-22', all: '2/2 tenants' });
    });

    it('handles NO_AVI', async () => {
      await db.sql`insert into kpi.tenants (id, slug, name) values ('00000000-0000-4000-a000-0000000000e1', 'empty', 'Empty')`;
      expect(await refreshKpis('00000000-0000-4000-a000-0000000000e1')).toEqual({ tenant: null, all: 'no AVI report yet' });
    });
  });
});
