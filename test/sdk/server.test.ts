// kpi-history/server against the real database: every call, every error code, and the shapes
// declared in sdk/src/results.ts checked against what the database returns.
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { connect, useTestDatabase } from '../helpers/database.js';
import { connectAsAuthenticator, get } from '../helpers/postgrest.js';
import {
  createKpiHistoryServer,
  toKpiHistoryError,
  type FillAllResult,
  type FillResult,
  type KpiHistoryServer,
  type SkippedResult,
} from '../../sdk/src/server.js';
import { insertTwoTenantsWithHistory, userClaims } from '../fixtures/api.js';
import { insertTenant } from '../fixtures/sources.js';
import { ACME, GLOBEX, INITECH, UNKNOWN } from '../fixtures/tenants.js';
import { failure } from './kpi-error.js';

const db = useTestDatabase();
let server: KpiHistoryServer;

beforeAll(async () => {
  await insertTwoTenantsWithHistory(db.sql);
  await insertTenant(db.sql, INITECH, 'initech');
  server = createKpiHistoryServer({ sql: db.sql });
});
afterAll(() => server.end()); // leaves the test's own connection open: it was passed in

describe('fillKpiHistory', () => {
  it('returns { ok: true, as_of } and the rest of FillResult', async () => {
    const result = await server.fillKpiHistory(ACME);
    expectTypeOf(result).toEqualTypeOf<FillResult>();
    expect(result).toEqual({ ok: true, status: 'ok', as_of: '2024-01-22', rows_written: 0, errors: [], warnings: [], anomalies: 0, run_id: expect.any(Number) });
  });

  it.each([
    ['NO_AVI', INITECH, 'KH422'],
    ['UNKNOWN_TENANT', UNKNOWN, 'KH404'],
  ])('throws %s, and the failure is a failed run in kpi.kpi_runs', async (code, tenant, sqlstate) => {
    const error = await failure(server.fillKpiHistory(tenant));
    expect(error).toMatchObject({ code, serverCode: sqlstate, status: undefined });
    expect(error.message).toMatch(/tenant/);
    const [run] = await db.sql`select id, kind, tenant_id, status, errors from kpi.kpi_runs order by id desc limit 1`;
    expect(run).toMatchObject({ kind: 'fill', tenant_id: tenant, status: 'failed', errors: [{ code, sqlstate }] });
    expect(error.details).toBe(`run ${run!.id} in kpi.kpi_runs`);
  });

  it('throws INVALID_INPUT for an id that is not a UUID, without asking the database', async () => {
    expect(await failure(server.fillKpiHistory('acme'))).toMatchObject({ code: 'INVALID_INPUT', serverCode: undefined });
  });
});

describe('fillAllKpiHistory', () => {

  it('returns { ok, total, errors } and the rest of FillAllResult', async () => {
    const result = (await server.fillAllKpiHistory()) as FillAllResult;
    // Incremental: the two tenants whose reports the fixtures wrote, every week of theirs.
    expect(result).toEqual({
      ok: 2,
      total: 3,
      mode: 'incremental',
      tenants_considered: 2,
      weeks: 8,
      weeks_kept: 0,
      rows_written: 0,
      errors: [{ tenant_id: INITECH, tenant: 'initech', code: 'NO_AVI', message: 'tenant initech has no AVI report', hint: expect.any(String) }],
      error_counts: { NO_AVI: 1 },
      warnings: [],
      anomalies: 0,
      status: 'partial',
      run_id: expect.any(Number),
    });
  });

  it('{ full: true } re-derives every tenant and reports what it corrected', async () => {
    const result = (await server.fillAllKpiHistory({ full: true })) as FillAllResult;
    expect(result).toMatchObject({ mode: 'full', corrected: 0, tenants_considered: 3, ok: 2, total: 3 });
  });

  it('returns SkippedResult, naming the session that holds the lock, while another all-tenant run holds it', async () => {
    await db.sql.begin(async (tx) => {
      const [holderRow] = await tx<{ pid: number; run: unknown }[]>`select pg_backend_pid() as pid, kpi.fill_all_kpi_history() as run`;
      const { pid, run } = holderRow!;
      const other = createKpiHistoryServer({ databaseUrl: db.url });
      try {
        const result = await other.fillAllKpiHistory();
        expect(result).toEqual<SkippedResult>({
          skipped: true,
          status: 'skipped',
          message: expect.stringMatching(new RegExp(`^another all-tenant run is in progress: pid ${pid} since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+\\+00:00$`)),
          holder: { pid, since: expect.any(String), run_id: null, application_name: 'postgres.js' },
          run_id: expect.any(Number),
        });
        expect(run).toMatchObject({ status: 'partial' }); // initech has no AVI report
      } finally {
        await other.end();
      }
    });
  });
});

