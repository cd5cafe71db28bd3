// Every call the README documents and every call the SDK makes, as whole HTTP requests through
// the PostgREST v16.2 replay, on the demo data. The same calls and assertions run against a real
// PostgREST in `npm run test:e2e` (test/e2e/postgrest.e2e.test.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { connectAsAuthenticator, createReplay, TEST_JWT_SECRET, type Replay } from '../helpers/postgrest.js';
import { mintToken } from '../../scripts/token.js';
import { DOCUMENTED_CALLS, SDK_SCENARIOS, sendCall, type CallContext } from '../fixtures/documented-calls.js';
import { ACME, HOOLI } from '../fixtures/tenants.js';

const db = useTestDatabase();
const BASE_URL = 'http://postgrest.test';
const CRON_SECRET = 'documented-calls-cron-secret-0123456789';
let api: Sql;
let replay: Replay;
let ctx: CallContext;

beforeAll(async () => {
  const seeded = spawnSync('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', 'db/seed/demo.sql'], { cwd: projectRoot, encoding: 'utf8' });
  expect(seeded.status, seeded.stderr).toBe(0);
  await db.sql`select kpi.backfill_kpi_history()`;
  await db.sql`select kpi.add_cron_secret(${CRON_SECRET})`;
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  replay = createReplay(api, { jwtSecret: TEST_JWT_SECRET });
  ctx = {
    token: await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME] }),
    hooliToken: await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [HOOLI] }),
    adminToken: await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [ACME], admin: true }),
    cronSecret: CRON_SECRET,
    today: new Date().toISOString().slice(0, 10),
  };
});
afterAll(() => api.end());

/** The replay's fetch, adding each endpoint it is sent to to `hit`. */
const recordingReplayFetch = (hit: Set<string>) =>
  ((input: RequestInfo | URL, init?: RequestInit) => {
    hit.add(new URL(input instanceof Request ? input.url : String(input)).pathname);
    return replay.fetch(input, init);
  }) as typeof fetch;

describe('the README’s HTTP calls', () => {
  it.each(DOCUMENTED_CALLS.map((call) => [call.name, call] as const))('%s', async (_name, call) => {
    await call.given?.(db.sql);
    call.check(await sendCall(replay.fetch, BASE_URL, call, ctx), ctx);
  });

  it('every curl call in the README and docs/ is one of them, so the docs and these tests cannot drift', () => {
    const documents = ['README.md', ...listDocs()].map((file) => readFileSync(`${projectRoot}${file}`, 'utf8'));
    const curls = documents.flatMap((text) =>
      [...text.matchAll(/curl\b([^\n]*?)"?localhost:3000(\/[^\s"]*)"?/g)].map((m) => `${/-X (POST|PATCH|DELETE)/.exec(m[1]!)?.[1] ?? 'GET'} ${m[2]}`),
    );
    expect(curls.length).toBeGreaterThanOrEqual(5);
    const tested = new Set(DOCUMENTED_CALLS.map((call) => `${call.method} ${call.url}`));
    expect(curls.filter((curl) => !tested.has(curl))).toEqual([]);
  });
});

describe('the SDK’s calls (browser entry, through the replay’s fetch)', () => {
  it.each(SDK_SCENARIOS.map((scenario) => [scenario.name, scenario] as const))('%s', async (_name, scenario) => {
    await scenario.given?.(db.sql);
    await scenario.run({ url: BASE_URL, fetch: replay.fetch, ctx });
  });

  it('reach every endpoint the API has', async () => {
    const pathsHit = new Set<string>();
    for (const scenario of SDK_SCENARIOS) {
      await scenario.given?.(db.sql);
      await scenario.run({ url: BASE_URL, fetch: recordingReplayFetch(pathsHit), ctx });
    }
    expect([...pathsHit].sort()).toEqual([
      '/active_tenant',
      '/custom_kpi_rollups',
      '/custom_kpi_values',
      '/custom_kpis',
      '/kpi_anomalies',
      '/kpi_history',
      '/kpi_history_monthly',
      '/kpi_history_quarterly',
      '/rpc/kpi_history_changes',
      '/rpc/kpi_history_cron',
      '/rpc/kpi_history_csv',
      '/rpc/kpi_history_health',
    ]);
  });
});

function listDocs(): string[] {
  const dir = `${projectRoot}docs`;
  return existsSync(dir) ? readdirSync(dir).filter((file) => file.endsWith('.md')).map((file) => `docs/${file}`) : [];
}
