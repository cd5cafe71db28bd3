// What PostgREST v16.2 reads from its schema cache to plan a request: the exposed schema's
// functions (src/library/PostgREST/SchemaCache.hs `allFunctions`, SchemaCache/Routine.hs), its
// relations, and the functions returning a media type domain (`mediaHandlers`). Read afresh for
// every request: the tests change the schema, PostgREST would be told with NOTIFY pgrst.
import type { Sql } from '../database.js';

export interface RoutineParam {
  name: string;
  /** As PostgREST casts arguments to it (`ppTypeMaxLength`): the formatted type. */
  type: string;
  required: boolean;
}

export interface Routine {
  schema: string;
  name: string;
  params: RoutineParam[];
  volatile: boolean;
  returnsVoid: boolean;
  returnsSet: boolean;
  /** A composite (row) type: answered as an object, or an array of them when `returnsSet`. */
  returnsComposite: boolean;
  /** The media type when the function returns a domain named like one (`"text/csv"`). */
  returnsMediaType: string | null;
  /**
   * Its `SET name = value` clauses that PostgREST applies to the transaction too (PreQuery.hs):
   * only those `db-hoisted-tx-settings` allows (SchemaCache.hs: `setting ~ ANY(hoisted)`).
   */
  settings: [string, string][];
  /** Its `SET default_transaction_isolation`: the request's transaction runs at that level (MainTx.hs). */
  isolationLevel: string | null;
}

const MEDIA_TYPE_NAME = /^[A-Za-z0-9.-]+\/[A-Za-z0-9.+-]+$/;

export async function routinesNamed(sql: Sql, schema: string, name: string, hoisted: string[]): Promise<Routine[]> {
  const rows = await sql<
    {
      arg_names: string[] | null;
      arg_types: string[];
      arg_modes: string[] | null;
      defaults: number;
      volatility: string;
      returns_void: boolean;
      returns_set: boolean;
      returns_composite: boolean;
      return_type_name: string;
      return_is_domain: boolean;
      config: string[] | null;
    }[]
  >`
    select p.proargnames as arg_names,
           array(select pg_catalog.format_type(t, null) from unnest(p.proargtypes) t) as arg_types,
           p.proargmodes::text[] as arg_modes,
           p.pronargdefaults::int as defaults,
           p.provolatile::text as volatility,
           p.prorettype = 'void'::regtype as returns_void,
           p.proretset as returns_set,
           (rt.typrelid <> 0 or p.prorettype = 'record'::regtype) as returns_composite,
           rt.typname::text as return_type_name,
           rt.typbasetype <> 0 as return_is_domain,
           p.proconfig as config
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    join pg_catalog.pg_type rt on rt.oid = p.prorettype
    where n.nspname = ${schema} and p.proname = ${name} and p.prokind = 'f'`;
  return rows.map((row) => {
    if (row.arg_modes && row.arg_modes.some((mode) => mode !== 'i')) {
      // OUT/INOUT/VARIADIC/TABLE parameters change both the call and the result shape.
      throw new Error(`the PostgREST replay does not implement functions with OUT or VARIADIC parameters (${schema}.${name})`);
    }
    const count = row.arg_types.length;
    return {
      schema,
      name,
      params: row.arg_types.map((type, i) => ({
        name: row.arg_names?.[i] ?? '',
        type,
        required: i < count - row.defaults,
      })),
      volatile: row.volatility === 'v',
      returnsVoid: row.returns_void,
      returnsSet: row.returns_set,
      returnsComposite: row.returns_composite,
      returnsMediaType: row.return_is_domain && MEDIA_TYPE_NAME.test(row.return_type_name) ? row.return_type_name.toLowerCase() : null,
      settings: (row.config ?? [])
        .filter((entry) => hoisted.some((pattern) => new RegExp(pattern).test(entry)))
        .map((entry) => {
          const at = entry.indexOf('=');
          return [entry.slice(0, at), entry.slice(at + 1)] as [string, string];
        }),
      isolationLevel: (row.config ?? []).find((entry) => entry.startsWith('default_transaction_isolation'))?.split('=')[1]?.split(',')[0] ?? null,
    };
  });
}

