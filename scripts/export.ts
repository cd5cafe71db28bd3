// npm run export — writes the change feed to files for analytics tools: each run exports the
// changes since the last one (state in DIR/.kpi-export-state.json), so running it every hour
// exports each change once.
//
//   npm run export -- --format parquet|ndjson|csv --out DIR [--tenant ID] [--since CURSOR|YYYY-MM-DD]
//
// Reads as the table owner (DATABASE_URL, or the local cluster) through the feed's one reader
// (settled transactions only). Files of at most 100,000 changes, each named after the positions it
// covers (kpi-changes-<first>-<last>.<ext>) and written whole or not at all (an exclusive,
// randomly named temporary file, synced, then renamed). A run goes on after the last change of the
// last file written — the state file says it, and so do the files' names — so a run that dies at
// any point, or a deleted state file, never exports a change twice nor skips one.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parquetWriteBuffer } from 'hyparquet-writer';
import postgres from 'postgres';
import { compareCursors } from '../sdk/src/follow.js';
import { databaseUrl } from './lib/database-url.js';
import { parseCli } from './lib/cli.js';

type Format = 'parquet' | 'ndjson' | 'csv';

export interface ExportOptions {
  format: Format;
  out: string;
  tenant?: string;
  since?: string;
  databaseUrl: string;
}

export interface ExportResult {
  /** The files written, in order (none when nothing was new). */
  files: string[];
  changes: number;
  cursor: string;
}

interface ChangeRow {
  txid: string;
  seq: string;
  tenant_id: string;
  tenant: string | null;
  entity: string;
  op: string;
  as_of: string;
  kpi: string | null;
  aiv_pct: string | null;
  ati_pct: string | null;
  crs_pct: string | null;
  elasticity_usd_per_point: string | null;
  vli_integrity_pct: string | null;
  vli_is_fallback: boolean | null;
  hrp_pct: string | null;
  revision: number | null;
  value: string | null;
  baseline_median: string | null;
  score: number | null;
  direction: string | null;
  changed_at: string;
}

class ExportError extends Error {
  constructor(
    readonly code: 'INVALID_INPUT' | 'CURSOR_EXPIRED',
    message: string,
  ) {
    super(message);
  }
}

