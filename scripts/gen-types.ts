// Generates sdk/src/database.types.ts from a migrated database: the `api` schema's views and
// functions (the shape @supabase/postgrest-js expects) and the error codes of kpi.error_codes.
// The SQL is the contract; this file is derived from it and checked in (a test fails when stale).
//
//   npm run gen:types                  (DATABASE_URL, or the local cluster)
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import postgres from 'postgres';
import { databaseUrl } from './lib/database-url.js';
import { parseCli } from './lib/cli.js';

export const TYPES_FILE = fileURLToPath(new URL('../sdk/src/database.types.ts', import.meta.url));

interface Column {
  relation: string;
  name: string;
  type: string;
  not_null: boolean;
  comment: string | null;
  /** The API role may insert or update it through the view (its base column's privileges). */
  insertable: boolean;
  updatable: boolean;
  /** An insert must give it: NOT NULL without a default in the base table. */
  insert_required: boolean;
}
interface Routine {
  name: string;
  arg_names: string[] | null;
  arg_types: string[];
  arg_defaults: number;
  returns: string;
  returns_set: boolean;
  comment: string | null;
}
interface ErrorCode {
  code: string;
  sqlstate: string;
  http_status: number;
  description: string;
}

/** PostgreSQL type → TypeScript, as PostgREST serializes it to JSON. */
function tsType(pgType: string): string {
  if (pgType.endsWith('[]')) return `${tsType(pgType.slice(0, -2))}[]`;
  switch (pgType) {
    case 'smallint':
    case 'integer':
    case 'bigint':
    case 'numeric':
    case 'real':
    case 'double precision':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'json':
    case 'jsonb':
      return 'Json';
    case 'void':
      return 'undefined';
    default:
      // text, dates and times, uuid, and the "text/csv" media type domain are strings.
      return 'string';
  }
}

// A computed view column PostgreSQL cannot declare NOT NULL says so in its COMMENT.
const neverNull = (comment: string | null) => /\bNever NULL\.$/.test(comment ?? '');
const key = (name: string) => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : JSON.stringify(name));
const doc = (text: string | null, indent: string) =>
  text ? `${indent}/** ${text.split('\n')[0]!.replaceAll('*/', '* /')} */\n` : '';

