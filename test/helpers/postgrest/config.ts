// PostgREST's configuration as docker-compose.yml gives it, so that the replay and the deployed
// PostgREST cannot drift apart.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { projectRoot } from '../dbmate.js';

export interface PostgrestConfig {
  schemas: string[];
  extraSearchPath: string[];
  anonRole: string;
  preRequest: string | null;
  maxRows: number | null;
  /**
   * `db-hoisted-tx-settings`: the function `SET` clauses PostgREST applies to the request's
   * transaction — each a regular expression matched against `name=value` (SchemaCache.hs).
   */
  hoistedTxSettings: string[];
  /** `server-cors-allowed-origins`: empty allows every origin (`*`), as PostgREST's default. */
  corsAllowedOrigins: string[];
}

export function postgrestService(): { image: string; environment: Record<string, string> } {
  const compose = parse(readFileSync(`${projectRoot}docker-compose.yml`, 'utf8'));
  return compose.services.postgrest;
}

export function postgrestEnvironment(): Record<string, string> {
  return postgrestService().environment;
}

export function postgrestConfig(): PostgrestConfig {
  const env = postgrestEnvironment();
  const list = (value: string | undefined, fallback: string) =>
    (value ?? fallback)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return {
    schemas: list(env.PGRST_DB_SCHEMAS, 'public'),
    extraSearchPath: list(env.PGRST_DB_EXTRA_SEARCH_PATH, 'public'),
    anonRole: env.PGRST_DB_ANON_ROLE ?? 'anon',
    preRequest: env.PGRST_DB_PRE_REQUEST || null,
    maxRows: env.PGRST_DB_MAX_ROWS ? Number(env.PGRST_DB_MAX_ROWS) : null,
    // Config.hs defaultHoistedAllowList.
    hoistedTxSettings: list(env.PGRST_DB_HOISTED_TX_SETTINGS, 'statement_timeout,plan_filter.statement_cost_limit,default_transaction_isolation'),
    corsAllowedOrigins: list(env.PGRST_SERVER_CORS_ALLOWED_ORIGINS, ''),
  };
}

export const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** `schema.name` → `"schema"."name"`; a bare name is looked up in the first exposed schema. */
export function qualified(name: string, config: PostgrestConfig): string {
  const [schema, fn] = name.includes('.') ? name.split('.', 2) : [config.schemas[0]!, name];
  return `${quoteIdent(schema!)}.${quoteIdent(fn!)}`;
}
