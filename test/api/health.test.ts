// GET /rpc/kpi_history_health: healthy after a good run; degraded after a failed run, a run that
// never finished, or 26 hours without success. No token needed, nothing tenant-specific.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, rpc } from '../helpers/postgrest.js';
import { insertTwoTenantsWithHistory } from '../fixtures/api.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';

const db = useTestDatabase();
let api: Sql;

type Health = { status: string; reasons: string[]; last_run: Record<string, unknown> | null; [key: string]: unknown };
const health = async () => {
  const response = await rpc<Health>(api, 'kpi_history_health', {}, { method: 'GET' });
  expect(response.status).toBe(200);
  return response.body as Health;
};

beforeAll(async () => {
  api = connectAsAuthenticator(db.urlAs('authenticator'));
  await insertTwoTenantsWithHistory(db.sql);
});
beforeEach(() => db.sql`delete from kpi.kpi_runs`);
afterAll(() => api.end());

describe('kpi_history_health', () => {
  it('is degraded before any run', async () => {
    expect(await health()).toMatchObject({ status: 'degraded', reasons: ['no successful run in the last 26 hours'], last_run: null });
  });

  it('is healthy after a successful run, with its time, status and the schedule field', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    const body = await health();
    expect(body).toMatchObject({ status: 'healthy', reasons: [], last_run: { status: 'ok', trigger: 'sql' } });
    expect(Object.keys(body).sort()).toEqual(['alerts', 'last_run', 'last_success_at', 'reasons', 'schedule', 'status', 'timestamp']);
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
    expect(await health()).toMatchObject({ status: 'degraded', reasons: ['the last run failed'], last_run: { status: 'failed' } });
  });

  it('is degraded when the last run never finished (its session is gone)', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    await db.sql`insert into kpi.kpi_runs (kind, trigger, status, backend_pid) values ('fill_all', 'pg_cron', 'running', 2147483647)`;
    expect(await health()).toMatchObject({ status: 'degraded', reasons: ['the last run never finished'] });
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

  it('reveals nothing tenant-specific, to anyone', async () => {
    await db.sql`select kpi.fill_all_kpi_history()`;
    const text = JSON.stringify(await health());
    for (const secret of [ACME, GLOBEX, 'acme', 'globex', 'NO_AVI', 'tenant']) expect(text).not.toContain(secret);
  });
});