const STATE_FILE = '.kpi-export-state.json';
const FORMATS: Format[] = ['parquet', 'ndjson', 'csv'];
const CURSOR = /^\d+\.\d+$/;
const FILE_ROWS = 100_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// The columns of every format, with their Parquet types: dates as DATE, the KPIs as the DECIMALs
// of the tables, booleans, positions as INT64, and the change time as a UTC timestamp.
const COLUMNS: { name: keyof ChangeRow | 'cursor'; parquet: Record<string, unknown> }[] = [
  { name: 'cursor', parquet: { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' } },
  { name: 'txid', parquet: { type: 'INT64', repetition_type: 'REQUIRED' } },
  { name: 'seq', parquet: { type: 'INT64', repetition_type: 'REQUIRED' } },
  { name: 'tenant_id', parquet: { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' } },
  { name: 'tenant', parquet: { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' } },
  { name: 'entity', parquet: { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' } },
  { name: 'op', parquet: { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' } },
  { name: 'as_of', parquet: { type: 'INT32', converted_type: 'DATE', repetition_type: 'REQUIRED' } },
  { name: 'kpi', parquet: { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' } },
  ...(['aiv_pct', 'ati_pct', 'crs_pct', 'vli_integrity_pct', 'hrp_pct'] as const).map((name) => ({
    name,
    parquet: { type: 'INT32', converted_type: 'DECIMAL', precision: 5, scale: 2, repetition_type: 'OPTIONAL' },
  })),
  { name: 'elasticity_usd_per_point', parquet: { type: 'INT64', converted_type: 'DECIMAL', precision: 10, scale: 2, repetition_type: 'OPTIONAL' } },
  { name: 'vli_is_fallback', parquet: { type: 'BOOLEAN', repetition_type: 'OPTIONAL' } },
  { name: 'revision', parquet: { type: 'INT32', repetition_type: 'OPTIONAL' } },
  { name: 'value', parquet: { type: 'INT64', converted_type: 'DECIMAL', precision: 12, scale: 2, repetition_type: 'OPTIONAL' } },
  { name: 'baseline_median', parquet: { type: 'INT64', converted_type: 'DECIMAL', precision: 14, scale: 4, repetition_type: 'OPTIONAL' } },
  { name: 'score', parquet: { type: 'DOUBLE', repetition_type: 'OPTIONAL' } },
  { name: 'direction', parquet: { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' } },
  { name: 'changed_at', parquet: { type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: 'REQUIRED' } },
];

/** A decimal string as the scaled integer Parquet stores (exact: no float on the way). */
function scaled(value: string | null, scale: number): bigint | null {
  if (value === null) return null;
  const [whole, fraction = ''] = value.split('.');
  const negative = whole!.startsWith('-');
  const digits = BigInt(`${whole!.replace('-', '')}${fraction.padEnd(scale, '0').slice(0, scale)}`);
  return negative ? -digits : digits;
}

function cursorOf(row: ChangeRow): string {
  return `${row.txid}.${row.seq}`;
}

function parquetColumn(rows: ChangeRow[], column: (typeof COLUMNS)[number]) {
  const schema = column.parquet as { converted_type?: string; scale?: number; type: string };
  const raw = rows.map((row) => (column.name === 'cursor' ? cursorOf(row) : row[column.name]));
  let data: unknown[];
  if (schema.converted_type === 'DECIMAL') data = raw.map((v) => scaled(v as string | null, schema.scale!));
  else if (schema.converted_type === 'DATE') data = raw.map((v) => new Date(`${v as string}T00:00:00Z`));
  else if (schema.converted_type === 'TIMESTAMP_MILLIS') data = raw.map((v) => new Date(v as string));
  else if (schema.type === 'INT64') data = raw.map((v) => BigInt(v as string));
  else if (schema.type === 'DOUBLE') data = raw.map((v) => (v === null ? null : Number(v)));
  else data = raw;
  return { name: column.name, data };
}

function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function render(format: Format, rows: ChangeRow[]): Buffer {
  if (format === 'parquet') {
    const buffer = parquetWriteBuffer({
      columnData: COLUMNS.map((column) => parquetColumn(rows, column)) as never,
      schema: [{ name: 'root', num_children: COLUMNS.length }, ...COLUMNS.map((c) => ({ name: c.name, ...c.parquet }))] as never,
      createdBy: 'kpi-history export',
    });
    return Buffer.from(buffer);
  }
  const values = (row: ChangeRow) => COLUMNS.map((c) => (c.name === 'cursor' ? cursorOf(row) : row[c.name]));
  if (format === 'csv') {
    const lines = [COLUMNS.map((c) => c.name).join(','), ...rows.map((row) => values(row).map(csvField).join(','))];
    return Buffer.from(`${lines.join('\r\n')}\r\n`);
  }
  return Buffer.from(rows.map((row) => JSON.stringify(Object.fromEntries(COLUMNS.map((c, i) => [c.name, values(row)[i]])))).join('\n') + (rows.length ? '\n' : ''));
}

/** The files a directory holds, by the range of positions each covers (their names say it). */
function exportedFiles(dir: string): { name: string; first: string; last: string; format: string }[] {
  return readdirSync(dir)
    .map((name) => /^kpi-changes-(\d+\.\d+)-(\d+\.\d+)\.(parquet|ndjson|csv)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[0], first: m[1]!, last: m[2]!, format: m[3]! }));
}

interface ExportState {
  cursor: string;
  tenant: string | null;
  format: Format;
}

/** The state file, checked: a wrong shape is refused with what to do, never exported over. */
function readState(path: string): ExportState | null {
  if (!existsSync(path)) return null;
  let state: Partial<ExportState>;
  try {
    state = JSON.parse(readFileSync(path, 'utf8')) as Partial<ExportState>;
  } catch {
    throw new ExportError('INVALID_INPUT', `${path} is not the export's state (not JSON): move it away to start the directory anew`);
  }
  if (
    typeof state.cursor !== 'string' || !CURSOR.test(state.cursor) ||
    !(state.tenant === null || (typeof state.tenant === 'string' && UUID.test(state.tenant))) ||
    !FORMATS.includes(state.format as Format)
  ) {
    throw new ExportError('INVALID_INPUT', `${path} is not a valid export state ({"cursor", "tenant", "format"}): move it away to start the directory anew`);
  }
  return state as ExportState;
}

/** Writes a file whole or not at all: an exclusive temporary file of a random name (never a planted link), synced, then renamed into place. */
function writeWhole(path: string, content: Buffer | string): void {
  const temporary = `${path}.${randomBytes(8).toString('hex')}.partial`;
  const fd = openSync(temporary, 'wx', 0o644);
  try {
    writeSync(fd, typeof content === 'string' ? Buffer.from(content) : content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
}

export async function exportChanges(options: ExportOptions): Promise<ExportResult> {
  if (!FORMATS.includes(options.format)) throw new ExportError('INVALID_INPUT', '--format is parquet, ndjson or csv');
  if (options.tenant !== undefined && !UUID.test(options.tenant)) throw new ExportError('INVALID_INPUT', '--tenant must be a tenant id (uuid)');
  if (options.since !== undefined && !CURSOR.test(options.since) && !/^\d{4}-\d{2}-\d{2}$/.test(options.since)) {
    throw new ExportError('INVALID_INPUT', '--since is a cursor (<digits>.<digits>) or a date (YYYY-MM-DD)');
  }
  mkdirSync(options.out, { recursive: true });
  // One run per directory at a time.
  const lockPath = join(options.out, '.kpi-export.lock');
  let lock: number;
  try {
    lock = openSync(lockPath, 'wx');
  } catch {
    throw new ExportError('INVALID_INPUT', `${lockPath} exists: another export is running in ${options.out} (or one died: remove the file once none runs)`);
  }
  try {
    writeSync(lock, `${process.pid}\n`);
    return await exportLocked(options);
  } finally {
    closeSync(lock);
    rmSync(lockPath, { force: true });
  }
}

async function exportLocked(options: ExportOptions): Promise<ExportResult> {
  const statePath = join(options.out, STATE_FILE);
  const state = readState(statePath);
  const files = exportedFiles(options.out);
  if (state && (state.tenant ?? null) !== (options.tenant ?? null)) {
    throw new ExportError('INVALID_INPUT', `${options.out} holds the export of ${state.tenant ? `tenant ${state.tenant}` : 'every tenant'}: use another directory`);
  }
  const format = state?.format ?? files[0]?.format;
  if (format !== undefined && format !== options.format) {
    throw new ExportError('INVALID_INPUT', `${options.out} holds a ${format} export: --format ${options.format} would mix them; use another directory`);
  }
  // Where it goes on: after the last change of the last file written. The files say it as well as
  // the state does (a run that died after its file but before its state), and without the state
  // (deleted), so nothing is ever written twice.
  const lastWritten = files.map((f) => f.last).sort(compareCursors).at(-1);
  const resumeAfter = [state?.cursor, lastWritten].filter((c): c is string => c !== undefined).sort(compareCursors).at(-1);
  if (resumeAfter !== undefined && options.since !== undefined) {
    throw new ExportError('INVALID_INPUT', `${options.out} goes on after ${resumeAfter}: --since applies to a new directory only`);
  }
  // Leftovers of a run that died before its rename are never a result.
  for (const name of readdirSync(options.out)) if (name.endsWith('.partial')) rmSync(join(options.out, name), { force: true });

  const sql = postgres(options.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    // NULL: from the oldest change kept (nothing to check against what was pruned).
    let from: string | null = resumeAfter ?? null;
    if (from === null && options.since !== undefined) {
      if (CURSOR.test(options.since)) from = options.since;
      else {
        const [first] = await sql<{ txid: string; seq: string }[]>`
          select txid::text, seq::text from kpi.kpi_changes where changed_at >= ${options.since}::date order by txid, seq limit 1`;
        if (first) from = `${first.txid}.${BigInt(first.seq) - 1n}`;
        else {
          // Nothing on or after that date yet: start after the newest change there is.
          const [{ head }] = await sql<[{ head: string | null }]>`select kpi_api.change_log_head(${options.tenant ?? null}::uuid) as head`;
          from = head ?? '0.0';
          writeWhole(statePath, `${JSON.stringify({ cursor: from, tenant: options.tenant ?? null, format: options.format })}\n`);
        }
      }
    }
    const result: ExportResult = { files: [], changes: 0, cursor: from ?? '0.0' };
    // Files of at most FILE_ROWS changes, until nothing settled is left. The database's one reader
    // of the log (kpi_api.read_changes) decides what is settled and whether the cursor expired.
    for (;;) {
      let rows: ChangeRow[];
      try {
        rows = await sql<ChangeRow[]>`
          select c.txid::text, c.seq::text, c.tenant_id::text, t.slug as tenant, c.entity, c.op, c.as_of::text, c.kpi,
                 c.data ->> 'aiv_pct' as aiv_pct, c.data ->> 'ati_pct' as ati_pct, c.data ->> 'crs_pct' as crs_pct,
                 c.data ->> 'elasticity_usd_per_point' as elasticity_usd_per_point, c.data ->> 'vli_integrity_pct' as vli_integrity_pct,
                 (c.data ->> 'vli_is_fallback')::boolean as vli_is_fallback, c.data ->> 'hrp_pct' as hrp_pct,
                 (c.data ->> 'revision')::integer as revision,
                 c.data ->> 'value' as value, c.data ->> 'baseline_median' as baseline_median,
                 case when c.data ->> 'score' in ('Infinity', '-Infinity') then null else (c.data ->> 'score')::float8 end as score,
                 c.data ->> 'direction' as direction,
                 replace(c.changed_at, '+00:00', 'Z') as changed_at
          from kpi_api.read_changes(${from}, ${options.tenant ?? null}::uuid, ${FILE_ROWS}) c
          left join kpi.tenants t on t.id = c.tenant_id
          order by c.txid, c.seq`;
      } catch (error) {
        if ((error as { code?: string }).code === 'KH410') {
          throw new ExportError('CURSOR_EXPIRED', `the changes after ${from} have been pruned: export the current tables once, then start a new directory`);
        }
        throw error;
      }
      if (rows.length === 0) return result;
      const last = cursorOf(rows.at(-1)!);
      const file = join(options.out, `kpi-changes-${cursorOf(rows[0]!)}-${last}.${options.format}`);
      // The file whole first, the state after it: a crash between leaves a file that says where
      // the next run goes on.
      writeWhole(file, render(options.format, rows));
      writeWhole(statePath, `${JSON.stringify({ cursor: last, tenant: options.tenant ?? null, format: options.format })}\n`);
      result.files.push(file);
      result.changes += rows.length;
      result.cursor = last;
      if (rows.length < FILE_ROWS) return result;
      from = last;
    }
  } finally {
    await sql.end();
  }
}

const HELP = `usage: npm run export -- --format parquet|ndjson|csv --out DIR [--tenant ID] [--since CURSOR|YYYY-MM-DD]

Writes the change feed to files for analytics tools, each run the changes since the last one (the
directory remembers where it stopped, in .kpi-export-state.json and in its files' names).
  --format   parquet (typed), ndjson or csv
  --out      the directory (one export per directory: one tenant or all, one format)
  --tenant   one tenant's changes only (its id)
  --since    a new directory starts after this cursor, or at the first change on or after this date
Against DATABASE_URL, or the local cluster. Exit codes: 2 bad arguments, 3 CURSOR_EXPIRED.`;
const USAGE = HELP.split('\n')[0]!;

async function main(): Promise<void> {
  const { values } = parseCli({
    name: 'export',
    help: HELP,
    options: { format: { type: 'string' }, out: { type: 'string' }, tenant: { type: 'string' }, since: { type: 'string' } },
  });
  if (!values.format || !values.out) {
    console.error(`export: --format and --out are required\n${USAGE}`);
    process.exit(2);
  }
  try {
    const result = await exportChanges({ format: values.format as Format, out: values.out, tenant: values.tenant, since: values.since, databaseUrl: databaseUrl() });
    if (result.files.length === 0) console.log(`export: nothing new after ${result.cursor}`);
    else {
      console.log(`export: ${result.changes} changes → ${result.files.length} file(s) (next run starts after ${result.cursor})`);
      for (const file of result.files) console.log(`  ${file}`);
    }
  } catch (error) {
    if (error instanceof ExportError) {
      console.error(`export: ${error.code}: ${error.message}`);
      process.exit(error.code === 'CURSOR_EXPIRED' ? 3 : 2);
    }
    throw error;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
