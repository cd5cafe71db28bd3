// `npm run dashboard` as a user runs it: with no PostgREST it says so and how to start one; in front
// of an API it serves the page pointed at it; with --emulate it serves the tests' emulation itself,
// and says so, on the page too. (What the page does in a browser: dashboard.test.ts.)
import { spawn, spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';
import { connectAsAuthenticator, createReplay, TEST_JWT_SECRET } from '../helpers/postgrest.js';
import { serveReplay } from '../helpers/postgrest/http.js';
import { insertTwoTenantsWithHistory, WEEKS } from '../fixtures/api.js';
import { ACME } from '../fixtures/tenants.js';

const db = useTestDatabase();
beforeAll(() => insertTwoTenantsWithHistory(db.sql));

const env = (extra: Record<string, string>) => ({ ...process.env, DATABASE_URL: db.url, PGRST_JWT_SECRET: TEST_JWT_SECRET, ...extra });

/** Runs the command until it prints its URL; the URL, the output, and a way to stop it. */
async function serve(args: string[], extra: Record<string, string> = {}) {
  const child = spawn('npm', ['run', '--silent', 'dashboard', '--', '--port', '0', ...args], { cwd: projectRoot, env: env(extra), detached: true });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL after 60 s:\n${out}`)), 60_000);
    const read = (chunk: Buffer) => {
      out += chunk.toString();
      const found = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/#token=\S+)/.exec(out);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]!);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => reject(new Error(`exited ${code}:\n${out}`)));
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      process.kill(-child.pid!, 'SIGTERM');
    });
  return { url, out: () => out, stop };
}

async function pageOf(url: string) {
  const base = url.slice(0, url.indexOf('#'));
  const token = new URLSearchParams(url.slice(url.indexOf('#') + 1)).get('token')!;
  const html = await (await fetch(base)).text();
  const script = await fetch(`${base}main.js`);
  const config = (await (await fetch(`${base}config.json`)).json()) as { apiUrl: string; streamUrl: string; emulation: boolean };
  return { html, script: { status: script.status, type: script.headers.get('content-type') }, config, token };
}

describe('npm run dashboard', () => {
  it('without PostgREST: says none answers, and how to start one or the emulation', { timeout: 90_000 }, async () => {
    const closed = `http://127.0.0.1:${await freePort(54401)}`;
    const result = spawnSync('npm', ['run', '--silent', 'dashboard'], { cwd: projectRoot, env: env({ KPI_API_URL: closed }), encoding: 'utf8', timeout: 60_000 });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`no PostgREST answers at ${closed} (KPI_API_URL)`);
    expect(result.stderr).toContain('docker compose up -d');
    expect(result.stderr).toContain('npm run dashboard -- --emulate');
  });

  it('in front of an API: serves the page pointed at it, not labelled an emulation, with a working token', { timeout: 90_000 }, async () => {
    const authenticator = connectAsAuthenticator(db.urlAs('authenticator'));
    const api = await serveReplay(createReplay(authenticator, { jwtSecret: TEST_JWT_SECRET }));
    const dashboard = await serve(['--tenant', ACME], { KPI_API_URL: api.url, KPI_STREAM_URL: 'http://127.0.0.1:9/v1/stream' });
    try {
      const page = await pageOf(dashboard.url);
      expect(page.config).toEqual({ apiUrl: api.url, streamUrl: 'http://127.0.0.1:9/v1/stream', emulation: false });
      expect(page.html).toContain('<script type="module" src="main.js">');
      expect(page.script).toEqual({ status: 200, type: 'text/javascript; charset=utf-8' });
      expect(dashboard.out()).toContain('warning: no change stream at http://127.0.0.1:9/v1/stream');
      const rows = await fetch(`${api.url}/kpi_history?order=as_of.asc`, { headers: { Authorization: `Bearer ${page.token}` } });
      expect(((await rows.json()) as { as_of: string }[]).map((r) => r.as_of)).toEqual(WEEKS);
    } finally {
      await dashboard.stop();
      await api.close();
      await authenticator.end();
    }
  });

  it('--emulate: serves the emulation and the stream itself, and the page is told it is an emulation', { timeout: 90_000 }, async () => {
    const dashboard = await serve(['--emulate', '--tenant', ACME]);
    try {
      expect(dashboard.out()).toContain("(the tests' PostgREST emulation: not PostgREST)");
      const page = await pageOf(dashboard.url);
      expect(page.config.emulation).toBe(true);
      expect(page.html).toContain("the tests' PostgREST emulation");
      const rows = await fetch(`${page.config.apiUrl}/kpi_history?order=as_of.asc`, { headers: { Authorization: `Bearer ${page.token}` } });
      expect(((await rows.json()) as { as_of: string }[]).map((r) => r.as_of)).toEqual(WEEKS);
      const health = await fetch(page.config.streamUrl.replace(/\/v1\/stream$/, '/v1/health'));
      expect(health.status).toBe(200);
    } finally {
      await dashboard.stop();
    }
  });
});

