// scripts/db.sh on a cluster of its own: idempotent start, pg_cron preloaded, recovery after a crash.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/dbmate.js';
import { freePort } from '../helpers/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'kpi-dbsh-'));
// Reachable by the postgres user, as a checkout usually is (mkdtemp makes it 700).
chmodSync(dir, 0o755);
const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('[kpi-history tests] scripts/db.sh ownership tests — not run: they need root (the server then runs as postgres)');
const env = {
  ...process.env,
  KPI_DB_DIR: join(dir, 'pg'),
  KPI_DB_PORT: String(await freePort(54349)),
  KPI_DB_NAME: 'kpi_dbsh',
  KPI_DB_FAST: '1',
};

function dbsh(...args: string[]) {
  const result = spawnSync('bash', [`${projectRoot}scripts/db.sh`, ...args], { env, encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout.trim(), stderr: result.stderr.trim() };
}

/** True when something accepts connections on the port. */
function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Holds `port` the way a client's ephemeral port does: the local end of a connection to a listener
 * elsewhere, so nothing answers on `port` and yet a server cannot bind it.
 */
async function holdAsClientPort(port: number): Promise<() => Promise<void>> {
  const listener = createServer((peer) => peer.on('error', () => {}));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const address = listener.address();
  if (address === null || typeof address === 'string') throw new Error('the listener has no port');
  const client: Socket = await new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port: address.port, localAddress: '127.0.0.1', localPort: port });
    socket.once('connect', () => resolve(socket)).once('error', reject);
  });
  return async () => {
    client.destroy();
    await new Promise((resolve) => listener.close(resolve));
  };
}

afterAll(() => {
  dbsh('down');
  rmSync(dir, { recursive: true, force: true });
});

