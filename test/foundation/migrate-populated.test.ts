// The migrations after the baseline run down and up on a database that holds data: every row
// survives both ways (their down sections reverse table changes only), and after `up` and the
// definitions the fill carries on as before.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { dbmate, migrate, projectRoot } from '../helpers/dbmate.js';
import { readdirSync } from 'node:fs';

const db = useTestDatabase();
const BASELINE = '20261201000900';
const AFTER_BASELINE = readdirSync(`${projectRoot}db/migrations`)
  .map((file) => file.slice(0, 14))
  .filter((version) => version > BASELINE)
  .sort()
  .reverse();

const snapshot = async () => ({
  tenants: await db.sql`select id, slug, name, plan from kpi.tenants order by id`,
  avi: await db.sql`select tenant_id, week_start, aiv_pct from kpi.avi_reports order by tenant_id, week_start`,
  vli: await db.sql`select tenant_id, audited_at, integrity_pct from kpi.vli_audits order by tenant_id, audited_at`,
  clarity: await db.sql`select tenant_id, measured_at, metrics from kpi.clarity_reports order by tenant_id, measured_at`,
  history: await db.sql`select tenant_id, as_of::text, aiv_pct, vli_integrity_pct, hrp_pct, updated_at, revision from kpi.kpi_history order by tenant_id, as_of`,
  anomalies: await db.sql`select tenant_id, as_of::text, kpi, value, score from kpi.kpi_anomalies order by 1, 2, 3`,
  custom: await db.sql`select tenant_id, as_of, kpi_values from kpi.custom_kpi_weeks order by 1, 2`,
});
const applied = async () => (await db.sql`select version from public.schema_migrations order by version`).map((r) => r.version as string);

beforeAll(async () => {
  const seeded = spawnSync('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', 'db/seed/demo.sql', '-c', 'select kpi.backfill_kpi_history()'], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  expect(seeded.status, seeded.stderr).toBe(0);
  await db.sql`
    insert into kpi.custom_kpis (tenant_id, key, label, source, path, aggregate)
    values ('00000000-0000-4000-a000-00000000ac01', 'tokens', 'Tokens sampled', 'clarity', '{tokens_sampled}', 'max')`;
  await db.sql`select kpi.fill_all_kpi_history()`;
});
afterAll(async () => {
  await migrate(db.url);
});

describe('the migrations after the baseline, on a populated database', () => {
  it('roll back (down) and forward (up) keeping every row; the fill then writes nothing new', async () => {
    expect(AFTER_BASELINE.length).toBeGreaterThan(0);
    const before = await snapshot();
    expect(before.history.length).toBeGreaterThan(10);
    expect(before.anomalies).toHaveLength(2); // hooli's last week
    expect(before.custom.length).toBeGreaterThan(0);
    for (const version of AFTER_BASELINE) {
      expect((await applied()).at(-1)).toBe(version);
      dbmate(db.url, '--no-dump-schema', 'rollback');
    }
    expect((await applied()).at(-1)).toBe(BASELINE);
    expect(await snapshot()).toEqual(before);

    await migrate(db.url);
    expect(await applied()).toEqual(expect.arrayContaining(AFTER_BASELINE));
    expect(await snapshot()).toEqual(before);
    expect((await db.sql`select kpi.fill_all_kpi_history(full => true) as r`)[0]!.r).toMatchObject({ status: 'partial', rows_written: 0 });
    expect(await snapshot()).toEqual(before);
  });
});
