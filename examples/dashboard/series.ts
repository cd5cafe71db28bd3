// The page's data: a tenant's weeks as one series per KPI, shaped from the SDK's rows. Kept apart
// from drawing so that what the chart shows is plain data (and the browser test compares it).
import type { CustomKpiRow, CustomKpiValueRow, KpiAnomalyRow, KpiHistoryRow, KpiName } from 'kpi-history';

export interface Point {
  as_of: string;
  /** null: no value that week (HRP missing or invalid; a custom KPI without data). */
  value: number | null;
  /** The VLI of a week without an audit: the fallback 100, not a measurement. */
  fallback: boolean;
}

export interface Series {
  key: string;
  label: string;
  unit: string;
  points: Point[];
  anomalies: KpiAnomalyRow[];
}

export const BUILT_IN: readonly { key: KpiName; label: string; unit: string }[] = [
  { key: 'aiv_pct', label: 'AIV', unit: '%' },
  { key: 'ati_pct', label: 'ATI', unit: '%' },
  { key: 'crs_pct', label: 'CRS', unit: '%' },
  { key: 'elasticity_usd_per_point', label: 'Elasticity', unit: 'USD per point' },
  { key: 'vli_integrity_pct', label: 'VLI integrity', unit: '%' },
  { key: 'hrp_pct', label: 'HRP', unit: '%' },
];

const anomaliesOf = (anomalies: KpiAnomalyRow[], key: string) => anomalies.filter((a) => a.kpi === key);

/** The six built-in KPIs over the weeks (rows oldest first). */
export function builtInSeries(weeks: KpiHistoryRow[], anomalies: KpiAnomalyRow[]): Series[] {
  return BUILT_IN.map(({ key, label, unit }) => ({
    key,
    label,
    unit,
    points: weeks.map((week) => ({ as_of: week.as_of, value: week[key], fallback: key === 'vli_integrity_pct' && week.vli_is_fallback })),
    anomalies: anomaliesOf(anomalies, key),
  }));
}

/** A custom KPI over the weeks its values cover. */
export function customSeries(definition: CustomKpiRow, values: CustomKpiValueRow[], anomalies: KpiAnomalyRow[]): Series {
  return {
    key: definition.key,
    label: definition.label,
    unit: definition.unit ?? '',
    points: values.filter((v) => v.key === definition.key).map((v) => ({ as_of: v.as_of, value: v.value, fallback: false })),
    anomalies: anomaliesOf(anomalies, definition.key),
  };
}

/** An anomaly's score as people read it ("Infinity" when the baseline had no spread at all). */
export function scoreText(score: KpiAnomalyRow['score']): string {
  return typeof score === 'number' ? score.toFixed(2) : score === 'Infinity' ? '+∞' : '−∞';
}
