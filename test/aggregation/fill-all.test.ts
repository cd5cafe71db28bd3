// The full all-tenant fill (every tenant's latest week; the daily incremental run is in
// change-tracking.test.ts): its result, idempotency over ten runs, exactly-the-changed-tenant
// updates, the run log, and a plan that probes the indexes instead of scanning the sources.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, useTestDatabase, type Sql } from '../helpers/database.js';
import { connectAsAuthenticator, postgrestRequest } from '../helpers/postgrest.js';
import { historySnapshot, insertAvi, insertClarity, insertGeneratedTenants, insertTenant } from '../fixtures/sources.js';
import { INITECH } from '../fixtures/tenants.js';

const db = useTestDatabase();
const TENANTS = 300;

type FillResult = {
  ok: number;
  total: number;
  rows_written: number;
  errors: { tenant_id: string; code: string; message: string }[];
  warnings: { tenant_id: string; code: string }[];
  status: string;
  run_id: number;
};

async function fillAll(sql: Sql = db.sql): Promise<FillResult> {
  const [{ result }] = await sql<[{ result: FillResult }]>`select kpi.fill_all_kpi_history(full => true) as result`;
  return result;
}

// Every test starts from the same sources and an empty history, whatever ran before it.
beforeEach(async () => {
  await db.sql`truncate kpi.tenants, kpi.kpi_runs cascade`;
  await insertGeneratedTenants(db.sql, TENANTS, 6);
  await insertTenant(db.sql, INITECH, 'initech', 'Initech'); // no AVI report
  // As if every change so far had been applied: the full run then writes each tenant's latest week.
  await db.sql`truncate kpi.source_changes`;
});

describe('kpi.fill_all_kpi_history', () => {
  it('writes every tenant with a report and lists the others as NO_AVI errors', async () => {
    const result = await fillAll();
    // The change records were dropped on purpose (beforeAll): every row is one they did not cover.
    expect(result).toMatchObject({ ok: TENANTS, total: TENANTS + 1, rows_written: TENANTS, status: 'partial', corrected: TENANTS });
    expect(result.warnings.filter((w) => w.code !== 'UNTRACKED_CHANGE')).toEqual([]);
    expect(result.errors).toEqual([
      { tenant_id: INITECH, tenant: 'initech', code: 'NO_AVI', message: 'tenant initech has no AVI report', hint: 'Insert a row into kpi.avi_reports for this tenant first.' },
    ]);
    const [{ rows, tenants, weeks }] = await db.sql<[{ rows: number; tenants: number; weeks: string[] }]>`
      select count(*)::int as rows, count(distinct tenant_id)::int as tenants, array_agg(distinct as_of::text) as weeks
      from kpi.kpi_history`;
    expect({ rows, tenants, weeks }).toEqual({ rows: TENANTS, tenants: TENANTS, weeks: ['2024-03-25'] });
  });

  it('is idempotent: ten more runs write nothing and leave the table identical, updated_at included', async () => {
    await fillAll();
    const before = await historySnapshot(db.sql);
    for (let i = 0; i < 10; i++) {
      expect((await fillAll()).rows_written).toBe(0);
    }
    expect(await historySnapshot(db.sql)).toEqual(before);
  });

  it('a changed source row updates exactly that tenant’s row, and its updated_at', async () => {
    await fillAll();
    const before = await historySnapshot(db.sql);
    const target = before[42]!;
    await db.sql`update kpi.avi_reports set aiv_pct = 99.99 where tenant_id = ${target.tenant_id} and week_start = ${target.as_of}`;
    expect((await fillAll()).rows_written).toBe(1);
    const after = await historySnapshot(db.sql);
    const changed = after.filter((row, i) => JSON.stringify(row) !== JSON.stringify(before[i]));
    expect(changed).toHaveLength(1);
    expect(changed[0]).toMatchObject({ tenant_id: target.tenant_id, aiv_pct: '99.99', created_at: target.created_at });
    expect(changed[0]!.updated_at.getTime()).toBeGreaterThan(target.updated_at.getTime());
  });

  it('a new week adds a row and keeps the old one (one row per tenant per week)', async () => {
    await fillAll();
    const [row] = await historySnapshot(db.sql);
    await insertAvi(db.sql, row!.tenant_id, { weekStart: '2024-04-01' });
    expect((await fillAll()).rows_written).toBe(1);
    const weeks = await db.sql`select as_of::text from kpi.kpi_history where tenant_id = ${row!.tenant_id} order by as_of`;
    expect(weeks.map((w) => w.as_of)).toEqual(['2024-03-25', '2024-04-01']);
  });

  it('an invalid HRP is a warning: the tenant still counts as ok', async () => {
    await fillAll();
    const [row] = await historySnapshot(db.sql);
    await insertClarity(db.sql, row!.tenant_id, '2024-03-26T00:00:00Z', { hrp: 'n/a' });
    const result = await fillAll();
    expect(result.ok).toBe(TENANTS);
    expect(result.warnings).toMatchObject([{ tenant_id: row!.tenant_id, code: 'INVALID_CLARITY' }]);
  });
});

