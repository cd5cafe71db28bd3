// The example dashboard (examples/dashboard) in headless Chromium — the operating system's package,
// driven by playwright-core — against the real database through the tests' PostgREST emulation and
// the real change stream. The page is served from another origin than the API and the stream, so
// the browser enforces their CORS headers as it would in production.
//
// Saves its screenshot to .data/screenshots/dashboard.png (KPI_UPDATE_SCREENSHOT=1: docs/dashboard.png too).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { TEST_JWT_SECRET } from '../helpers/postgrest.js';
import { insertAvi, insertClarity, insertTenant, insertVli } from '../fixtures/sources.js';
import { mintToken } from '../../scripts/token.js';
import { startDashboard, startEmulatedApi, type Dashboard } from '../../scripts/dashboard.js';
import { createKpiHistoryClient, type KpiHistoryClient } from '../../sdk/src/index.js';

/** The Chromium to drive, installed by scripts/browser.sh where it can (as root with apt-get), or why there is none. */
function findChromium(): { path: string | null; reason: string } {
  try {
    return { path: execFileSync('bash', ['scripts/browser.sh', 'path'], { cwd: projectRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim(), reason: '' };
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    return { path: null, reason: ` — not run: ${stderr.split('\n').at(-1) || 'no Chromium (bash scripts/browser.sh install)'}` };
  }
}
const browserPath = findChromium();

const db = useTestDatabase();
const NORTHWIND = randomUUID();
const RIVAL = randomUUID();
const WEEKS = Array.from({ length: 20 }, (_, i) => new Date(Date.UTC(2026, 5, 1 + 7 * i)).toISOString().slice(0, 10));
const day = (week: string, days: number, time: string) => `${new Date(Date.parse(week) + days * 86_400_000).toISOString().slice(0, 10)}T${time}Z`;

/**
 * A tenant with everything the page must show honestly: 20 weeks, the first four without a VLI
 * audit (fallback), one whose HRP is invalid (no HRP), a custom KPI, and a last week far off
 * in AIV (an anomaly).
 */
async function insertTenantWithHistory(id: string, slug: string, offset: number): Promise<void> {
  await insertTenant(db.sql, id, slug, slug);
  for (const [i, week] of WEEKS.entries()) {
    const last = i === WEEKS.length - 1;
    await insertAvi(db.sql, id, {
      weekStart: week,
      aivPct: last ? 35 + offset : 60 + offset + 0.5 * (i % 3),
      atiPct: 48 + offset + 0.25 * (i % 4),
      crsPct: 66 + offset + (i % 2),
      elasticityUsdPerPoint: 2100 + 10 * offset + 5 * (i % 2),
    });
    if (i >= 4) await insertVli(db.sql, id, day(week, 2, '09:30:00'), 92 + offset / 10 + (i % 3));
    // Week 9's report has no valid HRP: that week's HRP is NULL.
    const hrp = i === 9 ? 'high' : 0.05 + 0.005 * (i % 2) + offset / 1000;
    await insertClarity(db.sql, id, day(week, 3, '14:00:00'), { hrp, latency: { p95_ms: 200 + 10 * (i % 3) + offset } });
  }
  await db.sql`insert into kpi.custom_kpis (tenant_id, key, label, unit, source, path, aggregate)
               values (${id}, 'latency_p95', 'Latency p95', 'ms', 'clarity', '{latency,p95_ms}', 'avg')`;
  await db.sql`select kpi.backfill_kpi_history(${slug})`;
}

let api: Awaited<ReturnType<typeof startEmulatedApi>>;
let dashboard: Dashboard;
let browser: Browser;

beforeAll(async () => {
  if (!browserPath.path) return;
  await insertTenantWithHistory(NORTHWIND, 'northwind', 0);
  await insertTenantWithHistory(RIVAL, 'rival', 7);
  api = await startEmulatedApi(db.url, TEST_JWT_SECRET);
  dashboard = await startDashboard({ apiUrl: api.apiUrl, streamUrl: api.streamUrl, emulation: true });
  // --no-sandbox: Chromium's sandbox refuses to start as root (CI runs as root).
  browser = await chromium.launch({ executablePath: browserPath.path, args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  await dashboard?.close();
  await api?.close();
});

const tokenFor = (...tenantIds: string[]) => mintToken({ secret: TEST_JWT_SECRET, tenantIds });
const clientFor = async (tenantId: string): Promise<KpiHistoryClient> => createKpiHistoryClient({ url: api.apiUrl, token: await tokenFor(tenantId), retry: false });

interface Opened {
  page: Page;
  /** Console errors and uncaught exceptions so far. */
  errors: string[];
}

/** The dashboard with `#token=…` (and `tenant`), once it has loaded or failed (within `waitMs`). */
async function open(fragment: Record<string, string>, dashboardUrl = dashboard.url, waitMs = 20_000): Promise<Opened> {
  const page = await browser.newPage({ viewport: { width: 1040, height: 1100 }, acceptDownloads: true });
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${dashboardUrl}#${new URLSearchParams(fragment)}`);
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: waitMs });
  return { page, errors };
}

/** The aria-labels of one chart's marks: a point, a fallback point, a missing week, an anomaly. */
const labelsOf = (page: Page, series: string) =>
  page.$$eval(`[data-series="${series}"] svg [aria-label] > [aria-label]`, (marks) => marks.map((mark) => mark.getAttribute('aria-label')!));

const BUILT_IN = ['aiv_pct', 'ati_pct', 'crs_pct', 'elasticity_usd_per_point', 'vli_integrity_pct', 'hrp_pct'] as const;

describe.skipIf(!browserPath.path)(`the dashboard in Chromium${browserPath.reason}`, () => {
  it('draws each week the API returns for the tenant: fallback VLI and missing HRP as such, a custom KPI when chosen', async () => {
    const { page, errors } = await open({ token: await tokenFor(NORTHWIND) });
    const rows = await (await clientFor(NORTHWIND)).history({ order: 'asc', limit: 520 });
    expect(rows).toHaveLength(WEEKS.length);
    for (const key of BUILT_IN) {
      const expected = rows.map((row) =>
        row[key] === null ? `${key} ${row.as_of} missing` : `${key} ${row.as_of} ${row[key]}${key === 'vli_integrity_pct' && row.vli_is_fallback ? ' fallback' : ''}`,
      );
      const drawn = (await labelsOf(page, key)).filter((label) => !label.startsWith('anomaly'));
      expect(drawn.sort(), key).toEqual(expected.sort());
    }
    expect((await labelsOf(page, 'vli_integrity_pct')).filter((l) => l.endsWith('fallback'))).toHaveLength(4);
    expect((await labelsOf(page, 'hrp_pct')).filter((l) => l.endsWith('missing'))).toEqual([`hrp_pct ${WEEKS[9]} missing`]);

    // A custom KPI joins the chart when chosen, with the API's values.
    await page.check('#custom-kpis input[value="latency_p95"]');
    await page.waitForSelector('[data-series="latency_p95"] svg');
    const values = await (await clientFor(NORTHWIND)).customValues({ keys: ['latency_p95'] });
    expect((await labelsOf(page, 'latency_p95')).sort()).toEqual(values.map((v) => `latency_p95 ${v.as_of} ${v.value}`).sort());

    // Months and quarters: one table row per API row.
    const months = await (await clientFor(NORTHWIND)).history({ period: 'month', order: 'asc', limit: 120 });
    expect(await page.$$eval('#months tr[data-period]', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.period))).toEqual(months.map((m) => m.period_start));

    mkdirSync(`${projectRoot}.data/screenshots`, { recursive: true });
    await page.screenshot({ path: `${projectRoot}.data/screenshots/dashboard.png`, fullPage: true });
    if (process.env.KPI_UPDATE_SCREENSHOT === '1') copyFileSync(`${projectRoot}.data/screenshots/dashboard.png`, `${projectRoot}docs/dashboard.png`);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('marks anomalies where /kpi_anomalies says, with score and direction on hover', async () => {
    const { page, errors } = await open({ token: await tokenFor(NORTHWIND) });
    const anomalies = await (await clientFor(NORTHWIND)).anomalies({ order: 'asc' });
    expect(anomalies.map((a) => `${a.kpi} ${a.as_of} ${a.direction}`)).toContain(`aiv_pct ${WEEKS.at(-1)} down`);
    const marked = await page.$$eval('svg [aria-label^="anomaly "]', (marks) =>
      marks.map((mark) => ({ label: mark.getAttribute('aria-label')!, title: mark.querySelector('title')?.textContent ?? '' })),
    );
    expect(marked.map((m) => m.label.split(' ').slice(1, 4).join(' ')).sort()).toEqual(anomalies.map((a) => `${a.kpi} ${a.as_of} ${a.direction}`).sort());
    for (const anomaly of anomalies) {
      const mark = marked.find((m) => m.label.startsWith(`anomaly ${anomaly.kpi} ${anomaly.as_of}`))!;
      const score = typeof anomaly.score === 'number' ? anomaly.score.toFixed(2) : anomaly.score;
      expect(mark.title).toContain(`score ${score} (${anomaly.direction}`);
    }
    expect(errors).toEqual([]);
    await page.close();
  });

  it("a token for another tenant never shows this tenant's data, and asking for it is FORBIDDEN", async () => {
    const northwind = await (await clientFor(NORTHWIND)).history({ order: 'asc', limit: 520 });
    const own = new Set(northwind.map((row) => `aiv_pct ${row.as_of} ${row.aiv_pct}`));
    const rival = await open({ token: await tokenFor(RIVAL) });
    const drawn = await labelsOf(rival.page, 'aiv_pct');
    expect(drawn.length).toBeGreaterThan(0);
    expect(drawn.filter((label) => own.has(label))).toEqual([]);
    expect(await rival.page.textContent('#tenant')).toBe('rival');
    await rival.page.close();

    const asking = await open({ token: await tokenFor(RIVAL), tenant: NORTHWIND });
    expect(await asking.page.evaluate(() => document.body.dataset.error)).toBe('FORBIDDEN');
    expect(await asking.page.textContent('#message')).toMatch(/^FORBIDDEN: this token does not give access/);
    expect(await asking.page.$$('svg [aria-label]')).toHaveLength(0);
    expect(await asking.page.isHidden('main')).toBe(true);
    await asking.page.close();
  });

  it('says TENANT_REQUIRED (offering the tenants) and that an expired token has expired', async () => {
    const both = await open({ token: await tokenFor(NORTHWIND, RIVAL) });
    expect(await both.page.evaluate(() => document.body.dataset.error)).toBe('TENANT_REQUIRED');
    expect(await both.page.textContent('#message')).toContain('this token grants 2 tenants; choose one');
    expect(await both.page.$$eval('#tenant-choice option', (options) => options.map((o) => (o as HTMLOptionElement).value).filter(Boolean).sort())).toEqual([NORTHWIND, RIVAL].sort());
    await both.page.close();

    const expiredToken = await mintToken({ secret: TEST_JWT_SECRET, tenantIds: [NORTHWIND], ttlSeconds: 60, now: new Date(Date.now() - 3_600_000) });
    const expired = await open({ token: expiredToken });
    expect(await expired.page.evaluate(() => document.body.dataset.error)).toBe('UNAUTHORIZED');
    expect(await expired.page.textContent('#message')).toContain('Your token has expired');
    await expired.page.close();
  });

  it("downloads the CSV under the server's file name, though the browser hides Content-Disposition from this origin", async () => {
    const token = await tokenFor(NORTHWIND);
    // What the server answers (outside a browser, every header is readable).
    const direct = await fetch(`${api.apiUrl}/rpc/kpi_history_csv?weeks=520`, { headers: { Authorization: `Bearer ${token}`, Accept: 'text/csv' } });
    const serverName = /filename="([^"]+)"/.exec(direct.headers.get('content-disposition') ?? '')?.[1];
    expect(serverName).toMatch(/^kpi-history-northwind-\d{4}-\d{2}-\d{2}\.csv$/);
    const csv = await direct.text();

    const { page, errors } = await open({ token });
    // PostgREST's CORS exposes nine headers, not Content-Disposition: the page cannot read it.
    const seenByPage = await page.evaluate(
      async ([url, bearer]) => {
        const response = await fetch(url!, { headers: { Authorization: `Bearer ${bearer}`, Accept: 'text/csv' } });
        return { status: response.status, disposition: response.headers.get('content-disposition'), type: response.headers.get('content-type') };
      },
      [`${api.apiUrl}/rpc/kpi_history_csv?weeks=520`, token],
    );
    expect(seenByPage).toEqual({ status: 200, disposition: null, type: expect.stringMatching(/^text\/csv/) });

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    expect(download.suggestedFilename()).toBe(serverName);
    const saved = readFileSync((await download.path())!, 'utf8');
    expect(saved).toBe(csv);
    expect(saved.split('\r\n').filter(Boolean)).toHaveLength(WEEKS.length + 1);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('shows a fill committed elsewhere within 2 s, without a reload', async () => {
    // A tenant of its own: the new week changes what other tests would read.
    const live = randomUUID();
    await insertTenantWithHistory(live, `live-${live.slice(0, 8)}`, 3);
    const { page, errors } = await open({ token: await tokenFor(live) });
    const loads = await page.evaluate(() => Number(document.body.dataset.loads));
    // Gone if the page were loaded again.
    await page.evaluate(() => Object.assign(window, { sameDocument: true }));
    const next = new Date(Date.parse(WEEKS.at(-1)!) + 7 * 86_400_000).toISOString().slice(0, 10);
    await insertAvi(db.sql, live, { weekStart: next, aivPct: 61.25 });
    await db.sql`select kpi.fill_kpi_history(${live})`;
    // The promise to a viewer: a committed fill is on screen within 2 s.
    await page.waitForFunction((week) => document.body.dataset.latestWeek === week, next, { timeout: 2000 });
    expect(await labelsOf(page, 'aiv_pct')).toContain(`aiv_pct ${next} 61.25`);
    expect(await page.evaluate(() => Number(document.body.dataset.loads))).toBeGreaterThan(loads);
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("is refused by the browser when the API does not allow the page's origin", async () => {
    const strict = await startEmulatedApi(db.url, TEST_JWT_SECRET, ['https://app.example.com']);
    const elsewhere = await startDashboard({ apiUrl: strict.apiUrl, streamUrl: strict.streamUrl, emulation: true });
    try {
      // The SDK retries a GET that gets no answer (1 s, 2 s, 4 s, as postgrest-js does) before it
      // says NETWORK_ERROR: 7 s at least, three times that on a busy CI machine.
      const { page } = await open({ token: await tokenFor(NORTHWIND) }, elsewhere.url, 50_000);
      expect(await page.evaluate(() => document.body.dataset.error)).toBe('NETWORK_ERROR');
      expect(await page.textContent('#message')).toContain("refuses this page's origin (CORS)");
      await page.close();
    } finally {
      await elsewhere.close();
      await strict.close();
    }
  }, 60_000);
});
