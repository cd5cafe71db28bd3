// GET /rpc/kpi_history_health: healthy after a good run; degraded after a failed run, a run that
// never finished, or 26 hours without success. No token needed: anyone learns the status and its
// freshness, and only with the cron secret (x-cron-secret) the whole report, reasons included.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, rpc } from '../helpers/postgrest.js';
import { insertTwoTenantsWithHistory } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;

const SECRET = 'health-test-cron-secret-0123456789abcdefghij';
type Health = { status: string; reasons: string[]; last_run: Record<string, unknown> | null; [key: string]: unknown };
const health = async (headers: Record<string, string> = { 'x-cron-secret': SECRET }) => {
  const response = await rpc<Health>(api, 'kpi_history_health', {}, { method: 'GET', headers });
  expect(response.status).toBe(200);
  return response.body as Health;
};

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
  await db.sql`select kpi.install_cron_secret(${SECRET})`;
});
beforeEach(async () => {
  await db.sql`delete from kpi.kpi_runs`;
  await db.sql`delete from kpi.tenants where slug = 'no-reports'`;
});
afterAll(() => api.end());

describe('kpi_history_health', () => {
  it('is degraded before any run', async () => {
    expect(await health()).toMatchObject({ status: 'degraded', reasons: ['no successful run in the last 26 hours'], last_run: null });
  });

  it('is healthy after a successful run, with its time, status and the schedule field', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    const body = await health();
    expect(body).toMatchObject({ status: 'healthy', reasons: [], last_run: { status: 'ok', trigger: 'sql' } });
    expect(Object.keys(body).sort()).toEqual(['alerts', 'failing_tenants', 'last_run', 'last_success_at', 'reasons', 'schedule', 'status', 'timestamp']);
    expect(body.alerts).toEqual({ pending: 0, overdue: 0, dead: 0 });
    expect(Date.parse(body.timestamp as string)).not.toBeNaN();
    expect(Date.parse(body.last_success_at as string)).not.toBeNaN();
    // The clones have no pg_cron; in the pg_cron database the job is reported (see below).
    expect(body.schedule).toBeNull();
  });

  it('is degraded after a failed run, even with an earlier success', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    await db.sql`
      insert into kpi.kpi_runs (kind, trigger, status, finished_at, errors)
      values ('fill_all', 'pg_cron', 'failed', clock_timestamp(), '[{"code": "INTERNAL_ERROR"}]')`;
    expect(await health()).toMatchObject({ status: 'degraded', reasons: [expect.stringMatching(/^the last run failed \(run \d+/)], last_run: { status: 'failed' } });
  });

  it('is degraded when the last run never finished (its session is gone)', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    await db.sql`insert into kpi.kpi_runs (kind, trigger, status, backend_pid) values ('fill_all', 'pg_cron', 'running', 2147483647)`;
    expect(await health()).toMatchObject({ status: 'degraded', reasons: [expect.stringMatching(/^the last run never finished \(run \d+: its session is gone\)$/)] });
  });

  it('is healthy while a run is still going (its session is alive)', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    await db.sql`insert into kpi.kpi_runs (kind, trigger, status) values ('fill_all', 'pg_cron', 'running')`;
    expect(await health()).toMatchObject({ status: 'healthy', last_run: { status: 'running' } });
  });

  it('is degraded when the last success is older than 26 hours; skipped runs do not count', async () => {
    await db.sql`
      insert into kpi.kpi_runs (kind, trigger, status, started_at, finished_at)
      values ('fill_all', 'pg_cron', 'ok', now() - interval '27 hours', now() - interval '27 hours'),
             ('fill_all', 'sql', 'skipped', now(), now())`;
    expect(await health()).toMatchObject({
      status: 'degraded',
      reasons: ['no successful run in the last 26 hours'],
      last_run: { status: 'ok' },
    });
    await db.sql`update kpi.kpi_runs set finished_at = now() - interval '25 hours', started_at = now() - interval '25 hours' where status = 'ok'`;
    expect((await health()).status).toBe('healthy');
  });

  it('a partial run (tenants without reports) is a success', async () => {
    await db.sql`insert into kpi.tenants (slug, name) values ('no-reports', 'No reports')`;
    await db.sql`select kpi.fill_all_kpi_history()`;
    expect(await health()).toMatchObject({ status: 'healthy', last_run: { status: 'partial' } });
  });

  it('without the cron secret: the status and its freshness only — no reasons, runs, locks, alerts or tenants', async () => {
    await db.sql`insert into kpi.tenants (slug, name) values ('no-reports', 'No reports')`;
    for (let i = 0; i < 3; i++) await db.sql`select kpi.fill_all_kpi_history()`;
    await db.sql`insert into kpi.kpi_runs (kind, trigger, status, finished_at, errors) values ('backfill', 'sql', 'failed', clock_timestamp(), '[{"code": "INTERNAL_ERROR", "message": "secret detail"}]')`;
    const full = await health();
    expect(full.reasons).toEqual(expect.arrayContaining([expect.stringContaining('no-reports'), expect.stringContaining('the last backfill failed')]));
    for (const headers of [{}, { 'x-cron-secret': 'a-wrong-secret-of-the-right-length-0123456789' }] as Record<string, string>[]) {
      const anonymous = await health(headers);
      expect(Object.keys(anonymous).sort()).toEqual(['last_success_at', 'status', 'timestamp']);
      expect(anonymous.status).toBe('degraded');
      const text = JSON.stringify(anonymous);
      for (const secret of [ACME, GLOBEX, 'acme', 'globex', 'no-reports', 'NO_AVI', 'tenant', 'secret detail', 'pid']) expect(text).not.toContain(secret);
    }
  });

  it('names a tenant that failed in each of the last three runs, and a failed backfill or cleanup', async () => {
    await db.sql`insert into kpi.tenants (slug, name) values ('no-reports', 'No reports')`;
    await db.sql`select kpi.fill_all_kpi_history()`;
    await db.sql`select kpi.fill_all_kpi_history()`;
    expect((await health()).status).toBe('healthy'); // two days are not three
    await db.sql`select kpi.fill_all_kpi_history()`;
    expect(await health()).toMatchObject({
      status: 'degraded',
      reasons: [expect.stringMatching(/^1 tenant\(s\) failed in each of the last 3 runs \(NO_AVI 1\), e\.g\. no-reports: see the errors of run \d+$/)],
      failing_tenants: { count: 1, by_code: { NO_AVI: 1 }, tenants: ['no-reports'] },
    });
    await db.sql`delete from kpi.tenants where slug = 'no-reports'`;
    await db.sql`insert into kpi.kpi_runs (kind, trigger, status, finished_at, errors) values ('cleanup', 'pg_cron', 'failed', clock_timestamp(), '[{"code": "INTERNAL_ERROR", "message": "disk full"}]')`;
    expect((await health()).reasons).toContainEqual(expect.stringMatching(/^the last source cleanup failed \(run \d+: disk full\)$/));
  });
});
