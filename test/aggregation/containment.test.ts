// One tenant's failure is that tenant's alone: at 10,000 tenants, a tenant whose write raises (an
// error injected for it alone, as a bad value or a broken definition would) is named in the run's
// errors with its code, every other tenant is written in the same run, the run is partial — and
// the next run, once the cause is gone, writes the tenant it missed.
import { beforeEach, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { insertGeneratedTenants } from '../fixtures/sources.js';

const db = useTestDatabase();
const TENANTS = 10_000;
/** The 4,321st generated tenant (fixtures/sources.ts names them by number). */
const BAD = '00000000-0000-4000-b000-0000000010e1';

interface FillResult {
  status: string;
  ok: number;
  total: number;
  rows_written: number;
  run_id: number;
  errors: { tenant_id: string }[];
}
const fillAll = async (full: boolean) =>
  (await db.sql<[{ result: FillResult }]>`select kpi.fill_all_kpi_history(full => ${full}) as result`)[0].result;

beforeEach(async () => {
  await db.sql`drop trigger if exists inject_failure on kpi.kpi_history`;
  await db.sql`truncate kpi.tenants, kpi.kpi_runs cascade`;
  await insertGeneratedTenants(db.sql, TENANTS, 2);
  await db.sql`truncate kpi.source_changes`;
  // The injected fault: any write of the bad tenant's history raises.
  await db.sql.unsafe(`
    create or replace function public.inject_failure() returns trigger language plpgsql as $$
    begin
      if new.tenant_id = '${BAD}' then
        raise exception 'injected failure for one tenant' using errcode = 'XX001';
      end if;
      return new;
    end $$;
    create trigger inject_failure before insert or update on kpi.kpi_history
      for each row execute function public.inject_failure();`);
});

describe('a tenant whose write raises, among 10,000', () => {
  it('is named with its code; the other 9,999 are written in the same run, which is partial', async () => {
    const result = await fillAll(true);
    expect(result).toMatchObject({ status: 'partial', ok: TENANTS - 1, total: TENANTS, rows_written: TENANTS - 1 });
    expect(result.errors).toEqual([
      expect.objectContaining({ tenant_id: BAD, tenant: 'gen-4321', code: 'INTERNAL_ERROR', sqlstate: 'XX001', message: expect.stringContaining('injected failure') }),
    ]);
    const [{ written, bad }] = await db.sql<[{ written: number; bad: number }]>`
      select count(*)::int as written, count(*) filter (where tenant_id = ${BAD})::int as bad from kpi.kpi_history`;
    expect({ written, bad }).toEqual({ written: TENANTS - 1, bad: 0 });
    const [run] = await db.sql`select status, ok_count, total_count from kpi.kpi_runs where id = ${result.run_id}`;
    expect(run).toEqual({ status: 'partial', ok_count: TENANTS - 1, total_count: TENANTS });
  }, 120_000);

  it('the daily incremental run keeps it pending; once the cause is gone, the next run writes it', async () => {
    await fillAll(true);
    // A change for every tenant's latest week: the incremental run writes them all but the bad one.
    await db.sql`update kpi.avi_reports set aiv_pct = (aiv_pct + 1)::numeric % 100 where week_start = '2024-03-25'`;
    const incremental = await fillAll(false);
    expect(incremental).toMatchObject({ status: 'partial', rows_written: TENANTS - 1 });
    expect(incremental.errors.map((e) => e.tenant_id)).toEqual([BAD]);

    await db.sql`drop trigger inject_failure on kpi.kpi_history`;
    const healed = await fillAll(false);
    expect(healed).toMatchObject({ status: 'ok', errors: [] });
    expect(await db.sql`select as_of::text from kpi.kpi_history where tenant_id = ${BAD}`).toEqual([{ as_of: '2024-03-25' }]);
  }, 120_000);
});
