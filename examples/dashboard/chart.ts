// One KPI's weeks as a line chart, drawn with Observable Plot: SVG, so every point is an element
// with an aria-label (what a screen reader says, and what the browser test reads), and hovering
// an anomaly shows its score and direction (an SVG <title>).
import * as Plot from '@observablehq/plot';
import { scoreText, type Point, type Series } from './series.js';

const utc = (day: string) => new Date(`${day}T00:00:00Z`);
const BLUE = '#3060c0';

export function seriesChart(series: Series, width: number): SVGSVGElement | HTMLElement {
  const points = series.points.map((p) => ({ ...p, date: utc(p.as_of) }));
  const measured = points.filter((p) => p.value !== null && !p.fallback);
  const fallback = points.filter((p) => p.fallback);
  const missing = points.filter((p) => p.value === null);
  const values = new Map(points.map((p) => [p.as_of, p.value]));
  const anomalies = series.anomalies.map((a) => ({ ...a, date: utc(a.as_of), y: values.get(a.as_of) ?? a.value }));
  const label = (p: Point, note = '') => `${series.key} ${p.as_of} ${p.value}${note}`;
  return Plot.plot({
    width,
    height: 170,
    marginLeft: 60,
    x: { type: 'utc', label: null },
    y: { label: series.unit, grid: true, nice: true, tickFormat: (d: number) => d.toLocaleString('en-US', { maximumFractionDigits: 2 }) },
    marks: [
      // A week without a value interrupts the line: nothing is drawn where nothing was measured.
      Plot.lineY(points, { x: 'date', y: 'value', stroke: BLUE }),
      Plot.dot(measured, { x: 'date', y: 'value', r: 2.5, fill: BLUE, ariaLabel: (p: Point) => label(p), title: (p: Point) => `${p.as_of}: ${p.value}` }),
      Plot.dot(fallback, {
        x: 'date',
        y: 'value',
        r: 3,
        fill: 'white',
        stroke: BLUE,
        ariaLabel: (p: Point) => label(p, ' fallback'),
        title: (p: Point) => `${p.as_of}: no VLI audit before the week ended, ${p.value} assumed`,
      }),
      Plot.tickX(missing, {
        x: 'date',
        stroke: '#9aa3b5',
        strokeDasharray: '2,3',
        ariaLabel: (p: Point) => `${series.key} ${p.as_of} missing`,
        title: (p: Point) => `${p.as_of}: no value`,
      }),
      Plot.dot(anomalies, {
        x: 'date',
        y: 'y',
        r: 7,
        stroke: 'crimson',
        strokeWidth: 2,
        fill: 'none',
        ariaLabel: (a: (typeof anomalies)[number]) => `anomaly ${a.kpi} ${a.as_of} ${a.direction} ${scoreText(a.score)}`,
        title: (a: (typeof anomalies)[number]) =>
          `Anomaly ${a.as_of}: ${a.value} is ${a.direction === 'up' ? 'above' : 'below'} the median ${a.baseline_median} of ${a.baseline_weeks} weeks, score ${scoreText(a.score)} (${a.direction}, threshold ${a.threshold})`,
      }),
    ],
  });
}
