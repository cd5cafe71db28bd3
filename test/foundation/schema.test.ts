// The source tables refuse bad rows with a named constraint, and "latest row per tenant" is an
// index lookup on each of them.
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { ACME, UNKNOWN } from '../fixtures/tenants.js';
import { insertAvi, insertClarity, insertTenant, insertVli } from '../fixtures/sources.js';

const db = useTestDatabase();

beforeAll(async () => {
  await insertTenant(db.sql, ACME, 'acme', 'Acme Corp');
  await insertAvi(db.sql, ACME, { weekStart: '2024-01-01' });
});

/** Runs `insert` and returns the error's SQLSTATE and constraint name. */
async function rejection(insert: () => Promise<unknown>) {
  try {
    await insert();
  } catch (error) {
    const e = error as { code: string; constraint_name?: string };
    return { code: e.code, constraint: e.constraint_name };
  }
  throw new Error('the row was accepted');
}

describe('kpi.avi_reports', () => {
  it.each([
    ['aiv_pct', { aivPct: 140 }, 'avi_reports_aiv_pct_range'],
    ['ati_pct', { atiPct: -1 }, 'avi_reports_ati_pct_range'],
    ['crs_pct', { crsPct: 100.01 }, 'avi_reports_crs_pct_range'],
  ])('rejects %s outside 0–100', async (_column, values, constraint) => {
    expect(await rejection(() => insertAvi(db.sql, ACME, { weekStart: '2024-01-08', ...values }))).toEqual({
      code: '23514',
      constraint,
    });
  });

  it('accepts the bounds 0 and 100', async () => {
    await insertAvi(db.sql, ACME, { weekStart: '2024-01-15', aivPct: 0, atiPct: 100, crsPct: 0 });
    const [row] = await db.sql`select aiv_pct, ati_pct from kpi.avi_reports where week_start = '2024-01-15'`;
    expect(row).toEqual({ aiv_pct: '0.00', ati_pct: '100.00' });
  });

  it('rejects a week_start that is not a Monday', async () => {
    expect(await rejection(() => insertAvi(db.sql, ACME, { weekStart: '2024-01-09' }))).toEqual({
      code: '23514',
      constraint: 'avi_reports_week_start_is_monday',
    });
  });

  it('rejects a report for an unknown tenant', async () => {
    expect(await rejection(() => insertAvi(db.sql, UNKNOWN, { weekStart: '2024-01-08' }))).toEqual({
      code: '23503',
      constraint: 'avi_reports_tenant_id_fkey',
    });
  });

  it('rejects a second report for the same tenant and week', async () => {
    expect(await rejection(() => insertAvi(db.sql, ACME, { weekStart: '2024-01-01' }))).toEqual({
      code: '23505',
      constraint: 'avi_reports_pkey',
    });
  });

  it('rejects a missing elasticity', async () => {
    const result = await rejection(
      () => db.sql`insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct)
                   values (${ACME}, '2024-02-05', 1, 1, 1)`,
    );
    expect(result.code).toBe('23502');
  });
});

describe('kpi.vli_audits', () => {
  it('rejects integrity outside 0–100', async () => {
    expect(await rejection(() => insertVli(db.sql, ACME, '2024-01-03T10:00:00Z', 140))).toEqual({
      code: '23514',
      constraint: 'vli_audits_integrity_pct_range',
    });
  });

  it('rejects an audit of an unknown tenant', async () => {
    expect(await rejection(() => insertVli(db.sql, UNKNOWN, '2024-01-03T10:00:00Z', 90))).toEqual({
      code: '23503',
      constraint: 'vli_audits_tenant_id_fkey',
    });
  });
});

describe('kpi.clarity_reports', () => {
  it('rejects metrics that are not a JSON object', async () => {
    expect(await rejection(() => insertClarity(db.sql, ACME, '2024-01-03T10:00:00Z', [0.1]))).toEqual({
      code: '23514',
      constraint: 'clarity_reports_metrics_is_object',
    });
  });

  it('keeps a report whose hrp is out of range (the aggregation warns about it)', async () => {
    await insertClarity(db.sql, ACME, '2024-01-03T10:00:00Z', { hrp: 7 });
    const [{ count }] = await db.sql<[{ count: number }]>`select count(*)::int from kpi.clarity_reports where tenant_id = ${ACME}`;
    expect(count).toBe(1);
  });

  it('rejects a report of an unknown tenant', async () => {
    expect((await rejection(() => insertClarity(db.sql, UNKNOWN, '2024-01-03T10:00:00Z', { hrp: 0.1 }))).code).toBe(
      '23503',
    );
  });
});

