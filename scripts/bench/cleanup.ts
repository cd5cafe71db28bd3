// The source cleanup at scale, on a copy of the benchmark's data (it deletes): every tenant on
// the 90-day plan, the whole cleanup timed, its longest batch read from the run log.
import postgres from 'postgres';
import { timed } from './measure.js';
import type { Report } from './report.js';

/**
 * Copies the benchmark database (the copy needs it without connections: `connections` are closed),
 * puts every tenant on the 90-day plan, and times the source cleanup there. The copy is dropped.
 */
export async function measureCleanup(url: string, connections: postgres.Sql[]): Promise<Report['cleanup']> {
  await Promise.all(connections.map((c) => c.end()));
  const name = new URL(url).pathname.slice(1);
  const copy = `${name}_cleanup`;
  const server = new URL(url);
  server.pathname = '/postgres';
  const admin = postgres(server.toString(), { max: 1, onnotice: () => {} });
  const copyUrl = new URL(url);
  copyUrl.pathname = `/${copy}`;
  try {
    await admin.unsafe(`drop database if exists "${copy}"`);
    await admin.unsafe(`create database "${copy}" template "${name}" strategy file_copy`);
    const sql = postgres(copyUrl.toString(), { max: 1, onnotice: () => {} });
    try {
      await sql`update kpi.tenants set plan = 'free'`;
      await sql`vacuum analyze`;
      await sql`checkpoint`;
      const { ms } = await timed(() => sql`call kpi.run_source_cleanup()`);
      const [{ details }] = await sql<[{ details: { deleted: Record<string, number>; batches: number; batch_size: number; longest_batch_ms: number; total_batch_ms: number } }]>`
        select details from kpi.kpi_runs where kind = 'cleanup' order by id desc limit 1`;
      return {
        ms,
        deleted: details.deleted,
        batches: details.batches,
        batchSize: details.batch_size,
        longestBatchMs: Number(details.longest_batch_ms),
        meanBatchMs: Number(details.total_batch_ms) / details.batches,
      };
    } finally {
      await sql.end();
    }
  } finally {
    await admin.unsafe(`drop database if exists "${copy}"`);
    await admin.end();
  }
}

