// The tenant-key, retention, change-tracking, rollup, anomaly and change-feed migrations run up and down on a database that holds data:
// every row survives both ways, and the fill works on either side.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { useTestDatabase } from '../helpers/database.js';
import { dbmate, projectRoot } from '../helpers/dbmate.js';

const db = useTestDatabase();
const MIGRATIONS = ['20261201000900', '20261201000800', '20261201000700', '20261201000600', '20261201000500', '20261201000400', '20261201000300'];

const snapshot = async () => ({
  tenants: await db.sql`select id, slug, name from kpi.tenants order by id`,
  avi: await db.sql`select tenant_id, week_start, aiv_pct from kpi.avi_reports order by tenant_id, week_start`,
  vli: await db.sql`select tenant_id, audited_at, integrity_pct from kpi.vli_audits order by tenant_id, audited_at`,
  clarity: await db.sql`select tenant_id, measured_at, metrics from kpi.clarity_reports order by tenant_id, measured_at`,
  history: await db.sql`select tenant_id, as_of::text, aiv_pct, vli_integrity_pct, hrp_pct, updated_at from kpi.kpi_history order by tenant_id, as_of`,
});
const applied = async () => (await db.sql`select version from public.schema_migrations order by version`).map((r) => r.version as string);

beforeAll(() => {
  const seeded = spawnSync('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', 'db/seed/demo.sql', '-c', 'select kpi.backfill_kpi_history()'], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  expect(seeded.status, seeded.stderr).toBe(0);
});
afterAll(() => {
  dbmate(db.url, '--no-dump-schema', 'up');
});

describe('keys by tenant, source retention, change tracking, rollups, anomalies and the change feed, on a populated database', () => {
  it('roll back (down) and forward (up) keeping every row', async () => {
    const before = await snapshot();
    const anomalies = () => db.sql`select tenant_id, as_of::text, kpi, value, score from kpi.kpi_anomalies order by 1, 2, 3`;
    const anomaliesBefore = await anomalies();
    expect(anomaliesBefore).toHaveLength(2); // hooli's last week
    expect(before.history.length).toBeGreaterThan(10);
    for (const version of MIGRATIONS) {
      expect((await applied()).at(-1)).toBe(version);
      dbmate(db.url, '--no-dump-schema', 'rollback');
    }
    expect(await snapshot()).toEqual(before);
    // The old shape: a surrogate key on the history, slugs unique on the tenants table.
    expect(await db.sql`select conname from pg_constraint where conname in ('tenants_slug_key', 'kpi_history_tenant_as_of_key') order by 1`).toEqual([
      { conname: 'kpi_history_tenant_as_of_key' },
      { conname: 'tenants_slug_key' },
    ]);
    expect((await db.sql`select kpi.fill_all_kpi_history() as r`)[0]!.r).toMatchObject({ status: 'partial' });

    dbmate(db.url, '--no-dump-schema', 'up');
    expect(await applied()).toEqual(expect.arrayContaining(MIGRATIONS));
    expect(await snapshot()).toEqual(before);
    // Derived data comes back with the migration that derives it.
    expect(await anomalies()).toEqual(anomaliesBefore);
    expect(await db.sql`select slug from kpi.tenant_slugs order by slug`).toEqual(before.tenants.map((t) => ({ slug: t.slug })).sort((a, b) => a.slug.localeCompare(b.slug)));
    expect(await db.sql`select plan, count(*)::int as n from kpi.tenants group by plan`).toEqual([{ plan: 'enterprise', n: before.tenants.length }]);
    expect((await db.sql`select kpi.fill_all_kpi_history() as r`)[0]!.r).toMatchObject({ status: 'partial', rows_written: 0 });
    expect(await snapshot()).toEqual(before);
  });
});
