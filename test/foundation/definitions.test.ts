// One home per definition: every function, procedure, view, trigger and policy of the migrated
// database has exactly one current definition among db/definitions/*.sql, and no migration after
// the baseline defines one; applying the definitions again changes nothing and, unchanged, is
// skipped without taking a lock.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { applyDefinitions, definitionFiles } from '../../scripts/definitions.js';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';

const db = useTestDatabase();
const BASELINE = '20261201000900';
const sources = definitionFiles()
  .map((f) => f.sql)
  .join('\n')
  // Comments name objects too; only statements count.
  .replace(/--[^\n]*/g, '');

function occurrences(pattern: RegExp): number {
  return [...sources.matchAll(pattern)].length;
}
const escape = (name: string) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('db/definitions', () => {
  it('defines every function, procedure and view of kpi, kpi_api and api exactly once', async () => {
    const objects = await db.sql<{ schema: string; name: string; kind: string }[]>`
      select n.nspname as schema, p.proname as name, case p.prokind when 'p' then 'procedure' else 'function' end as kind
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('kpi', 'kpi_api', 'api')
      union all
      select n.nspname, c.relname, 'view' from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname in ('kpi', 'kpi_api', 'api') and c.relkind = 'v'
      order by 1, 2`;
    expect(objects.length).toBeGreaterThan(60);
    const counts = objects.map((o) => ({
      object: `${o.kind} ${o.schema}.${o.name}`,
      definitions: occurrences(new RegExp(`create\\s+(or\\s+replace\\s+)?${o.kind}\\s+${escape(`${o.schema}.${o.name}`)}\\s*[(\\s]`, 'gi')),
    }));
    expect(counts.filter((c) => c.definitions !== 1)).toEqual([]);
  });

  it('defines every trigger and policy on kpi tables exactly once', async () => {
    const triggers = await db.sql<{ name: string; table: string }[]>`
      select t.tgname as name, c.relname as table from pg_trigger t join pg_class c on c.oid = t.tgrelid
      where c.relnamespace = 'kpi'::regnamespace and not t.tgisinternal order by 2, 1`;
    expect(triggers.length).toBeGreaterThan(20);
    expect(
      triggers
        .map((t) => ({ trigger: `${t.table}.${t.name}`, definitions: occurrences(new RegExp(`create\\s+or\\s+replace\\s+trigger\\s+${t.name}\\s+[^;]*\\son\\s+kpi\\.${t.table}\\s`, 'gi')) }))
        .filter((t) => t.definitions !== 1),
    ).toEqual([]);
    const policies = await db.sql<{ name: string }[]>`
      select distinct polname as name from pg_policy p join pg_class c on c.oid = p.polrelid where c.relnamespace = 'kpi'::regnamespace`;
    expect(
      policies.map((p) => ({ policy: p.name, definitions: occurrences(new RegExp(`create\\s+policy\\s+"?${escape(p.name)}"?\\s`, 'gi')) })).filter((p) => p.definitions !== 1),
    ).toEqual([]);
  });

  it('no migration after the baseline defines a function, procedure, view, trigger or policy, nor grants', () => {
    const later = readdirSync(`${projectRoot}db/migrations`).filter((f) => f.slice(0, 14) > BASELINE);
    expect(later.length).toBeGreaterThan(0);
    for (const file of later) {
      const sql = readFileSync(`${projectRoot}db/migrations/${file}`, 'utf8').replace(/--[^\n]*/g, '');
      expect(sql, file).not.toMatch(/create\s+(or\s+replace\s+)?(function|procedure|view|trigger|policy)\s/i);
      expect(sql, file).not.toMatch(/^\s*grant\s/im);
    }
  });

  it('applying them again changes nothing; unchanged, they are skipped', async () => {
    const catalog = () => db.sql`
      select p.oid::regprocedure::text as name, md5(pg_get_functiondef(p.oid)) as body, p.proacl::text as acl
      from pg_proc p where p.pronamespace in ('kpi'::regnamespace, 'kpi_api'::regnamespace, 'api'::regnamespace) and p.prokind <> 'a'
      union all
      select c.oid::regclass::text, md5(pg_get_viewdef(c.oid)), c.relacl::text from pg_class c
      where c.relkind = 'v' and c.relnamespace in ('kpi'::regnamespace, 'api'::regnamespace)
      union all
      select polname || ' on ' || polrelid::regclass, md5(coalesce(pg_get_expr(polqual, polrelid), '') || coalesce(pg_get_expr(polwithcheck, polrelid), '')), polroles::text
      from pg_policy
      order by 1`;
    const before = await catalog();
    const forced = await applyDefinitions(db.url, { force: true });
    expect(forced.applied).toBe(true);
    expect(await catalog()).toEqual(before);
    const again = await applyDefinitions(db.url);
    expect(again).toMatchObject({ applied: false, checksum: forced.checksum });
  });

  it('are applied again after a migration, even when the files did not change', async () => {
    await applyDefinitions(db.url);
    await db.sql`update kpi.definitions_state set migration_version = '20000101000000'`;
    expect((await applyDefinitions(db.url)).applied).toBe(true);
  });
});