/** True when the exposed schema has a table, view, materialized view or foreign table of this name. */
export async function relationExists(sql: Sql, schema: string, name: string): Promise<boolean> {
  const rows = await sql`
    select from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and c.relname = ${name} and c.relkind in ('v', 'r', 'm', 'f', 'p')`;
  return rows.length > 0;
}

/**
 * A relation's columns and their types, as SchemaCache.hs reads them for a write body (the type
 * each key of the JSON body is read as: `cfIRType`). Null when there is no such relation.
 */
export async function relationColumns(sql: Sql, schema: string, name: string): Promise<Map<string, string> | null> {
  if (!(await relationExists(sql, schema, name))) return null;
  const rows = await sql<{ name: string; type: string }[]>`
    select a.attname as name, pg_catalog.format_type(a.atttypid, a.atttypmod) as type
    from pg_catalog.pg_attribute a
    join pg_catalog.pg_class c on c.oid = a.attrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and c.relname = ${name} and a.attnum > 0 and not a.attisdropped
    order by a.attnum`;
  return new Map(rows.map((row) => [row.name, row.type]));
}

export interface RoutineMatch {
  routine: Routine;
  /** The single unnamed json parameter receives the whole body. */
  wholeBody: boolean;
}

/**
 * `findProc` of src/library/PostgREST/Plan.hs: the function whose parameters the argument keys
 * match (every required one given, the rest optional ones), else — for a POST with a JSON body
 * only — the one with a single unnamed json/jsonb parameter. Null: no match (404 PGRST202);
 * 'ambiguous': several (300 PGRST203).
 */
export function findRoutine(routines: Routine[], keys: Set<string>, isPost: boolean, contentIsJson: boolean): RoutineMatch | null | 'ambiguous' {
  const matching = routines.filter((routine) => {
    const required = routine.params.filter((p) => p.required).map((p) => p.name);
    const optional = new Set(routine.params.filter((p) => !p.required).map((p) => p.name));
    if (routine.params.length === 0) return keys.size === 0;
    const beyondOptional = [...keys].filter((key) => !optional.has(key));
    return beyondOptional.length === required.length && required.every((name) => keys.has(name));
  });
  if (matching.length === 1) return { routine: matching[0]!, wholeBody: false };
  if (matching.length > 1) return 'ambiguous';
  const fallback = routines.filter(
    (routine) =>
      isPost &&
      contentIsJson &&
      routine.params.length === 1 &&
      routine.params[0]!.name === '' &&
      (routine.params[0]!.type === 'json' || routine.params[0]!.type === 'jsonb'),
  );
  if (fallback.length === 1) return { routine: fallback[0]!, wholeBody: true };
  return fallback.length > 1 ? 'ambiguous' : null;
}

/**
 * The impersonated role's own settings, as Config/Database.hs `queryRoleSettings` reads them when
 * PostgREST starts: `ALTER ROLE … SET` of the roles the connecting role is a member of
 * (pg_roles.rolconfig — an `ALTER ROLE … IN DATABASE … SET` is not there), those a user may set
 * (or, from PostgreSQL 15, the connecting role has SET on), `default_transaction_isolation` apart.
 */
export async function impersonatedRoleSettings(sql: Sql, role: string): Promise<{ settings: [string, string][]; isolationLevel: string | null }> {
  const [{ v15 }] = await sql<[{ v15: boolean }]>`select current_setting('server_version_num')::int >= 150000 as v15`;
  const rows = await sql<{ key: string; value: string }[]>`
    with role_setting as (
      select r.rolname, unnest(r.rolconfig) as setting
      from pg_catalog.pg_auth_members m join pg_catalog.pg_roles r on r.oid = m.roleid
      where m.member = quote_ident(current_user)::regrole::oid and r.rolname = ${role}
    ),
    kv as (
      select substr(setting, 1, strpos(setting, '=') - 1) as key, substr(setting, strpos(setting, '=') + 1) as value from role_setting
    )
    select kv.key, kv.value from kv
    join pg_catalog.pg_settings ps on ps.name = kv.key
      and (ps.context = 'user' or (${v15} and has_parameter_privilege(quote_ident(current_user)::regrole::oid, ps.name, 'set')))`;
  return {
    settings: rows.filter((r) => r.key !== 'default_transaction_isolation').map((r) => [r.key, r.value] as [string, string]),
    isolationLevel: rows.find((r) => r.key === 'default_transaction_isolation')?.value ?? null,
  };
}
