// The dashboard: a tenant's weekly KPIs, their anomalies, months and quarters, custom KPIs and the
// CSV export, kept live by the change stream. It uses only the SDK's public browser entry.
//
// Where things are: config.json (served beside this page by `npm run dashboard`) gives the API's
// and the stream's URLs; the token, and the tenant when it grants several, come in the page's
// fragment (#token=…&tenant=…), which browsers never send to a server.
import { createKpiHistoryClient, KpiHistoryError, type CustomKpiRow, type KpiHistoryClient, type KpiRollupRows } from 'kpi-history';
import { seriesChart } from './chart.js';
import { builtInSeries, customSeries, type Series } from './series.js';

export interface DashboardConfig {
  apiUrl: string;
  streamUrl: string;
  /** True when the API is the tests' PostgREST emulation: the page says so. */
  emulation: boolean;
}

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const WEEKS = 520;
let loads = 0;

function show(message: string | null): void {
  const box = $('#message');
  box.hidden = message === null;
  box.textContent = message ?? '';
}

function tenantIdsOf(token: string): string[] {
  try {
    const payload = JSON.parse(atob(token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))) as { tenant_ids?: unknown };
    return Array.isArray(payload.tenant_ids) ? payload.tenant_ids.map(String) : [];
  } catch {
    return [];
  }
}

/** What went wrong, in words a user can act on. */
function explain(error: unknown, config: DashboardConfig, token: string): string {
  if (!(error instanceof KpiHistoryError)) return `Something unexpected happened: ${(error as Error).message}`;
  switch (error.code) {
    case 'FORBIDDEN':
      return 'FORBIDDEN: this token does not give access to that tenant. Ask for a token of your own tenant.';
    case 'TENANT_REQUIRED':
      return `TENANT_REQUIRED: this token grants ${tenantIdsOf(token).length || 'several'} tenants; choose one.`;
    case 'UNAUTHORIZED':
      return /expired/i.test(error.message)
        ? 'Your token has expired: get a new one (npm run token) and open the page with it.'
        : `UNAUTHORIZED: the API refused the token (${error.message}).`;
    case 'NETWORK_ERROR':
      return `NETWORK_ERROR: no answer from the API at ${config.apiUrl} — it is not running, or it refuses this page's origin (CORS).`;
    default:
      return `${error.code}: ${error.message}`;
  }
}

function offerTenants(token: string): void {
  const choice = $('#tenant-choice');
  const select = choice.querySelector('select')!;
  select.replaceChildren(new Option('—', ''), ...tenantIdsOf(token).map((id) => new Option(id, id)));
  select.onchange = () => {
    const params = new URLSearchParams(location.hash.slice(1));
    params.set('tenant', select.value);
    location.hash = params.toString();
    location.reload();
  };
  choice.hidden = false;
}

function table(element: HTMLTableElement, rows: KpiRollupRows['month'][]): void {
  const columns: [string, (row: KpiRollupRows['month']) => unknown][] = [
    ['Period', (r) => r.period_start],
    ['Weeks', (r) => `${r.weeks}${r.complete ? '' : ' (so far)'}`],
    ['AIV avg', (r) => r.aiv_pct_avg],
    ['ATI avg', (r) => r.ati_pct_avg],
    ['CRS avg', (r) => r.crs_pct_avg],
    ['Elasticity avg', (r) => r.elasticity_usd_per_point_avg],
    ['VLI avg', (r) => `${r.vli_integrity_pct_avg}${r.vli_fallback_weeks ? ` (${r.vli_fallback_weeks} fallback)` : ''}`],
    ['HRP avg', (r) => (r.hrp_pct_avg === null ? '—' : `${r.hrp_pct_avg}${r.hrp_weeks < r.weeks ? ` (${r.hrp_weeks} weeks)` : ''}`)],
  ];
  const head = document.createElement('tr');
  for (const [name] of columns) head.append(Object.assign(document.createElement('th'), { textContent: name }));
  element.replaceChildren(
    head,
    ...rows.map((row) => {
      const tr = document.createElement('tr');
      tr.dataset.period = row.period_start;
      for (const [, value] of columns) tr.append(Object.assign(document.createElement('td'), { textContent: String(value(row)) }));
      return tr;
    }),
  );
}

