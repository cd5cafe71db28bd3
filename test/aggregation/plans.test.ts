// Plans that must not depend on what the statistics knew when a session started. A long backfill
// writes the whole history in one transaction, batch after batch, in one session; statistics
// cannot see those rows, so each batch must be planned with the history's size at that moment —
// a plan made once while the history was empty probes it by sequential scans, and every later
// batch then reads all the rows written so far for each row it writes. The plans are read from
// auto_explain, sent to this connection as notices.
import { describe, expect, it } from 'vitest';
import { connect, useTestDatabase } from '../helpers/database.js';
import { insertGeneratedTenants } from '../fixtures/sources.js';

const db = useTestDatabase();

describe('a backfill in batches, in one transaction', () => {
  it('plans each batch with the history written so far: the history is probed by its index, never scanned', async () => {
    await insertGeneratedTenants(db.sql, 300, 20);
    // The history empty and known to be empty, as on a new installation or after a truncate.
    await db.sql`vacuum analyze kpi.kpi_history`;
    const plans: string[] = [];
    const session = connect(db.url, { max: 1, onnotice: (notice) => void plans.push(notice.message ?? '') });
    try {
      await session.begin(async (tx) => {
        const run = (await tx`select kpi.start_kpi_run('backfill', null, null, null) as run`)[0]!.run as string; // a bigint, as text
        const first = (await tx`select kpi.backfill_batch(${run}, null, 150, null, null) as b`)[0]!.b as { next_tenant: string };
        expect(first.next_tenant).not.toBeNull();
        await tx`load 'auto_explain'`;
        await tx`set local auto_explain.log_min_duration = 0`;
        await tx`set local auto_explain.log_nested_statements = on`;
        await tx`set local auto_explain.log_level = notice`;
        await tx`select kpi.backfill_batch(${run}, ${first.next_tenant}, 150, null, null)`;
        await tx`set local auto_explain.log_min_duration = -1`;
        expect(Number((await tx`select count(*) from kpi.kpi_history`)[0]!.count)).toBe(300 * 20);
        throw new RollbackSignal(); // nothing kept

      }).catch((error) => {
        if (!(error instanceof RollbackSignal)) throw error;
      });
    } finally {
      await session.end();
    }
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
});

class RollbackSignal extends Error {}
