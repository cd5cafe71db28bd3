// A log-log line chart as plain SVG text: a handful of series of (x, y) points, decade gridlines,
// a legend. Enough for the benchmark's scaling curve; no browser, no dependency.

export interface Series {
  name: string;
  color: string;
  /** Dashed: a reference line rather than a measurement. */
  dashed?: boolean;
  points: { x: number; y: number }[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** 1, 2, 5 × powers of ten within [low, high]: the tick values of a log axis. */
function ticks(low: number, high: number): number[] {
  const values: number[] = [];
  for (let decade = Math.floor(Math.log10(low)); decade <= Math.ceil(Math.log10(high)); decade++) {
    for (const step of [1, 2, 5]) {
      const value = step * 10 ** decade;
      if (value >= low && value <= high) values.push(value);
    }
  }
  return values;
}

function label(value: number, unit: 'tenants' | 'ms'): string {
  if (unit === 'ms') return value >= 1000 ? `${value / 1000} s` : `${value} ms`;
  return value >= 1e6 ? `${value / 1e6}M` : value >= 1e3 ? `${value / 1e3}k` : String(value);
}

export function logLogChart(series: Series[], options: ChartOptions): string {
  const width = options.width ?? 760;
  const height = options.height ?? 440;
  const margin = { left: 70, right: 215, top: 40, bottom: 50 };
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y > 0);
  const xMin = 10 ** Math.floor(Math.log10(Math.min(...xs)));
  const xMax = 10 ** Math.ceil(Math.log10(Math.max(...xs)));
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...ys)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...ys)));
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const px = (x: number) => margin.left + ((Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * plotW;
  const py = (y: number) => margin.top + plotH - ((Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * plotH;
  const f = (n: number) => n.toFixed(1);

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  parts.push(`<text x="${margin.left}" y="24" font-size="15" font-weight="bold">${escape(options.title)}</text>`);
  for (const x of ticks(xMin, xMax)) {
    parts.push(`<line x1="${f(px(x))}" y1="${margin.top}" x2="${f(px(x))}" y2="${margin.top + plotH}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${f(px(x))}" y="${margin.top + plotH + 16}" text-anchor="middle" fill="#555">${label(x, 'tenants')}</text>`);
  }
  for (const y of ticks(yMin, yMax)) {
    parts.push(`<line x1="${margin.left}" y1="${f(py(y))}" x2="${margin.left + plotW}" y2="${f(py(y))}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${margin.left - 6}" y="${f(py(y) + 4)}" text-anchor="end" fill="#555">${label(y, 'ms')}</text>`);
  }
  parts.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
  parts.push(`<text x="${margin.left + plotW / 2}" y="${height - 10}" text-anchor="middle">${escape(options.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escape(options.yLabel)}</text>`);
  series.forEach((s, i) => {
    const points = s.points.filter((p) => p.y > 0);
    const dash = s.dashed ? ' stroke-dasharray="5 4"' : '';
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${points.map((p) => `${f(px(p.x))},${f(py(p.y))}`).join(' ')}"/>`);
    for (const p of points) parts.push(`<circle cx="${f(px(p.x))}" cy="${f(py(p.y))}" r="3" fill="${s.color}"/>`);
    const ly = margin.top + 14 + i * 20;
    parts.push(`<line x1="${width - margin.right + 16}" y1="${ly - 4}" x2="${width - margin.right + 40}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${dash}/>`);
    parts.push(`<text x="${width - margin.right + 46}" y="${ly}">${escape(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
