// Ready to distribute by tenant (Citus), checked against the live catalog so that a migration that
// breaks a rule fails here: every kpi table is placed (kpi.table_distribution); a distributed
// table has its distribution column in its primary key, in every unique constraint and index, and
// in every foreign key to another distributed table; nothing points from a reference or local
// table into a distributed one; and the fill's SQL reaches every distributed table through its
// tenant. See docs/scale-out.md.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';

const db = useTestDatabase();

interface Placement {
  table_name: string;
  placement: 'distributed' | 'reference' | 'local';
  distribution_column: string | null;
  colocate_with: string | null;
}
const placements = async () => db.sql<Placement[]>`select table_name, placement, distribution_column, colocate_with from kpi.table_distribution`;

describe('kpi.table_distribution', () => {
  it('places every table of the kpi schema, and only those', async () => {
    const tables = await db.sql<{ name: string }[]>`
      select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'kpi' and c.relkind in ('r', 'p') order by 1`;
    expect((await placements()).map((p) => p.table_name).sort()).toEqual(tables.map((t) => t.name));
  });

  it('co-locates every distributed table with kpi.tenants, distributed by its tenant column', async () => {
    for (const p of (await placements()).filter((p) => p.placement === 'distributed')) {
      if (p.table_name === 'tenants') {
        expect(p).toMatchObject({ distribution_column: 'id', colocate_with: null });
      } else {
        expect(p, p.table_name).toMatchObject({ distribution_column: 'tenant_id', colocate_with: 'tenants' });
      }
    }
  });
});

describe('keys of distributed tables', () => {
  it('the distribution column is in the primary key and in every unique constraint and unique index', async () => {
    const offending = await db.sql<{ table_name: string; index: string }[]>`
      select d.table_name, i.indexrelid::regclass::text as index
      from kpi.table_distribution d
      join pg_index i on i.indrelid = ('kpi.' || d.table_name)::regclass
      join pg_attribute a on a.attrelid = i.indrelid and a.attname = d.distribution_column
      where d.placement = 'distributed' and (i.indisunique or i.indisprimary)
        and not (a.attnum = any (i.indkey::int2[]))`;
    expect(offending).toEqual([]);
    const withoutPrimaryKey = await db.sql`
      select d.table_name from kpi.table_distribution d
      where d.placement = 'distributed'
        and not exists (select from pg_index i where i.indrelid = ('kpi.' || d.table_name)::regclass and i.indisprimary)`;
    expect(withoutPrimaryKey).toEqual([]);
  });

  it('every foreign key between distributed tables pairs their distribution columns; none points into one from elsewhere', async () => {
    const keys = await db.sql<
      { name: string; from_table: string; to_table: string; from_columns: string[]; to_columns: string[] }[]
    >`
      select con.conname as name, f.relname as from_table, t.relname as to_table,
             array(select attname from unnest(con.conkey) with ordinality k(n, o) join pg_attribute on attrelid = con.conrelid and attnum = k.n order by o) as from_columns,
             array(select attname from unnest(con.confkey) with ordinality k(n, o) join pg_attribute on attrelid = con.confrelid and attnum = k.n order by o) as to_columns
      from pg_constraint con
      join pg_class f on f.oid = con.conrelid join pg_namespace fn on fn.oid = f.relnamespace
      join pg_class t on t.oid = con.confrelid
      where con.contype = 'f' and fn.nspname = 'kpi'`;
    expect(keys.length).toBeGreaterThanOrEqual(5);
    const placement = new Map((await placements()).map((p) => [p.table_name, p]));
    for (const key of keys) {
      const from = placement.get(key.from_table)!;
      const to = placement.get(key.to_table)!;
      if (to.placement === 'distributed') {
        expect(from.placement, `${key.name}: a ${from.placement} table may not refer to a distributed one`).toBe('distributed');
        const position = key.to_columns.indexOf(to.distribution_column!);
        expect(position, `${key.name} must include ${to.distribution_column}`).toBeGreaterThanOrEqual(0);
        expect(key.from_columns[position], `${key.name} must pair the distribution columns`).toBe(from.distribution_column);
      } else if (from.placement === 'reference') {
        expect(to.placement, `${key.name}: a reference table may refer only to reference tables`).toBe('reference');
      }
    }
  });
});

describe('the fill reaches every distributed table through its tenant (co-located joins)', () => {
  // Static: in each function that reads or writes tenant data, every reference to a distributed
  // table comes with a condition on its distribution column.
  const functions = [
    'kpi.fill_targets(text, uuid[], date, date)',
    'kpi.write_weeks(uuid[], date[])',
    'kpi.write_custom_kpi_values(uuid[], date[])',
    'kpi.delete_expired_sources(text, timestamp with time zone, uuid, integer)',
    'kpi.rescore_anomalies(uuid[], date[], text)',
  ];

  it.each(functions)('%s', async (fn) => {
    const [{ source }] = await db.sql<[{ source: string }]>`select pg_get_functiondef(${fn}::regprocedure) as source`;
    const distributed = (await placements()).filter((p) => p.placement === 'distributed');
    let references = 0;
    // A source table named by a format() placeholder (kpi.%1$I, the retention's one delete body)
    // is one of the distributed source tables, keyed by tenant_id.
    const tables = [...distributed, { table_name: '%\\d\\$I', distribution_column: 'tenant_id' }];
    for (const table of tables) {
      for (const match of source.matchAll(new RegExp(`kpi\\.${table.table_name}\\s+(?:as\\s+)?([a-z])\\b`, 'g'))) {
        // An INSERT's target is no join: each row goes to the node of its own tenant.
        if (/insert\s+into\s+$/i.test(source.slice(0, match.index))) continue;
        const alias = match[1]!;
        references++;
        const column = `${alias}\\.${table.distribution_column}`;
        // alias.column = …, … = alias.column, or (alias.column, …) in (…)
        expect(source, `${fn}: kpi.${table.table_name} ${alias} without a condition on ${alias}.${table.distribution_column}`).toMatch(
          new RegExp(`${column}\\s*(=|>=)|=\\s*${column}\\b|\\(${column},`),
        );
      }
    }
    expect(references).toBeGreaterThanOrEqual(3);
  });
});

describe('docs/scale-out.md', () => {
  const doc = readFileSync(`${projectRoot}docs/scale-out.md`, 'utf8');

  it('gives the commands kpi.citus_commands() generates, in that order', async () => {
    const commands = (await db.sql<{ command: string }[]>`select kpi.citus_commands() as command`).map((r) => r.command);
    expect(commands[0]).toMatch(/^select create_reference_table\(/);
    let at = -1;
    for (const command of commands) {
      const found = doc.indexOf(command);
      expect(found, command).toBeGreaterThan(at);
      at = found;
    }
  });

  it.each(['advisory lock', 'pg_cron', 'identity', 'coordinator', '10 million'])('says what becomes of %s', (topic) => {
    expect(doc.toLowerCase()).toContain(topic);
  });
});