describe('run log', () => {
  let authenticator: Sql;
  beforeAll(() => {
    authenticator = connectAsAuthenticator(db.urlAs('authenticator'));
  });
  afterAll(() => authenticator.end());

  it('records each run: kind, trigger, status, counts, errors, duration', async () => {
    await fillAll();
    const result = await fillAll();
    const [run] = await db.sql`select * from kpi.kpi_runs where id = ${result.run_id}`;
    expect(run).toMatchObject({
      kind: 'fill_all',
      tenant_id: null,
      trigger: 'sql',
      db_user: 'postgres',
      status: 'partial',
      ok_count: TENANTS,
      total_count: TENANTS + 1,
      rows_written: 0,
      errors: [{ tenant_id: INITECH, code: 'NO_AVI' }],
    });
    expect(Number(run!.duration_ms)).toBeGreaterThanOrEqual(0);
    expect(run!.finished_at.getTime()).toBeGreaterThanOrEqual(run!.started_at.getTime());
  });

  it('names the application of a SQL session', async () => {
    const app = connect(db.url, { connection: { application_name: 'nightly-report' } });
    try {
      const result = await fillAll(app);
      const [run] = await db.sql`select trigger, application_name from kpi.kpi_runs where id = ${result.run_id}`;
      expect(run).toEqual({ trigger: 'sql', application_name: 'nightly-report' });
    } finally {
      await app.end();
    }
  });

  it('tells a request through PostgREST apart (trigger api)', async () => {
    // The API roles may not call kpi functions; what matters here is what the run log sees of a
    // request, so the call is made by the owner inside a PostgREST-shaped transaction.
    const response = await postgrestRequest(db.sql, { method: 'POST', path: '/rpc/kpi_history_cron' }, async (tx) => {
      await tx`reset role`;
      const [{ result }] = await tx<[{ result: FillResult }]>`select kpi.fill_all_kpi_history() as result`;
      return result;
    });
    const runId = (response.body as FillResult).run_id;
    const [run] = await db.sql`select trigger from kpi.kpi_runs where id = ${runId}`;
    expect(run).toEqual({ trigger: 'api' });
  });

  it('single-tenant fills and backfills are logged with their tenant and range', async () => {
    await fillAll();
    const [row] = await historySnapshot(db.sql);
    const [{ fill }] = await db.sql<[{ fill: { run_id: number } }]>`select kpi.fill_kpi_history(${row!.tenant_id}) as fill`;
    const [{ back }] = await db.sql<[{ back: { run_id: number } }]>`
      select kpi.backfill_kpi_history(${row!.tenant_id}, '2024-03-01', '2024-03-31') as back`;
    const runs = await db.sql`
      select kind, tenant_id, range_from::text, range_to::text, status, ok_count, total_count
      from kpi.kpi_runs where id in (${fill.run_id}, ${back.run_id}) order by id`;
    expect(runs).toEqual([
      { kind: 'fill', tenant_id: row!.tenant_id, range_from: null, range_to: null, status: 'ok', ok_count: 1, total_count: 1 },
      { kind: 'backfill', tenant_id: row!.tenant_id, range_from: '2024-03-01', range_to: '2024-03-31', status: 'ok', ok_count: 1, total_count: 1 },
    ]);
  });
});

describe('plan', () => {
  it('probes the latest-row indexes of every source table, with no scan of a whole source table', async () => {
    const plans: string[] = [];
    const session = connect(db.url, {
      max: 1,
      onnotice: (notice) => plans.push(notice.message ?? ''),
    });
    try {
      await session.begin(async (tx) => {
        await tx`load 'auto_explain'`;
        await tx`set local auto_explain.log_min_duration = 0`;
        await tx`set local auto_explain.log_nested_statements = on`;
        await tx`set local auto_explain.log_level = notice`;
        await tx`set local client_min_messages = notice`;
        await tx`select kpi.fill_all_kpi_history(full => true)`;
      });
    } finally {
      await session.end();
    }
    // The full run's second statement: every tenant's latest week.
    const upsert = plans.filter((plan) => plan.includes('Insert on kpi_history')).at(-1);
    expect(upsert, plans.join('\n---\n')).toBeDefined();
    expect(upsert).toContain('avi_reports_pkey');
    expect(upsert).toContain('vli_audits_pkey');
    expect(upsert).toContain('clarity_reports_pkey');
    expect(upsert).not.toMatch(/Seq Scan on (avi_reports|vli_audits|clarity_reports)/);
  });
});