export async function generateTypes(sql: postgres.Sql): Promise<string> {
  // Views' columns are nullable as far as the catalog knows; a column taken unchanged from a NOT
  // NULL table column keeps NOT NULL.
  const columns = await sql<Column[]>`
    select c.relname as relation, a.attname as name, format_type(a.atttypid, null) as type,
           coalesce(bool_or(base.attnotnull), false) as not_null,
           col_description(c.oid, a.attnum) as comment,
           has_table_privilege('authenticated', c.oid, 'INSERT')
             and coalesce(bool_or(has_column_privilege('authenticated', base.attrelid, base.attname, 'INSERT')), false) as insertable,
           has_table_privilege('authenticated', c.oid, 'UPDATE')
             and coalesce(bool_or(has_column_privilege('authenticated', base.attrelid, base.attname, 'UPDATE')), false) as updatable,
           coalesce(bool_or(base.attnotnull and not base.atthasdef), false) as insert_required
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    left join information_schema.view_column_usage u
      on u.view_schema = n.nspname and u.view_name = c.relname and u.column_name = a.attname
    left join pg_attribute base
      on base.attrelid = format('%I.%I', u.table_schema, u.table_name)::regclass and base.attname = u.column_name
    where n.nspname = 'api' and c.relkind = 'v'
    group by c.relname, c.oid, a.attname, a.atttypid, a.attnum
    order by c.relname, a.attnum`;
  const routines = await sql<Routine[]>`
    select p.proname as name, p.proargnames as arg_names,
           array(select format_type(t, null) from unnest(p.proargtypes) t) as arg_types,
           p.pronargdefaults as arg_defaults,
           format_type(p.prorettype, null) as returns, p.proretset as returns_set,
           obj_description(p.oid, 'pg_proc') as comment
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'api' and p.prokind = 'f'
    order by p.proname`;
  const errorCodes = await sql<ErrorCode[]>`select code, sqlstate, http_status, description from kpi.error_codes order by code`;

  const views = new Map<string, Column[]>();
  for (const column of columns) views.set(column.relation, [...(views.get(column.relation) ?? []), column]);
  const viewTypes = [...views]
    .map(([name, cols]) => {
      const row = cols
        .map((c) => `${doc(c.comment, '          ')}          ${key(c.name)}: ${tsType(c.type)}${c.not_null || neverNull(c.comment) ? '' : ' | null'};`)
        .join('\n');
      // A view the API role writes through (its base columns' privileges) gets Insert and Update.
      const writes = (which: 'Insert' | 'Update', allowed: (c: Column) => boolean, optional: (c: Column) => boolean) =>
        cols.some(allowed)
          ? `        ${which}: {\n${cols
              .filter(allowed)
              .map((c) => `          ${key(c.name)}${optional(c) ? '?' : ''}: ${tsType(c.type)}${c.not_null ? '' : ' | null'};`)
              .join('\n')}\n        };\n`
          : '';
      const insert = writes('Insert', (c) => c.insertable, (c) => !c.insert_required);
      const update = writes('Update', (c) => c.updatable, () => true);
      return `      ${key(name)}: {\n        Row: {\n${row}\n        };\n${insert}${update}        Relationships: [];\n      };`;
    })
    .join('\n');

  const functionTypes = routines
    .map((r) => {
      const names = r.arg_names ?? [];
      let args: string;
      if (r.arg_types.length === 1 && !names[0] && ['json', 'jsonb'].includes(r.arg_types[0]!)) {
        // A single unnamed json parameter receives the whole request body.
        args = '{ [key: string]: Json | undefined }';
      } else if (r.arg_types.length === 0) {
        args = 'Record<PropertyKey, never>';
      } else {
        const firstDefault = r.arg_types.length - r.arg_defaults;
        args = `{ ${r.arg_types
          .map((type, i) => `${key(names[i] ?? `arg${i}`)}${i >= firstDefault ? '?' : ''}: ${tsType(type)}`)
          .join('; ')} }`;
      }
      const returns = `${tsType(r.returns)}${r.returns_set ? '[]' : ''}`;
      return `${doc(r.comment, '      ')}      ${key(r.name)}: {\n        Args: ${args};\n        Returns: ${returns};\n      };`;
    })
    .join('\n');

  const codes = errorCodes
    .map((e) => `  ${e.code}: { sqlstate: '${e.sqlstate}', httpStatus: ${e.http_status}, description: ${JSON.stringify(e.description)} },`)
    .join('\n');

  return `// Generated by \`npm run gen:types\` from the migrated database. Do not edit by hand.
// Source: the views and functions of schema api, and the rows of kpi.error_codes.

export type Json = string | number | boolean | null | { [key: string]: Json | undefined } | Json[];

export type Database = {
  api: {
    Tables: {};
    Views: {
${viewTypes}
    };
    Functions: {
${functionTypes}
    };
    Enums: {};
    CompositeTypes: {};
  };
};

/** The stable error codes the database raises (SQLSTATE class KH) and the API answers with. */
export const DATABASE_ERRORS = {
${codes}
} as const;

export type DatabaseErrorCode = keyof typeof DATABASE_ERRORS;
`;
}

async function main(): Promise<void> {
  parseCli({
    name: 'gen:types',
    help: `usage: npm run gen:types

Writes sdk/src/database.types.ts from the database's api schema (its views, functions and
comments) and kpi.error_codes: the SDK's types follow the SQL. Reads DATABASE_URL, or the local
cluster of scripts/db.sh (run npm run db:migrate first).`,
    options: {},
  });
  const sql = postgres(databaseUrl(), { max: 1, onnotice: () => {} });
  try {
    writeFileSync(TYPES_FILE, await generateTypes(sql));
    console.log(`wrote ${TYPES_FILE}`);
  } finally {
    await sql.end();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