describe('backfillKpiHistory', () => {
  it('backfills a range for one tenant', async () => {
    await db.sql`delete from kpi.kpi_history where tenant_id = ${GLOBEX}`;
    const result = await server.backfillKpiHistory({ tenantId: GLOBEX, from: '2024-01-08', to: '2024-01-15' });
    expect(result).toMatchObject({ ok: 1, total: 1, weeks: 2, rows_written: 2, status: 'ok' });
  });

  it('backfills everything with no options', async () => {
    // Every tenant is counted, the one without reports as a NO_AVI error, as in every run.
    expect(await server.backfillKpiHistory()).toMatchObject({ status: 'partial', ok: 2, total: 3, weeks: 8, errors: [{ tenant_id: INITECH, code: 'NO_AVI' }] });
  });

  it.each([
    [{ from: '2024-02-01', to: '2024-01-01' }, 'INVALID_INPUT', 'KH400'],
    [{ tenantId: UNKNOWN }, 'UNKNOWN_TENANT', 'KH404'],
    [{ tenantId: INITECH }, 'NO_AVI', 'KH422'],
    [{ from: '01/02/2024' }, 'INVALID_INPUT', undefined],
  ])('%j → %s', async (options, code, serverCode) => {
    expect(await failure(server.backfillKpiHistory(options))).toMatchObject({ code, serverCode });
  });
});

describe('readKpiHistory', () => {
  it('reads a tenant’s weeks, newest first, shaped like the HTTP API’s rows (numbers, ISO times)', async () => {
    const rows = await server.readKpiHistory(ACME, { limit: 2 });
    expect(rows).toHaveLength(2);
    expect(rows[0]).toEqual({
      as_of: '2024-01-22',
      aiv_pct: 13,
      ati_pct: 23,
      crs_pct: 33,
      elasticity_usd_per_point: 1003,
      vli_integrity_pct: 88.5,
      vli_is_fallback: false,
      hrp_pct: 12.5,
      updated_at: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+\+00:00$/),
    });
    expect(rows[1]!.as_of).toBe('2024-01-15');
  });

  it('filters by range and orders ascending on request', async () => {
    const rows = await server.readKpiHistory(ACME, { from: '2024-01-08', to: '2024-01-15', order: 'asc' });
    expect(rows.map((r) => r.as_of)).toEqual(['2024-01-08', '2024-01-15']);
  });

  it('refuses a bad limit', async () => {
    expect(await failure(server.readKpiHistory(ACME, { limit: 0 }))).toMatchObject({ code: 'INVALID_INPUT' });
  });
});

describe('readKpiRollup', () => {
  const READER = '00000000-0000-4000-a000-0000000f0001';

  beforeAll(async () => {
    // Fourteen months of weeks, so that the default (a year) and the range have work to do.
    await insertTenant(db.sql, READER, 'rollup-reader');
    await db.sql`
      insert into kpi.kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, vli_integrity_pct, vli_is_fallback, hrp_pct)
      select ${READER}, '2023-01-02'::date + 7 * w, w % 100, 50, 50, -12.5 * w, 99, w < 3, case when w % 5 = 0 then null else w % 100 end
      from generate_series(0, 60) w`;
  });

  it.each(['month', 'quarter'] as const)('%s: the same rows, columns and order as GET over HTTP for that tenant', async (period) => {
    const api = connectAsAuthenticator(db.urlAs('authenticator'));
    try {
      const view = period === 'month' ? 'kpi_history_monthly' : 'kpi_history_quarterly';
      const http = await get<Record<string, unknown>[]>(api, `/${view}?order=period_start.desc`, { claims: userClaims(READER) });
      expect(http.status).toBe(200);
      const rows = await server.readKpiRollup(READER, { period, limit: 100 });
      expect(rows).toEqual(http.body);
      expect(rows.map((r) => Object.keys(r))).toEqual((http.body as Record<string, unknown>[]).map((r) => Object.keys(r)));
      expect(rows.length).toBe(period === 'month' ? 14 : 5); // Jan 2023 … Feb 2024 (the week of Feb 26: Thursday the 29th)
    } finally {
      await api.end();
    }
  });

  it('a year by default, newest first; from, to and order narrow and sort by period_start', async () => {
    const year = await server.readKpiRollup(READER, { period: 'month' });
    expect(year.map((r) => r.period_start)).toHaveLength(12);
    expect(year[0]!.period_start).toBe('2024-02-01');
    const range = await server.readKpiRollup(READER, { period: 'quarter', from: '2023-04-01', to: '2023-10-01', order: 'asc' });
    expect(range.map((r) => r.period_start)).toEqual(['2023-04-01', '2023-07-01', '2023-10-01']);
    expect(await server.readKpiRollup(UNKNOWN, { period: 'month' })).toEqual([]);
  });

  it.each([
    ['a tenant id that is not a UUID', () => server.readKpiRollup('acme', { period: 'month' })],
    ['no period', () => server.readKpiRollup(READER, {} as never)],
    ['a period that is none', () => server.readKpiRollup(READER, { period: 'week' as never })],
    ['a bad limit', () => server.readKpiRollup(READER, { period: 'month', limit: 0 })],
    ['a bad date', () => server.readKpiRollup(READER, { period: 'month', from: '2024-1-1' })],
  ])('refuses %s with INVALID_INPUT', async (_what, call) => {
    expect(await failure(call())).toMatchObject({ code: 'INVALID_INPUT' });
  });
});