function drawCharts(series: Series[]): void {
  const charts = $('#charts');
  const width = Math.max(300, Math.floor((charts.clientWidth || 960) / 2) - 24);
  charts.replaceChildren(
    ...series.map((s) => {
      const section = document.createElement('section');
      section.className = 'chart';
      section.dataset.series = s.key;
      section.dataset.points = String(s.points.length);
      section.append(Object.assign(document.createElement('h3'), { textContent: s.label }), seriesChart(s, width));
      return section;
    }),
  );
}

function customChoices(definitions: CustomKpiRow[], selected: Set<string>, redraw: () => void): void {
  const box = $('#custom-kpis');
  box.hidden = definitions.length === 0;
  box.replaceChildren(
    Object.assign(document.createElement('legend'), { textContent: 'Custom KPIs' }),
    ...definitions.map((definition) => {
      const input = Object.assign(document.createElement('input'), { type: 'checkbox', value: definition.key, checked: selected.has(definition.key) });
      input.onchange = () => {
        if (input.checked) selected.add(definition.key);
        else selected.delete(definition.key);
        redraw();
      };
      const label = document.createElement('label');
      label.append(input, ` ${definition.label}`);
      return label;
    }),
  );
}

async function load(client: KpiHistoryClient, selected: Set<string>, reload: () => void): Promise<void> {
  const [weeks, anomalies, definitions, months, quarters] = await Promise.all([
    client.history({ order: 'asc', limit: WEEKS }),
    client.anomalies({ order: 'asc', limit: 1000 }),
    client.customKpis.list(),
    client.history({ period: 'month', order: 'asc', limit: 120 }),
    client.history({ period: 'quarter', order: 'asc', limit: 40 }),
  ]);
  const chosen = definitions.filter((d) => selected.has(d.key));
  const values = chosen.length ? await client.customValues({ keys: chosen.map((d) => d.key), limit: WEEKS * chosen.length }) : [];
  customChoices(definitions, selected, reload);
  drawCharts([...builtInSeries(weeks, anomalies), ...chosen.map((d) => customSeries(d, values, anomalies))]);
  table($('#months'), months);
  table($('#quarters'), quarters as unknown as KpiRollupRows['month'][]);
  $('#tenant').textContent = months[0]?.tenant ?? '';
  document.body.dataset.weeks = String(weeks.length);
  document.body.dataset.latestWeek = weeks.at(-1)?.as_of ?? '';
  document.body.dataset.loads = String(++loads);
  document.body.dataset.state = 'ready';
  show(null);
}

async function download(client: KpiHistoryClient): Promise<void> {
  // Content-Disposition is out of a cross-origin page's reach; the SDK names the file as the server does.
  const { blob, filename } = await client.exportCsvFile({ weeks: WEEKS });
  const link = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function main(): Promise<void> {
  const config = (await (await fetch('config.json')).json()) as DashboardConfig;
  $('#emulation').hidden = !config.emulation;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (!token) {
    const form = $<HTMLFormElement>('#token-form');
    form.hidden = false;
    form.onsubmit = (event) => {
      event.preventDefault();
      location.hash = new URLSearchParams({ token: String(new FormData(form).get('token')) }).toString();
      location.reload();
    };
    $('#live').textContent = '';
    document.body.dataset.state = 'no-token';
    return;
  }
  const client = createKpiHistoryClient({ url: config.apiUrl, token, tenantId: params.get('tenant') ?? undefined, streamUrl: config.streamUrl });
  const selected = new Set<string>();
  const fail = (error: unknown) => {
    show(explain(error, config, token));
    if (error instanceof KpiHistoryError && error.code === 'TENANT_REQUIRED') offerTenants(token);
    $('#live').textContent = '';
    document.body.dataset.state = 'error';
    document.body.dataset.error = error instanceof KpiHistoryError ? error.code : 'UNEXPECTED';
  };
  // Changes arrive in bursts (a fill writes many rows): one reload after the burst.
  let pending: ReturnType<typeof setTimeout> | undefined;
  const reload = () => {
    clearTimeout(pending);
    pending = setTimeout(() => load(client, selected, reload).catch(fail), 100);
  };
  try {
    await load(client, selected, reload);
  } catch (error) {
    fail(error);
    return;
  }
  $('main').hidden = false;
  $('#download').onclick = () => download(client).catch(fail);
  const LIVE = 'Live: changes appear as they are committed.';
  $('#live').textContent = LIVE;
  client
    .watch({
      onChange: () => {
        $('#live').textContent = LIVE;
        reload();
      },
      onError: () => ($('#live').textContent = 'Reconnecting to the change stream…'),
    })
    .catch(fail);
}

void main();