describe('scripts/db.sh', () => {
  it('up creates and starts the cluster; up again is a no-op', () => {
    expect(dbsh('up')).toMatchObject({ code: 0 });
    const again = dbsh('up');
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/creating|starting/);
  }, 120_000);

  it('url names the application database on 127.0.0.1 and the chosen port', () => {
    expect(dbsh('url').stdout).toBe(`postgres://postgres@127.0.0.1:${env.KPI_DB_PORT}/kpi_dbsh`);
  });

  it('psql shows pg_cron installed, preloaded, and scheduling in the application database', () => {
    const out = dbsh(
      'psql',
      '-tA',
      '-c',
      "select string_agg(extname, ',' order by extname) from pg_extension",
      '-c',
      'show shared_preload_libraries',
      '-c',
      'show cron.database_name',
      '-c',
      'show listen_addresses',
    );
    expect(out.stdout.split('\n')).toEqual(['pg_cron,plpgsql', 'pg_cron', 'kpi_dbsh', '127.0.0.1']);
  });

  it('up recovers after the server was killed (stale postmaster.pid)', () => {
    const pid = Number(readFileSync(join(env.KPI_DB_DIR, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    execFileSync('sleep', ['1']);
    expect(dbsh('status').code).toBe(3);
    const up = dbsh('up');
    expect(up.code).toBe(0);
    expect(dbsh('status')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^running/) });
  }, 120_000);

  // As root the server runs as `postgres`; only then does the script change any owner.
  it.runIf(isRoot)('as root, gives the postgres user only the directories it creates (KPI_DB_DIR=/pgdata must not chown /)', async () => {
    const parent = join(dir, 'owned-by-root');
    mkdirSync(parent, { mode: 0o755 });
    const deep = join(parent, 'a', 'b', 'pg');
    // A port of its own: the next one up may belong to another test file's cluster.
    const port = await freePort(Number(env.KPI_DB_PORT) + 1);
    const result = spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'up'], {
      env: { ...env, KPI_DB_DIR: deep, KPI_DB_PORT: String(port) },
      encoding: 'utf8',
    });
    try {
      expect(result.status, result.stderr).toBe(0);
      const postgresUid = statSync(deep).uid;
      expect(postgresUid).not.toBe(0);
      expect(statSync(parent).uid).toBe(0);
      expect(statSync(dir).uid).toBe(0);
      expect(statSync(join(parent, 'a')).uid).toBe(postgresUid);
      expect(statSync(join(parent, 'a', 'b')).uid).toBe(postgresUid);
      expect(statSync(`${deep}.log`).uid).toBe(postgresUid);
    } finally {
      spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'down'], { env: { ...env, KPI_DB_DIR: deep } });
    }
  }, 120_000);

  it.runIf(isRoot)('as root, a data directory the postgres user cannot reach goes under /var/lib/postgresql, the parent untouched', () => {
    const closed = join(dir, 'closed');
    mkdirSync(closed, { mode: 0o700 });
    const result = spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'status'], { env: { ...env, KPI_DB_DIR: join(closed, 'pg') }, encoding: 'utf8' });
    expect(result.stdout).toMatch(/data: \/var\/lib\/postgresql\/kpi-history\/[0-9a-f]{12}\/pg$/m);
    expect(statSync(closed)).toMatchObject({ uid: 0, mode: expect.any(Number) });
    expect(statSync(closed).mode & 0o777).toBe(0o700);
  });

  it('a server that will not start: up shows the end of its log, not only where the log is', async () => {
    const broken = join(dir, 'broken');
    const port = await freePort(Number(env.KPI_DB_PORT) + 1);
    const result = spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'up'], {
      env: { ...env, KPI_DB_DIR: broken, KPI_DB_PORT: String(port), KPI_DB_SETTINGS: "shared_buffers = 'plenty'" },
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^db: {3}.*invalid value for parameter "shared_buffers"/m);
    expect(result.stderr).toContain(`db: error: the server did not start; see ${broken}.log`);
  }, 120_000);

  it('a port held by another kpi-history cluster: KPI_DB_PORT given → it names that cluster and how to proceed', () => {
    // This file's cluster runs on env.KPI_DB_PORT; a second checkout asks for the same port.
    const second = spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'up'], {
      env: { ...env, KPI_DB_DIR: join(dir, 'second') },
      encoding: 'utf8',
    });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`port ${env.KPI_DB_PORT} is held by another kpi-history cluster (data directory `);
    expect(second.stderr).toMatch(/stop it with: KPI_DB_DIR=\S+ scripts\/db\.sh down\)/);
  }, 60_000);

  it('a port given in KPI_DB_PORT that only a client connection holds (an ephemeral port): up says so and stops, before the server fails to bind', async () => {
    const port = await freePort(Number(env.KPI_DB_PORT) + 1);
    const release = await holdAsClientPort(port);
    try {
      const up = spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'up'], {
        env: { ...env, KPI_DB_DIR: join(dir, 'ephemeral'), KPI_DB_PORT: String(port) },
        encoding: 'utf8',
      });
      expect(up.status).toBe(1);
      expect(up.stderr).toContain(`port ${port} is held by another program. Set KPI_DB_PORT to a free port`);
      expect(up.stderr).not.toContain('could not bind');
    } finally {
      await release();
      spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'down'], { env: { ...env, KPI_DB_DIR: join(dir, 'ephemeral') } });
    }
  }, 120_000);

  it('without KPI_DB_PORT, a new cluster whose default port is taken takes the next free one the project has not given to another database, and keeps it', async () => {
    // Whatever holds 54329 — the developer's own cluster, or one started here for the purpose.
    const holderEnv = { ...env, KPI_DB_DIR: join(dir, 'holder'), KPI_DB_PORT: '54329' };
    const startedHolder = !(await portAnswers(54329));
    if (startedHolder) expect(spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'up'], { env: holderEnv }).status).toBe(0);
    const otherEnv = { ...env, KPI_DB_DIR: join(dir, 'other'), KPI_DB_PORT: undefined };
    const other = (...args: string[]) => spawnSync('bash', [`${projectRoot}scripts/db.sh`, ...args], { env: otherEnv, encoding: 'utf8' });
    // The first free port after 54329 that is not reserved, held as a client's ephemeral port is:
    // the script must pass it by too.
    let firstFree = await freePort(54330);
    while ([54330, 54331, 54359].includes(firstFree)) firstFree = await freePort(firstFree + 1);
    const release = await holdAsClientPort(firstFree);
    try {
      const up = other('up');
      expect(up.status, up.stderr).toBe(0);
      const chosen = /this cluster takes (\d+), and keeps it/.exec(up.stderr)?.[1];
      expect(chosen, up.stderr).toBeDefined();
      expect(Number(chosen)).toBeGreaterThan(54329);
      expect(Number(chosen)).not.toBe(firstFree);
      // Never the ports the docs give to the compose, end-to-end and benchmark databases.
      expect(['54330', '54331', '54359']).not.toContain(chosen);
      // url, status and psql find it again, without KPI_DB_PORT.
      expect(other('url').stdout.trim()).toBe(`postgres://postgres@127.0.0.1:${chosen}/kpi_dbsh`);
      expect(other('status')).toMatchObject({ status: 0, stdout: expect.stringContaining(`:${chosen}/`) });
      expect(other('psql', '-tAc', 'show port').stdout.trim()).toBe(chosen);
      expect(other('up').stderr).not.toContain('takes');
    } finally {
      await release();
      other('down');
      if (startedHolder) spawnSync('bash', [`${projectRoot}scripts/db.sh`, 'down'], { env: holderEnv });
    }
  }, 120_000);

  it('down stops it, and status says so', () => {
    expect(dbsh('down').code).toBe(0);
    expect(dbsh('status')).toMatchObject({ code: 3, stdout: expect.stringMatching(/^stopped/) });
    expect(dbsh('down').code).toBe(0);
  }, 60_000);
});
