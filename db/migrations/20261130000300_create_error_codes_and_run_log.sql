-- migrate:up

-- ============================================================================================
-- Error codes: the one list of the stable codes callers see
-- ============================================================================================
-- Functions raise them with their own SQLSTATE (class KH, digits near the HTTP status); the API
-- layer and the SDK translate the SQLSTATE into `code` and a status with this table.
create table kpi.error_codes (
  code text primary key constraint error_codes_code_format check (code ~ '^[A-Z][A-Z_]*$'),
  sqlstate char(5) not null unique constraint error_codes_sqlstate_format check (sqlstate ~ '^KH[0-9]{3}$'),
  http_status smallint not null,
  description text not null
);
comment on table kpi.error_codes is 'Stable error codes: raised with SQLSTATE class KH, answered over HTTP as {"code": code}.';

insert into kpi.error_codes (code, sqlstate, http_status, description) values
  ('INVALID_INPUT', 'KH400', 400, 'A parameter or request body is malformed.'),
  ('TENANT_REQUIRED', 'KH401', 400, 'Several tenants are in the token; the x-tenant header must choose one.'),
  ('FORBIDDEN', 'KH403', 403, 'Missing or wrong credentials for this operation or tenant.'),
  ('UNKNOWN_TENANT', 'KH404', 404, 'No tenant has this id.'),
  ('NO_AVI', 'KH422', 422, 'The tenant has no AVI report, so there is no week to record.'),
  ('INTERNAL_ERROR', 'KH500', 500, 'Something unexpected failed; the run log has the details.');

-- Warnings do not stop a run; they are listed in its result and its log row.
comment on column kpi.error_codes.code is 'Also used as warning codes: INVALID_CLARITY (a clarity report whose hrp is not a number in 0..1).';

-- Raises the named error with its SQLSTATE; an unknown name is a programming error.
create function kpi.raise_error(code text, message text, hint text default null) returns void
language plpgsql stable
set search_path = ''
as $$
declare
  state char(5) := (select e.sqlstate from kpi.error_codes e where e.code = raise_error.code);
begin
  if state is null then
    raise exception 'kpi.raise_error: unknown error code %', code;
  end if;
  if hint is null then
    raise exception using errcode = state, message = message;
  end if;
  raise exception using errcode = state, message = message, hint = hint;
end
$$;

-- ============================================================================================
-- Run log: every fill, backfill and skipped run, with who triggered it
-- ============================================================================================
create table kpi.kpi_runs (
  id bigint generated always as identity primary key,
  kind text not null constraint kpi_runs_kind check (kind in ('fill', 'fill_all', 'backfill')),
  -- NULL: all tenants. No foreign key: the log outlives deleted tenants.
  tenant_id uuid,
  range_from date,
  range_to date,
  -- pg_cron, api (a PostgREST request) or sql (any other session: psql, an app, a script).
  trigger text not null constraint kpi_runs_trigger check (trigger in ('pg_cron', 'api', 'sql')),
  db_user text not null default current_user,
  application_name text,
  -- The session doing the run: a `running` run whose session is gone will never finish.
  backend_pid integer not null default pg_backend_pid(),
  -- running: started and not finished (still going, or its session died before it could say).
  status text not null default 'running'
    constraint kpi_runs_status check (status in ('running', 'ok', 'partial', 'failed', 'skipped')),
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz,
  duration_ms numeric generated always as (round(extract(epoch from finished_at - started_at) * 1000, 3)) stored,
  ok_count integer,
  total_count integer,
  rows_written integer,
  errors jsonb not null default '[]' constraint kpi_runs_errors_is_array check (jsonb_typeof(errors) = 'array'),
  warnings jsonb not null default '[]' constraint kpi_runs_warnings_is_array check (jsonb_typeof(warnings) = 'array'),
  constraint kpi_runs_finished_when_not_running check ((status = 'running') = (finished_at is null))
);
comment on table kpi.kpi_runs is 'One row per aggregation run: trigger, status, counts, errors and warnings. Kept 90 days.';
comment on column kpi.kpi_runs.status is 'ok: every tenant written; partial: some tenants had errors; failed: nothing written (see errors); skipped: another all-tenant run held the lock; running: not finished.';
create index kpi_runs_started_at_idx on kpi.kpi_runs (started_at desc);

-- migrate:down
drop table kpi.kpi_runs;
drop function kpi.raise_error(text, text, text);
drop table kpi.error_codes;
