// Timing helpers: wall time of one call, and percentiles of many.
import type postgres from 'postgres';

export async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const started = process.hrtime.bigint();
  const result = await run();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, result };
}

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN;
  const index = Math.min(sortedMs.length - 1, Math.ceil((p / 100) * sortedMs.length) - 1);
  return sortedMs[Math.max(0, index)]!;
}

export function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export interface Distribution {
  p50: number;
  p95: number;
  p99: number;
  samples: number;
}

export function distribution(ms: number[]): Distribution {
  const sorted = [...ms].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), samples: ms.length };
}

/** Deterministic pseudo-random choice (mulberry32), so runs sample the same tenants. */
export function sampler(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Times two ways of reading the same tenant, and optionally a third, for each tenant: first a
 * warm-up pass over every tenant (plans, buffers), then the measured pass, in which the two ways
 * take turns going first so that neither pays for the other's cache misses. Each reader returns
 * its time in milliseconds.
 */
export async function takeTurns(
  tenantIds: string[],
  first: (tenantId: string) => Promise<number>,
  second: (tenantId: string) => Promise<number>,
  after?: (tenantId: string) => Promise<number>,
): Promise<{ first: number[]; second: number[]; after: number[] }> {
  for (const id of tenantIds) {
    await first(id);
    await second(id);
  }
  const times = { first: [] as number[], second: [] as number[], after: [] as number[] };
  for (const [i, id] of tenantIds.entries()) {
    if (i % 2 === 0) {
      times.first.push(await first(id));
      times.second.push(await second(id));
    } else {
      times.second.push(await second(id));
      times.first.push(await first(id));
    }
    if (after) times.after.push(await after(id));
  }
  return times;
}

class RolledBack<R> extends Error {
  constructor(readonly measured: { ms: number; result: R }) {
    super('rolled back');
  }
}

/**
 * Two variants of a write, each run `repeat` times in a transaction rolled back afterwards (so
 * every run starts from the same data), taking turns going first. `run` prepares its variant in
 * the transaction and returns what it timed. Gives the medians and the last result of each.
 */
export async function takeTurnsRolledBack<R>(
  sql: postgres.Sql,
  repeat: number,
  run: (tx: postgres.TransactionSql, withIt: boolean) => Promise<{ ms: number; result: R }>,
): Promise<{ withMs: number; withoutMs: number; withResult: R; withoutResult: R }> {
  const once = async (withIt: boolean) => {
    try {
      await sql.begin(async (tx) => {
        throw new RolledBack(await run(tx, withIt));
      });
    } catch (error) {
      if (error instanceof RolledBack) return error.measured as { ms: number; result: R };
      throw error;
    }
    throw new Error('unreachable');
  };
  const times = { with: [] as number[], without: [] as number[] };
  const last: { with?: R; without?: R } = {};
  for (let i = 0; i < repeat; i++) {
    for (const withIt of i % 2 === 0 ? [true, false] : [false, true]) {
      const measured = await once(withIt);
      times[withIt ? 'with' : 'without'].push(measured.ms);
      last[withIt ? 'with' : 'without'] = measured.result;
    }
  }
  return { withMs: median(times.with), withoutMs: median(times.without), withResult: last.with!, withoutResult: last.without! };
}
