// npm run export against the real database: Parquet read back with DuckDB and compared with the
// log, resuming where the last run stopped (and after a run that died before saving its state),
// one tenant's export holding nothing of another, NDJSON and CSV, --since, and CURSOR_EXPIRED.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { ACME, GLOBEX, HOOLI } from '../fixtures/tenants.js';

const db = useTestDatabase();
const dir = mkdtempSync(join(tmpdir(), 'kpi-export-'));

function runExport(...args: string[]) {
  const result = spawnSync('npm', ['run', '--silent', 'export', '--', ...args], {
    cwd: projectRoot,
    env: { ...process.env, DATABASE_URL: db.url },
    encoding: 'utf8',
  });
  return { code: result.status, out: result.stdout.trim(), err: result.stderr.trim() };
}

/** The rows of every Parquet file matching `glob`, as DuckDB reads them, as text. */
async function readParquet(glob: string) {
  const connection = await (await DuckDBInstance.create(':memory:')).connect();
  const reader = await connection.runAndReadAll(`
    select cursor, tenant_id, tenant, entity, op, as_of::varchar as as_of, kpi, aiv_pct::varchar as aiv_pct,
           elasticity_usd_per_point::varchar as elasticity, vli_is_fallback, hrp_pct::varchar as hrp_pct, revision,
           value::varchar as value, baseline_median::varchar as baseline_median, direction
    from read_parquet('${glob}') order by txid, seq`);
  return reader.getRowObjectsJson();
}

/** The same, straight from the log, for the changes after `cursor`. */
function fromLog(after = '0.0', tenant: string | null = null) {
  return db.sql`
    select c.txid::text || '.' || c.seq as cursor, c.tenant_id::text as tenant_id, t.slug as tenant, c.entity, c.op, c.as_of::text as as_of, c.kpi,
           d.data ->> 'aiv_pct' as aiv_pct, d.data ->> 'elasticity_usd_per_point' as elasticity,
           (d.data ->> 'vli_is_fallback')::boolean as vli_is_fallback, d.data ->> 'hrp_pct' as hrp_pct, (d.data ->> 'revision')::int as revision,
           d.data ->> 'value' as value, d.data ->> 'baseline_median' as baseline_median, d.data ->> 'direction' as direction
    from kpi.kpi_changes c left join kpi.tenants t on t.id = c.tenant_id
    -- A history change keeps its row; the feed's JSON is built from it as the readers build it.
    cross join lateral (select coalesce(c.data, kpi_api.history_change_data(c.history_row)) as data) d
    where (c.txid, c.seq) > (split_part(${after}, '.', 1)::xid8, split_part(${after}, '.', 2)::bigint)
      and (${tenant}::uuid is null or c.tenant_id = ${tenant}::uuid)
    order by c.txid, c.seq`;
}

/** A directory of this test's own, holding a first export of every change so far. */
function exportedDirectory(name: string): string {
  const out = mkdtempSync(join(dir, `${name}-`));
  const first = runExport('--format', 'parquet', '--out', out);
  expect(first.code, first.err).toBe(0);
  return out;
}

const state = (out: string) => JSON.parse(readFileSync(join(out, '.kpi-export-state.json'), 'utf8')) as { cursor: string };

