// The Prefer header as PostgREST v16.2 reads it (src/library/PostgREST/ApiRequest/Preferences.hs):
// comma-separated values, the first of each kind wins; `timezone=` and `max-affected=` take a
// value; anything else it does not know is invalid — ignored, unless `handling=strict` makes the
// request a 400 PGRST122 (Plan.hs). What the replay does not model it refuses (ReplayUnsupported).
import { ReplayUnsupported } from './query-string.js';

export interface Preferences {
  resolution: 'merge-duplicates' | 'ignore-duplicates' | null;
  representation: 'full' | 'none' | 'headers-only' | null;
  count: 'exact' | 'planned' | 'estimated' | null;
  missing: 'default' | 'null' | null;
  handling: 'strict' | 'lenient' | null;
  timezone: string | null;
  maxAffected: number | null;
  invalid: string[];
}

const KINDS = {
  resolution: ['resolution=merge-duplicates', 'resolution=ignore-duplicates'],
  representation: ['return=representation', 'return=minimal', 'return=headers-only'],
  count: ['count=exact', 'count=planned', 'count=estimated'],
  // tx=commit|rollback: accepted, and read only when db-tx-end allows it (this project's does not).
  transaction: ['tx=commit', 'tx=rollback'],
  missing: ['missing=default', 'missing=null'],
  handling: ['handling=strict', 'handling=lenient'],
} as const;
const ACCEPTED = new Set<string>(Object.values(KINDS).flat());
const REPRESENTATION = { 'return=representation': 'full', 'return=minimal': 'none', 'return=headers-only': 'headers-only' } as const;

export function parsePreferences(header: string | undefined): Preferences {
  const prefs = (header ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  const first = <K extends keyof typeof KINDS>(kind: K) => prefs.find((p) => (KINDS[kind] as readonly string[]).includes(p)) ?? null;
  const value = (prefix: string) => prefs.find((p) => p.startsWith(prefix))?.slice(prefix.length) ?? null;
  const representation = first('representation');
  const maxAffected = value('max-affected=');
  return {
    resolution: (first('resolution')?.slice('resolution='.length) ?? null) as Preferences['resolution'],
    representation: representation ? REPRESENTATION[representation as keyof typeof REPRESENTATION] : null,
    count: (first('count')?.slice('count='.length) ?? null) as Preferences['count'],
    missing: (first('missing')?.slice('missing='.length) ?? null) as Preferences['missing'],
    handling: (first('handling')?.slice('handling='.length) ?? null) as Preferences['handling'],
    timezone: value('timezone='),
    maxAffected: maxAffected !== null && /^\s*-?\d+\s*$/.test(maxAffected) ? Number(maxAffected) : null,
    invalid: prefs.filter((p) => !ACCEPTED.has(p) && !p.startsWith('timezone=') && !p.startsWith('max-affected=')),
  };
}

export type PlanKind = 'read' | 'call' | 'insert' | 'update' | 'delete';

/**
 * What the replay models, checked before planning: count=exact (not planned or estimated),
 * timezone, handling, return on writes; max-affected only where it changes nothing (lenient).
 */
export function checkModelled(prefs: Preferences, kind: PlanKind): void {
  if (prefs.count === 'planned' || prefs.count === 'estimated') throw new ReplayUnsupported(`Prefer: count=${prefs.count}`);
  if (prefs.maxAffected !== null && prefs.handling === 'strict' && kind !== 'read' && kind !== 'insert') {
    throw new ReplayUnsupported('Prefer: max-affected with handling=strict');
  }
  if (kind === 'insert' || kind === 'update' || kind === 'delete') {
    if (prefs.resolution) throw new ReplayUnsupported(`Prefer: resolution=${prefs.resolution}`);
    if (prefs.missing && kind !== 'delete') throw new ReplayUnsupported(`Prefer: missing=${prefs.missing}`);
    if (prefs.representation === 'headers-only') throw new ReplayUnsupported('Prefer: return=headers-only');
  }
}

/** Preferences.hs `prefAppliedHeader` over Response.hs `responsePreferences`: what the answer says it applied. */
export function preferenceApplied(prefs: Preferences, kind: PlanKind): string | null {
  const representation = { full: 'return=representation', none: 'return=minimal', 'headers-only': 'return=headers-only' } as const;
  const write = kind === 'insert' || kind === 'update' || kind === 'delete';
  const applied = [
    write && kind !== 'delete' && prefs.missing ? `missing=${prefs.missing}` : null,
    write && prefs.representation ? representation[prefs.representation] : null,
    prefs.count ? `count=${prefs.count}` : null,
    prefs.handling ? `handling=${prefs.handling}` : null,
    prefs.timezone !== null ? `timezone=${prefs.timezone}` : null,
    prefs.handling === 'strict' && prefs.maxAffected !== null && (kind === 'update' || kind === 'delete' || kind === 'call')
      ? `max-affected=${prefs.maxAffected}`
      : null,
  ].filter((p): p is string => p !== null);
  return applied.length ? applied.join(', ') : null;
}
