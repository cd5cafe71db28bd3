// The pg_cron side, in the database pg_cron really runs in: the jobs the definitions schedule,
// re-scheduling without duplicates and without resuming a paused job, the retention job, and
// pg_cron firing the fill for real.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, cronDatabase, useTestDatabase, type Sql } from '../helpers/database.js';
import { projectRoot } from '../helpers/dbmate.js';
import { insertAvi, insertTenant } from '../fixtures/sources.js';
import { ACME, GLOBEX } from '../fixtures/tenants.js';

const cron = cronDatabase();
// A database of kpi-history without pg_cron in it, as on managed platforms.
const data = useTestDatabase();
const SCHEDULE = readFileSync(`${projectRoot}db/definitions/15_schedule.sql`, 'utf8');
if (!cron.url) console.warn(`[kpi-history tests] pg_cron suite not run: ${cron.reason}`);

describe.skipIf(!cron.url)(`pg_cron${cron.url ? '' : ` — not run: ${cron.reason}`}`, () => {
  let sql: Sql;
  beforeAll(async () => {
    sql = connect(cron.url!);
    // This database is re-created for every test run, so fixed tenants are safe here.
    await sql`delete from kpi.tenants where id in (${ACME}, ${GLOBEX})`;
  });
  afterAll(() => sql.end());

  const jobs = () => sql`
    select jobname, schedule, command, database, username, active from cron.job
    where jobname like 'kpi-history%' and database = current_database() order by jobname`;

  it('the definitions scheduled the daily fill at 04:00 UTC, the run-log cleanup at 04:30, the source retention at 04:45 and the full reconciliation on Sundays at 05:00', async () => {
    const [{ db }] = await sql<[{ db: string }]>`select current_database() as db`;
    expect(await jobs()).toEqual([
      { jobname: 'kpi-history', schedule: '0 4 * * *', command: 'call kpi.run_scheduled_kpi_fill()', database: db, username: 'postgres', active: true },
      { jobname: 'kpi-history-cleanup', schedule: '30 4 * * *', command: 'select kpi.clean_up_run_history()', database: db, username: 'postgres', active: true },
      { jobname: 'kpi-history-reconcile', schedule: '0 5 * * 0', command: 'call kpi.run_scheduled_kpi_fill(full => true)', database: db, username: 'postgres', active: true },
      { jobname: 'kpi-history-retention', schedule: '45 4 * * *', command: 'call kpi.run_source_cleanup()', database: db, username: 'postgres', active: true },
    ]);
  });

  it('the health check reports the schedule', async () => {
    const [{ health }] = await sql<[{ health: { schedule: unknown[] } }]>`select kpi.health_report() as health`;
    expect(health.schedule).toContainEqual(expect.objectContaining({ job: 'kpi-history', cron: '0 4 * * *', timezone: 'UTC', active: true }));
    expect(health.schedule).toHaveLength(4);
  });

  it('scheduling again does not duplicate the jobs', async () => {
    const before = await sql`select jobid, jobname, schedule, command from cron.job order by jobid`;
    await sql.unsafe(SCHEDULE);
    await sql.unsafe(SCHEDULE);
    expect(await sql`select jobid, jobname, schedule, command from cron.job order by jobid`).toEqual(before);
  });

  it('a job an operator paused stays paused when the definitions are applied again, and health says so', async () => {
    await sql`select cron.alter_job(jobid, active => false) from cron.job where jobname = 'kpi-history'`;
    try {
      await sql.unsafe(SCHEDULE);
      expect((await jobs()).find((j) => j.jobname === 'kpi-history')).toMatchObject({ active: false });
      const [{ health }] = await sql<[{ health: { status: string; reasons: string[] } }]>`select kpi.health_report() as health`;
      expect(health.status).toBe('degraded');
      expect(health.reasons).toContain('the pg_cron job kpi-history is paused (cron.job.active = false)');
    } finally {
      await sql`select cron.alter_job(jobid, active => true) from cron.job where jobname = 'kpi-history'`;
    }
  });

  it('the cleanup keeps 90 days of run log and denial audit, and 7 days of pg_cron run details', async () => {
    await sql`
      insert into kpi.api_denials (endpoint, reason, denied_at) values
        ('/rpc/kpi_history_cron', 'old', now() - interval '91 days'),
        ('/rpc/kpi_history_cron', 'recent', now() - interval '1 day')`;
    await sql`
      insert into kpi.kpi_runs (kind, trigger, status, started_at, finished_at) values
        ('fill_all', 'sql', 'ok', now() - interval '91 days', now() - interval '91 days'),
        ('fill_all', 'sql', 'ok', now() - interval '89 days', now() - interval '89 days')`;
    await sql`
      insert into cron.job_run_details (jobid, runid, command, status, start_time, end_time) values
        (999, 900001, 'old', 'succeeded', now() - interval '8 days', now() - interval '8 days'),
        (999, 900002, 'recent', 'succeeded', now() - interval '6 days', now() - interval '6 days')`;
    const [{ result }] = await sql<[{ result: Record<string, number> }]>`select kpi.clean_up_run_history() as result`;
    expect(result).toEqual({ kpi_runs_deleted: 1, api_denials_deleted: 1, cron_job_run_details_deleted: 1, alerts_deleted: 0, kpi_changes_deleted: 0 });
    expect(await sql`select reason from kpi.api_denials`).toEqual([{ reason: 'recent' }]);
    const runs = await sql`select 1 from kpi.kpi_runs where started_at < now() - interval '88 days'`;
    expect(runs).toHaveLength(1);
    expect(await sql`select command from cron.job_run_details where jobid = 999`).toEqual([{ command: 'recent' }]);
  });

  it('pg_cron fires the fill: rows appear, the run says pg_cron, the job run succeeded', async () => {
    await insertTenant(sql, ACME, 'acme');
    await insertTenant(sql, GLOBEX, 'globex');
    await insertAvi(sql, ACME, { weekStart: '2024-06-03', aivPct: 61 });
    await insertAvi(sql, GLOBEX, { weekStart: '2024-06-10', aivPct: 62 });
    const [{ jobid }] = await sql<[{ jobid: number }]>`
      select cron.schedule('kpi-history-test-fire', '* * * * *', 'call kpi.run_scheduled_kpi_fill()') as jobid`;
    try {
      // pg_cron schedules by the minute: the job starts at the next minute boundary.
      let detail: { status: string; return_message: string } | undefined;
      for (let waited = 0; waited < 100_000 && detail?.status !== 'succeeded'; waited += 1000) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        [detail] = await sql<{ status: string; return_message: string }[]>`
          select status, return_message from cron.job_run_details where jobid = ${jobid} order by runid desc limit 1`;
        if (detail?.status === 'failed') break;
      }
      expect(detail).toEqual({ status: 'succeeded', return_message: 'CALL' });
    } finally {
      await sql`select cron.unschedule(${jobid}::bigint)`;
    }
    const rows = await sql`
      select tenant_id, as_of::text, aiv_pct::float from kpi.kpi_history where tenant_id in (${ACME}, ${GLOBEX}) order by as_of`;
    expect(rows).toEqual([
      { tenant_id: ACME, as_of: '2024-06-03', aiv_pct: 61 },
      { tenant_id: GLOBEX, as_of: '2024-06-10', aiv_pct: 62 },
    ]);
    const [run] = await sql`select kind, trigger, status, finished_at is not null as finished from kpi.kpi_runs order by id desc limit 1`;
    expect(run).toEqual({ kind: 'fill_all', trigger: 'pg_cron', status: 'ok', finished: true });
  }, 120_000);
  it('a scheduled run that fails is a failed job, its message naming the run (the run log has it as failed too)', async () => {
    const tenant = '00000000-0000-4000-a000-0000000c7f01';
    await sql`delete from kpi.tenants where id = ${tenant}`;
    await insertTenant(sql, tenant, 'cron-failing');
    await insertAvi(sql, tenant, { weekStart: '2024-06-17', aivPct: 50 });
    await sql`select kpi.fill_kpi_history(${tenant})`;
    await sql`update kpi.avi_reports set aiv_pct = 51 where tenant_id = ${tenant}`;
    // The job's run waits for a row this session holds; it is then cancelled, as a timeout would.
    const blocker = await sql.reserve();
    let jobid: number | undefined;
    let detail: { status: string; return_message: string } | undefined;
    try {
      await blocker`begin`;
      await blocker`select from kpi.kpi_history where tenant_id = ${tenant} for update`;
      [{ jobid }] = await sql<[{ jobid: number }]>`
        select cron.schedule('kpi-history-test-fail', '* * * * *', 'call kpi.run_scheduled_kpi_fill()') as jobid`;
      let pid: number | undefined;
      for (let waited = 0; waited < 100_000 && pid === undefined; waited += 500) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        // The job's session (a background worker, or a connection, as pg_cron is set up).
        [{ pid } = { pid: undefined }] = await sql<{ pid: number }[]>`
          select a.pid from cron.job_run_details d join pg_stat_activity a on a.pid = d.job_pid
          where d.jobid = ${jobid!} and d.status = 'running' and a.wait_event_type = 'Lock'`;
      }
      expect(pid, 'the job never waited for the row').toBeDefined();
      await sql`select pg_cancel_backend(${pid!})`;
      for (let waited = 0; waited < 20_000 && detail?.status !== 'failed'; waited += 250) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        [detail] = await sql<{ status: string; return_message: string }[]>`
          select status, return_message from cron.job_run_details where jobid = ${jobid} order by runid desc limit 1`;
      }
    } finally {
      await blocker`rollback`;
      blocker.release();
      if (jobid !== undefined) await sql`select cron.unschedule(${jobid}::bigint)`;
    }
    expect(detail?.status).toBe('failed');
    const runId = /fill_all run (\d+) failed \(SQLSTATE 57014\)/.exec(detail!.return_message)?.[1];
    expect(runId, detail!.return_message).toBeDefined();
    const [run] = await sql`select trigger, status from kpi.kpi_runs where id = ${runId!}`;
    expect(run).toEqual({ trigger: 'pg_cron', status: 'failed' });
  }, 150_000);
  it('db/setup/schedule_in_database.sql creates the same jobs for a database pg_cron is not in, again without duplicates, a paused one left paused', async () => {
    const schedule = () =>
      spawnSync('psql', [cron.url!, '-X', '-q', '-v', `data_database=${data.name}`, '-f', 'db/setup/schedule_in_database.sql'], { cwd: projectRoot, encoding: 'utf8' });
    const theirs = () => sql`
      select jobname, schedule, command, database, active from cron.job where database = ${data.name} order by jobname`;
    const ownJobs = await jobs();
    try {
      const first = schedule();
      expect(first.status, first.stderr).toBe(0);
      const plan = await data.sql<{ job: string; cron: string; command: string }[]>`select job, cron, command from kpi.schedule_plan() order by job`;
      expect(plan.map((p) => p.job)).toContain('kpi-history');
      const byName = (a: { jobname: string }, b: { jobname: string }) => (a.jobname < b.jobname ? -1 : 1);
      expect([...(await theirs())].sort((a, b) => byName(a as never, b as never))).toEqual(
        plan.map((p) => ({ jobname: `${p.job}@${data.name}`, schedule: p.cron, command: p.command, database: data.name, active: true })).sort(byName),
      );
      await sql`update cron.job set active = false where jobname = ${`kpi-history@${data.name}`}`;
      const again = schedule();
      expect(again.status, again.stderr).toBe(0);
      const jobsNow = await theirs();
      expect(jobsNow).toHaveLength(plan.length);
      expect(jobsNow.filter((j) => !j.active).map((j) => j.jobname)).toEqual([`kpi-history@${data.name}`]);
      // The jobs of pg_cron's own database are untouched.
      expect(await jobs()).toEqual(ownJobs);
    } finally {
      await sql`select cron.unschedule(jobid) from cron.job where database = ${data.name}`;
    }
  });

  it('db/setup/schedule_in_database.sql without the database to schedule says how to call it and schedules nothing', () => {
    const run = spawnSync('psql', [cron.url!, '-X', '-q', '-f', 'db/setup/schedule_in_database.sql'], { cwd: projectRoot, encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('usage: psql "$CRON_DATABASE_URL" -v data_database=');
  });
});