describe('health and errors', () => {
  it('health() is the whole report, as the HTTP endpoint gives it with the cron secret', async () => {
    await server.fillAllKpiHistory();
    const health = await server.health();
    expect(health).toMatchObject({ status: expect.stringMatching(/^(healthy|degraded)$/), last_run: { status: expect.any(String) } });
    expect(Object.keys(health).sort()).toEqual(['alerts', 'failing_tenants', 'last_run', 'last_success_at', 'reasons', 'schedule', 'status', 'timestamp']);
  });

  it('a database that cannot be reached is NETWORK_ERROR', async () => {
    const nowhere = createKpiHistoryServer({ databaseUrl: 'postgres://nobody@127.0.0.1:9/none' });
    try {
      expect(await failure(nowhere.fillAllKpiHistory())).toMatchObject({ code: 'NETWORK_ERROR' });
    } finally {
      await nowhere.end();
    }
  });

  it('a missing privilege is FORBIDDEN, any other database error INTERNAL_ERROR', async () => {
    const asAnon = await db.sql
      .begin(async (tx) => {
        await tx`set local role anon`;
        await tx`select kpi.fill_all_kpi_history()`;
      })
      .catch((e: unknown) => e);
    expect(toKpiHistoryError(asAnon)).toMatchObject({ code: 'FORBIDDEN', serverCode: '42501' });
    const other = await db.sql`select 1/0`.catch((e: unknown) => e);
    expect(toKpiHistoryError(other)).toMatchObject({ code: 'INVALID_INPUT', serverCode: '22012' });
    const unknown = await db.sql`select * from no_such_table`.catch((e: unknown) => e);
    expect(toKpiHistoryError(unknown)).toMatchObject({ code: 'INTERNAL_ERROR', serverCode: '42P01' });
  });

  it('without a connection or DATABASE_URL, says how to give one', () => {
    const saved = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    try {
      expect(() => createKpiHistoryServer()).toThrow(/set DATABASE_URL/);
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
  });
});

// Last: it leaves the sources changed and a failed run behind.
describe('a failed all-tenant run', () => {
  it('throws INTERNAL_ERROR naming the run (never { status: "failed" } as data), from fillAll and backfill', async () => {
    // Every fill must rewrite a row another session holds: with a 300 ms statement timeout it fails.
    await db.sql`update kpi.avi_reports set aiv_pct = (aiv_pct + 3) % 100`;
    const impatient = connect(db.url, { max: 1, connection: { statement_timeout: 300 } });
    const blocker = connect(db.url, { max: 1 });
    const timedOut = createKpiHistoryServer({ sql: impatient });
    try {
      await blocker.begin(async (tx) => {
        await tx`select 1 from kpi.kpi_history for update`;
        for (const call of [() => timedOut.fillAllKpiHistory(), () => timedOut.backfillKpiHistory()]) {
          const error = await failure(call());
          expect(error).toMatchObject({ code: 'INTERNAL_ERROR' });
          expect(error.message).toMatch(/^the run failed and changed nothing; see run \d+ in kpi\.kpi_runs$/);
          expect(error.details).toContain('57014');
          const runId = Number(/run (\d+)/.exec(error.message)![1]);
          const [run] = await db.sql`select status, total_count from kpi.kpi_runs where id = ${runId}`;
          expect(run).toEqual({ status: 'failed', total_count: null });
        }
      });
    } finally {
      await impatient.end();
      await blocker.end();
    }
  });
});
