// Plans that must not depend on what the statistics knew when a session started, and the small
// functions every row calls, which must be planned into their callers. A long backfill
// writes the whole history in one transaction, batch after batch, in one session; statistics
// cannot see those rows, so each batch must be planned with the history's size at that moment —
// a plan made once while the history was empty probes it by sequential scans, and every later
// batch then reads all the rows written so far for each row it writes. The plans are read from
// auto_explain, sent to this connection as notices.
import type { TransactionSql } from 'postgres';
import { describe, expect, it } from 'vitest';
import { connect, useTestDatabase } from '../helpers/database.js';
import { insertGeneratedTenants } from '../fixtures/sources.js';

const db = useTestDatabase();

describe('a backfill in batches, in one transaction', () => {
  it('plans each batch with the history written so far: the history is probed by its index, never scanned', async () => {
    // The history empty and known to be empty, as on a new installation or after a truncate.
    await db.sql`vacuum analyze kpi.kpi_history`;
    const plans = await plansInRolledBackTransaction(async (tx, explained) => {
      await insertGeneratedTenants(tx, 300, 20);
      const run = (await tx`select kpi.start_kpi_run('backfill', null, null, null) as run`)[0]!.run as string; // a bigint, as text
      const first = (await tx`select kpi.backfill_batch(${run}, null, 150, null, null) as b`)[0]!.b as { next_tenant: string };
      expect(first.next_tenant).not.toBeNull();
      await explained(() => tx`select kpi.backfill_batch(${run}, ${first.next_tenant}, 150, null, null)`);
      expect(Number((await tx`select count(*) from kpi.kpi_history`)[0]!.count)).toBe(300 * 20);
    });
    // The second batch's write probed the 3,000 rows the first wrote, for each of its own 3,000.
    const write = plans.find((plan) => plan.includes('insert into kpi.kpi_history'));
    expect(write, plans.map((p) => p.split('\n')[1]).join('\n')).toBeDefined();
    expect(write).toMatch(/Index (Only )?Scan using kpi_history_pkey on kpi_history/);
    // Every read of the history in the batch is of the batch's own tenants: a scan of the history
    // (or its key) that does not name tenant_id reads other tenants' rows too.
    const untargeted = plans.flatMap((plan) =>
      plan
        .split('->')
        .filter((node) => /\bon kpi_history(_pkey)?\b/.test(node) && !/^\s*(Insert|Update|Delete) on/.test(node) && !node.includes('tenant_id'))
        .map((node) => `${plan.split('\n')[1]!.slice(0, 120)} … ${node.trim().split('\n')[0]}`),
    );
    expect(untargeted).toEqual([]);
  });

  it('asks whether a tenant has any AVI report by a probe of its own reports, never by hashing every tenant’s', async () => {
    const plans = await plansInRolledBackTransaction(async (tx, explained) => {
      await insertGeneratedTenants(tx, 300, 20);
      // Tenants without any report, first in id order: each is a NO_AVI error of the first batch.
      await tx`
        insert into kpi.tenants (id, slug, name)
        select ('00000000-0000-4000-a000-' || lpad(i::text, 12, '0'))::uuid, 'bare-' || i, 'Bare ' || i from generate_series(1, 5) i`;
      await tx`analyze kpi.tenants`;
      const run = (await tx`select kpi.start_kpi_run('backfill', null, null, null) as run`)[0]!.run as string;
      const batch = (await explained(() => tx`select kpi.backfill_batch(${run}, null, 100, null, null) as b`))[0]!.b as {
        errors: { code: string }[];
      };
      expect(batch.errors.map((e) => e.code)).toEqual(Array(5).fill('NO_AVI'));
    });
    // Choosing the batch's weeks: how the planner reads the batch's own reports depends on the
    // table's size (a hash join over all of them, here, is cheaper than 100 range scans), but whether
    // a tenant has any report at all is a probe per tenant, never a hashed subplan over every
    // tenant's reports, built again in each batch (at 20,000 tenants: 1,019,400 reports read per
    // batch of 1,000).
    const choosing = plans.filter((plan) => plan.includes('with tenants as'));
    expect(choosing).toHaveLength(1);
    expect(choosing[0]).not.toMatch(/hashed SubPlan/);
  });
});

/**
 * Runs `body` in a transaction of its own session that is rolled back (nothing kept), and returns
 * the plans of every statement run inside `explained(…)`, nested ones too (auto_explain's notices).
 */
async function plansInRolledBackTransaction(
  body: (tx: TransactionSql, explained: <T>(run: () => Promise<T>) => Promise<T>) => Promise<void>,
): Promise<string[]> {
  const plans: string[] = [];
  const session = connect(db.url, { max: 1, onnotice: (notice) => void plans.push(notice.message ?? '') });
  try {
    await session
      .begin(async (tx) => {
        await tx`load 'auto_explain'`;
        await tx`set local auto_explain.log_nested_statements = on`;
        await tx`set local auto_explain.log_level = notice`;
        const explained = async <T>(run: () => Promise<T>): Promise<T> => {
          await tx`set local auto_explain.log_min_duration = 0`;
          const result = await run();
          await tx`set local auto_explain.log_min_duration = -1`;
          return result;
        };
        await body(tx, explained);
        throw new RollbackSignal(); // nothing kept
      })
      .catch((error) => {
        if (!(error instanceof RollbackSignal)) throw error;
      });
  } finally {
    await session.end();
  }
  return plans;
}

class RollbackSignal extends Error {}

describe('the small SQL functions of the fill and the feed', () => {
  // Each is called once or more per row; inlined, it is an expression of the calling statement, not
  // a function call (about 3 µs each). PostgreSQL inlines a one-statement SQL function without a SET
  // clause, unless it is declared immutable while its body is not (then it is silently called).
  const calls: [name: string, query: string][] = [
    ['kpi.week_end', 'select kpi.week_end(h.as_of) from kpi.kpi_history h'],
    ['kpi.hrp_pct', 'select kpi.hrp_pct(c.hrp) from kpi.clarity_reports c'],
    ['kpi.hrp_is_invalid', 'select kpi.hrp_is_invalid(c.hrp) from kpi.clarity_reports c'],
    ['kpi.source_horizon', 'select kpi.source_horizon(t.source_retention_days, t.sources_purged_before, t.sources_purged_before) from kpi.tenants t'],
    ['kpi.anomaly_ruled_out', 'select kpi.anomaly_ruled_out(h.aiv_pct, h.ati_pct, h.crs_pct, h.hrp_pct, h.vli_integrity_pct) from kpi.kpi_history h'],
    ['kpi.no_avi_error', 'select kpi.no_avi_error(t.id, t.slug) from kpi.tenants t'],
    ['kpi.history_change_row', 'select kpi.history_change_row(h) from kpi.kpi_history h'],
    ['kpi_api.history_change_data', 'select kpi_api.history_change_data(c.history_row) from kpi.kpi_changes c'],
  ];
  for (const [name, query] of calls) {
    it(`${name} is inlined into the statement that calls it`, async () => {
      const plan = (await db.sql.unsafe(`explain (verbose, costs off) ${query}`)).map((row) => row['QUERY PLAN'] as string).join('\n');
      expect(plan).toContain('Output:');
      expect(plan).not.toContain(name.split('.')[1]);
    });
  }
});