beforeAll(() => {
  const seeded = spawnSync('psql', [db.url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', 'db/seed/demo.sql', '-c', 'select kpi.backfill_kpi_history()'], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  expect(seeded.status, seeded.stderr).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run export -- --format parquet', () => {
  it('writes every change so far, typed (DATE, DECIMAL, BOOLEAN), and DuckDB reads back exactly the log', async () => {
    const out = mkdtempSync(join(dir, 'all-'));
    const run = runExport('--format', 'parquet', '--out', out);
    expect(run.code, run.err).toBe(0);
    expect(run.out).toMatch(/^export: \d+ changes → 1 file\(s\) \(next run starts after \d+\.\d+\)\n  .*kpi-changes-\d+\.\d+-\d+\.\d+\.parquet$/);
    const connection = await (await DuckDBInstance.create(':memory:')).connect();
    const types = (await connection.runAndReadAll(`describe select * from read_parquet('${out}/*.parquet')`)).getRowObjectsJson();
    expect(Object.fromEntries(types.map((t) => [t.column_name, t.column_type]))).toMatchObject({
      as_of: 'DATE', aiv_pct: 'DECIMAL(5,2)', elasticity_usd_per_point: 'DECIMAL(10,2)', vli_is_fallback: 'BOOLEAN',
      txid: 'BIGINT', revision: 'INTEGER', baseline_median: 'DECIMAL(14,4)', changed_at: 'TIMESTAMP',
    });
    const exported = await readParquet(`${out}/*.parquet`);
    const logged = await fromLog();
    expect(exported.length).toBeGreaterThan(30);
    expect(exported).toEqual(logged.map((row) => ({ ...row })));
    expect(exported.filter((row) => row.entity === 'anomaly').map((row) => [row.tenant, row.kpi, row.direction])).toEqual([
      ['hooli', 'aiv_pct', 'down'],
      ['hooli', 'hrp_pct', 'up'],
    ]);
  });

  it('the next run exports only what changed since; nothing new writes nothing', async () => {
    const out = exportedDirectory('next');
    const before = state(out).cursor;
    expect(runExport('--format', 'parquet', '--out', out).out).toBe(`export: nothing new after ${before}`);
    await db.sql`update kpi.kpi_history set aiv_pct = 12.34 where tenant_id = ${ACME} and as_of = '2026-11-23'`;
    const run = runExport('--format', 'parquet', '--out', out);
    expect(run.out).toMatch(/^export: 1 changes/);
    const files = readdirSync(out).filter((f) => f.endsWith('.parquet'));
    expect(files).toHaveLength(2);
    const all = await readParquet(`${out}/*.parquet`);
    expect(new Set(all.map((r) => r.cursor)).size).toBe(all.length);
    expect(all.at(-1)).toMatchObject({ op: 'update', tenant: 'acme', aiv_pct: '12.34', revision: 2 });
  });

  it('a run that died after its file but before its state goes on after that file: nothing twice', async () => {
    const out = exportedDirectory('died');
    const saved = readFileSync(join(out, '.kpi-export-state.json'), 'utf8');
    await db.sql`update kpi.kpi_history set aiv_pct = 23.45 where tenant_id = ${ACME} and as_of = '2026-11-23'`;
    const cursorBefore = state(out).cursor;
    expect(runExport('--format', 'parquet', '--out', out).code).toBe(0);
    writeFileSync(join(out, '.kpi-export-state.json'), saved.replace(/"cursor":"[^"]+"/, `"cursor":"${cursorBefore}"`)); // as if it died
    expect(runExport('--format', 'parquet', '--out', out).code).toBe(0);
    const all = await readParquet(`${out}/*.parquet`);
    expect(new Set(all.map((r) => r.cursor)).size).toBe(all.length);
    expect(all).toEqual((await fromLog()).map((row) => ({ ...row })));
  });
});

describe('a crash, a deleted state, a planted link: never a change twice, never one lost', () => {
  it('with its state file deleted, a directory goes on after its last file, as its names say', async () => {
    const out = join(dir, 'no-state');
    expect(runExport('--format', 'ndjson', '--out', out).code).toBe(0);
    rmSync(join(out, '.kpi-export-state.json'));
    await db.sql`update kpi.kpi_history set aiv_pct = 33.33 where tenant_id = ${ACME} and as_of = '2026-11-23'`;
    const run = runExport('--format', 'ndjson', '--out', out);
    expect(run.out).toMatch(/^export: 1 changes → 1 file/);
    const cursors = readdirSync(out).filter((f) => f.endsWith('.ndjson'))
      .flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n')).map((line) => (JSON.parse(line) as { cursor: string }).cursor);
    expect(new Set(cursors).size).toBe(cursors.length);
    expect(cursors).toEqual((await fromLog()).map((r) => r.cursor));
  });

  it('temporary files have exclusive, random names: a link planted where one used to be written is left alone', async () => {
    const out = join(dir, 'planted');
    mkdirSync(out, { recursive: true });
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(out, '.kpi-export-state.json.partial'));
    expect(runExport('--format', 'csv', '--out', out).code).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('the state is checked: not JSON, a cursor that is none, another format, --since on a directory that goes on — each refused, nothing written', async () => {
    const out = join(dir, 'checked');
    expect(runExport('--format', 'ndjson', '--out', out).code).toBe(0);
    const statePath = join(out, '.kpi-export-state.json');
    const saved = readFileSync(statePath, 'utf8');
    const files = () => readdirSync(out).filter((f) => f.startsWith('kpi-changes-')).sort();
    const before = files();
    writeFileSync(statePath, 'garbage');
    expect(runExport('--format', 'ndjson', '--out', out)).toMatchObject({ code: 2, err: expect.stringContaining('not the export\'s state') });
    writeFileSync(statePath, saved.replace(/"cursor":"[^"]+"/, '"cursor":"x.y"'));
    expect(runExport('--format', 'ndjson', '--out', out)).toMatchObject({ code: 2, err: expect.stringContaining('not a valid export state') });
    writeFileSync(statePath, saved);
    expect(runExport('--format', 'csv', '--out', out)).toMatchObject({ code: 2, err: expect.stringContaining('holds a ndjson export') });
    expect(runExport('--format', 'ndjson', '--out', out, '--since', '2026-01-01')).toMatchObject({ code: 2, err: expect.stringContaining('--since applies to a new directory only') });
    expect(files()).toEqual(before);
  });

  it('--since after the newest change exports nothing, then what comes after', async () => {
    const out = join(dir, 'future');
    const first = runExport('--format', 'ndjson', '--out', out, '--since', '2099-01-01');
    expect(first).toMatchObject({ code: 0, out: expect.stringMatching(/^export: nothing new after \d+\.\d+$/) });
    expect(readdirSync(out).filter((f) => f.endsWith('.ndjson'))).toEqual([]);
    await db.sql`update kpi.kpi_history set aiv_pct = 44.44 where tenant_id = ${ACME} and as_of = '2026-11-23'`;
    const next = runExport('--format', 'ndjson', '--out', out);
    expect(next.out).toMatch(/^export: 1 changes → 1 file/);
  });
});

describe('only settled transactions are exported', () => {
  it('a transaction that wrote first and commits last is exported when it commits, before the later one: never skipped', async () => {
    const out = join(dir, 'settled');
    expect(runExport('--format', 'ndjson', '--out', out).code).toBe(0);
    const exportedSoFar = () => readdirSync(out).filter((f) => f.endsWith('.ndjson'))
      .flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n'))
      .map((line) => JSON.parse(line) as { tenant: string; op: string; aiv_pct: string });
    const before = exportedSoFar().length;
    const early = connect(db.url, { max: 1 });
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let wrote!: () => void;
      const written = new Promise<void>((resolve) => (wrote = resolve));
      // The early transaction takes its transaction id first, and commits last.
      const first = early.begin(async (tx) => {
        await tx`update kpi.kpi_history set aiv_pct = 11.11 where tenant_id = ${ACME} and as_of = '2026-11-23'`;
        wrote();
        await released;
      });
      await written;
      await db.sql`update kpi.kpi_history set aiv_pct = 22.22 where tenant_id = ${GLOBEX} and as_of = (select max(as_of) from kpi.kpi_history where tenant_id = ${GLOBEX})`;
      // The later one committed, but behind a transaction still running: not settled, not exported.
      expect(runExport('--format', 'ndjson', '--out', out).out).toMatch(/^export: nothing new after/);
      release();
      await first;
      expect(runExport('--format', 'ndjson', '--out', out).code).toBe(0);
      const added = exportedSoFar().slice(before);
      expect(added.map((c) => [c.tenant, c.op, c.aiv_pct])).toEqual([
        ['acme', 'update', '11.11'],
        ['globex', 'update', '22.22'],
      ]);
    } finally {
      await early.end();
    }
  });
});

describe('one tenant, other formats, --since, and expiry', () => {
  it('--tenant exports that tenant’s changes only; its directory refuses another tenant', async () => {
    const out = join(dir, 'acme');
    expect(runExport('--format', 'parquet', '--out', out, '--tenant', ACME).code).toBe(0);
    const rows = await readParquet(`${out}/*.parquet`);
    expect(rows.length).toBeGreaterThan(5);
    expect(new Set(rows.map((r) => r.tenant_id))).toEqual(new Set([ACME]));
    expect(rows).toEqual((await fromLog('0.0', ACME)).map((row) => ({ ...row })));
    const other = runExport('--format', 'parquet', '--out', out, '--tenant', GLOBEX);
    expect(other.code).toBe(2);
    expect(other.err).toContain('use another directory');
  });

  it('NDJSON and CSV carry the same changes', async () => {
    const logged = await fromLog();
    const ndjsonDir = join(dir, 'ndjson');
    expect(runExport('--format', 'ndjson', '--out', ndjsonDir).code).toBe(0);
    const lines = readdirSync(ndjsonDir).filter((f) => f.endsWith('.ndjson')).flatMap((f) => readFileSync(join(ndjsonDir, f), 'utf8').trim().split('\n'));
    expect(lines.map((line) => (JSON.parse(line) as { cursor: string }).cursor)).toEqual(logged.map((r) => r.cursor));
    const csvDir = join(dir, 'csv');
    expect(runExport('--format', 'csv', '--out', csvDir).code).toBe(0);
    const [csv] = readdirSync(csvDir).filter((f) => f.endsWith('.csv'));
    const csvLines = readFileSync(join(csvDir, csv!), 'utf8').split('\r\n');
    expect(csvLines[0]).toMatch(/^cursor,txid,seq,tenant_id,tenant,entity,op,as_of,kpi,/);
    expect(csvLines.slice(1, -1).map((line) => line.split(',')[0])).toEqual(logged.map((r) => r.cursor));
  });

  it('--since a date starts at the first change on or after it, and goes on from there', async () => {
    await db.sql`update kpi.kpi_changes set changed_at = '2026-01-01' where tenant_id = ${HOOLI}`;
    const [first] = await db.sql<[{ cursor: string }]>`
      select txid::text || '.' || seq as cursor from kpi.kpi_changes where changed_at >= '2026-06-01' order by txid, seq limit 1`;
    const out = join(dir, 'since');
    expect(runExport('--format', 'ndjson', '--out', out, '--since', '2026-06-01').code).toBe(0);
    const exported = readdirSync(out)
      .filter((f) => f.endsWith('.ndjson'))
      .flatMap((f) => readFileSync(join(out, f), 'utf8').trim().split('\n'))
      .map((line) => (JSON.parse(line) as { cursor: string }).cursor);
    expect(exported[0]).toBe(first!.cursor);
    const [txid, seq] = first!.cursor.split('.');
    expect(exported).toEqual((await fromLog(`${txid}.${BigInt(seq!) - 1n}`)).map((r) => r.cursor));
  });

  it('a directory whose position was pruned meanwhile: CURSOR_EXPIRED, exit 3, nothing written', async () => {
    const out = exportedDirectory('pruned');
    const files = readdirSync(out);
    await db.sql`update kpi.change_feed_settings set pruned_txid = pg_current_xact_id(), pruned_seq = 0`;
    try {
      const run = runExport('--format', 'parquet', '--out', out);
      expect(run.code).toBe(3);
      expect(run.err).toMatch(/CURSOR_EXPIRED: the changes after \d+\.\d+ have been pruned/);
      expect(readdirSync(out)).toEqual(files);
    } finally {
      await db.sql`update kpi.change_feed_settings set pruned_txid = '0', pruned_seq = 0`;
    }
  });

  it('bad arguments: exit 2 with what is wrong', () => {
    expect(runExport('--out', dir)).toMatchObject({ code: 2, err: expect.stringContaining('usage') });
    expect(runExport('--format', 'xlsx', '--out', join(dir, 'x'))).toMatchObject({ code: 2, err: expect.stringContaining('parquet, ndjson or csv') });
    expect(runExport('--format', 'csv', '--out', join(dir, 'y'), '--since', 'last week')).toMatchObject({ code: 2, err: expect.stringContaining('--since') });
  });
});