describe('kpi.tenants', () => {
  it.each([
    ['an upper-case slug', 'Acme-2', 'tenants_slug_format'],
    ['a slug with a slash', 'a/b', 'tenants_slug_format'],
    ['a slug ending in a dash', 'acme-', 'tenants_slug_format'],
  ])('rejects %s', async (_what, slug, constraint) => {
    expect(await rejection(() => db.sql`insert into kpi.tenants (slug, name) values (${slug}, 'x')`)).toEqual({
      code: '23514',
      constraint,
    });
  });

  it('rejects a duplicate slug and a blank name', async () => {
    // Unique across tenants through kpi.tenant_slugs (a table keyed by tenant cannot check it).
    expect(await rejection(() => db.sql`insert into kpi.tenants (slug, name) values ('acme', 'Again')`)).toEqual({
      code: '23505',
      constraint: 'tenant_slugs_pkey',
    });
    expect(await rejection(() => db.sql`insert into kpi.tenants (slug, name) values ('blank', '  ')`)).toEqual({
      code: '23514',
      constraint: 'tenants_name_not_blank',
    });
  });

  it('gives new tenants a random uuid and a creation time', async () => {
    const [row] = await db.sql`insert into kpi.tenants (slug, name) values ('fresh', 'Fresh') returning id, created_at`;
    expect(row!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(row!.created_at).toBeInstanceOf(Date);
  });
});

describe('kpi.kpi_history', () => {
  const row = {
    tenant_id: ACME,
    as_of: '2024-01-01',
    aiv_pct: 1,
    ati_pct: 2,
    crs_pct: 3,
    elasticity_usd_per_point: 4,
    vli_integrity_pct: 100,
    vli_is_fallback: true,
    hrp_pct: null,
  };

  it('allows one row per tenant and week', async () => {
    await db.sql`insert into kpi.kpi_history ${db.sql(row)}`;
    expect(await rejection(() => db.sql`insert into kpi.kpi_history ${db.sql(row)}`)).toEqual({
      code: '23505',
      constraint: 'kpi_history_pkey',
    });
  });

  it.each([
    ['as_of on a Sunday', { as_of: '2024-01-07' }, 'kpi_history_as_of_is_monday'],
    ['hrp_pct above 100', { as_of: '2024-01-08', hrp_pct: 101 }, 'kpi_history_hrp_pct_range'],
    ['vli_integrity_pct below 0', { as_of: '2024-01-08', vli_integrity_pct: -5 }, 'kpi_history_vli_integrity_pct_range'],
  ])('rejects %s', async (_what, change, constraint) => {
    expect(await rejection(() => db.sql`insert into kpi.kpi_history ${db.sql({ ...row, ...change })}`)).toEqual({
      code: '23514',
      constraint,
    });
  });
});

describe('latest row per tenant is an index lookup', () => {
  // With few rows the planner would rightly prefer a sequential scan; forbid it to see which index
  // the query can use at all.
  async function plan(query: string): Promise<string> {
    return db.sql.begin(async (tx) => {
      await tx`set local enable_seqscan = off`;
      await tx`set local enable_bitmapscan = off`;
      const rows = await tx.unsafe(`explain (costs off) ${query}`);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
  }

  it.each([
    ['avi_reports', `select * from kpi.avi_reports where tenant_id = '${ACME}' order by week_start desc limit 1`, 'avi_reports_pkey'],
    ['vli_audits', `select integrity_pct from kpi.vli_audits where tenant_id = '${ACME}' and audited_at < '2024-01-08' order by audited_at desc limit 1`, 'vli_audits_pkey'],
    ['clarity_reports', `select metrics from kpi.clarity_reports where tenant_id = '${ACME}' and measured_at < '2024-01-08' order by measured_at desc limit 1`, 'clarity_reports_pkey'],
    ['kpi_history', `select * from kpi.kpi_history where tenant_id = '${ACME}' order by as_of desc limit 52`, 'kpi_history_pkey'],
  ])('%s', async (_table, query, index) => {
    const text = await plan(query);
    expect(text).toContain(index);
    expect(text).not.toMatch(/Sort/);
  });
});
