-- migrate:up

-- The change feed: every insert, update and delete of kpi.kpi_history and kpi.kpi_anomalies,
-- appended to kpi.kpi_changes by the writing statement, readable in order, each change once,
-- resumable from a cursor.
--
-- The position is the writing transaction's id (xid8) and a sequence number within the log. A
-- sequence alone would not do: a transaction that drew its number first can commit after a reader
-- has moved past it. So a reader returns only changes of transactions that are settled — older than
-- the oldest transaction still running (pg_snapshot_xmin of its snapshot) — and nothing can later
-- appear behind its cursor. A transaction that starts first and commits last holds the changes
-- after it back until it commits; then it is delivered first.
--
-- Positions order transactions by when they first wrote, not when they committed. Two
-- transactions cannot change one row at the same time (the row lock), but the later one can hold
-- the smaller id; so each history row carries a `revision`, raised by every update, and a consumer
-- keeping the latest state keeps the highest revision.

alter table kpi.kpi_history add column revision integer not null default 1;
comment on column kpi.kpi_history.revision is 'Raised by every update of the row: orders its versions in the change feed.';

create function kpi.raise_history_revision() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.revision := old.revision + 1;
  return new;
end
$$;
create trigger kpi_history_revision before update on kpi.kpi_history
  for each row execute function kpi.raise_history_revision();

create table kpi.kpi_changes (
  tenant_id uuid not null,
  txid xid8 not null default pg_current_xact_id(),
  seq bigint generated always as identity,
  entity text not null,
  op text not null,
  as_of date not null,
  -- For anomalies: which KPI.
  kpi text,
  -- The row after the change, as the API shows it; NULL for a delete (the key is as_of and kpi).
  data jsonb,
  changed_at timestamptz not null default now(),
  primary key (tenant_id, txid, seq),
  constraint kpi_changes_entity check (entity in ('history', 'anomaly')),
  constraint kpi_changes_op check (op in ('insert', 'update', 'delete'))
);
comment on table kpi.kpi_changes is
  'The change feed: each insert, update and delete of kpi_history and kpi_anomalies, in the writing transaction. Read it with api.kpi_history_changes (or kpi_api.changes_page); pruned by kpi.clean_up_run_history after change_feed_settings.keep.';
create index kpi_changes_position on kpi.kpi_changes (txid, seq);

alter table kpi.kpi_changes enable row level security;
alter table kpi.kpi_changes force row level security;
create policy "kpi_changes are maintained by their owner" on kpi.kpi_changes to postgres using (true) with check (true);
create policy "Changes are visible to members of the active tenant" on kpi.kpi_changes
  for select to authenticated using (tenant_id = (select kpi_api.current_tenant_id()));
grant select on kpi.kpi_changes to authenticated;

create table kpi.change_feed_settings (
  singleton boolean primary key default true,
  -- Changes older than this are pruned by the daily log cleanup.
  keep interval not null default '30 days',
  -- The last position pruned: a cursor before it has missed changes (CURSOR_EXPIRED).
  pruned_txid xid8 not null default '0',
  pruned_seq bigint not null default 0,
  constraint change_feed_settings_singleton check (singleton),
  constraint change_feed_settings_keep_positive check (keep > interval '0')
);
insert into kpi.change_feed_settings default values;
alter table kpi.change_feed_settings enable row level security;
alter table kpi.change_feed_settings force row level security;
create policy "change_feed_settings are maintained by their owner" on kpi.change_feed_settings to postgres using (true) with check (true);
-- Readers compare their cursor with the watermark; the row holds no tenant data.
create policy "The feed's watermark is readable by tenant members" on kpi.change_feed_settings for select to authenticated using (true);
grant select on kpi.change_feed_settings to authenticated;

insert into kpi.table_distribution (table_name, placement, distribution_column, colocate_with, why) values
  ('kpi_changes', 'distributed', 'tenant_id', 'tenants', 'tenant data, written next to the rows it describes (positions are then per node: see docs/scale-out.md)'),
  ('change_feed_settings', 'reference', null, null, 'one row: how long the feed is kept, and where pruning stopped');

insert into kpi.error_codes (code, sqlstate, http_status, description) values
  ('CURSOR_EXPIRED', 'KH410', 410, 'The cursor is older than the oldest change kept: re-read the current state, then follow the feed from the cursor the re-read started at.');

-- The API's view of a history row and of an anomaly, as the feed carries them. No SET clause and
-- kpi.utc_iso written out: only then does the planner inline them into the logging statement
-- (measured: 38–60 µs a row called, 15–20 inlined — the log's cost to every fill).
create function kpi.history_change_data(h kpi.kpi_history) returns jsonb
language sql stable parallel safe
return jsonb_build_object('as_of', h.as_of, 'aiv_pct', h.aiv_pct, 'ati_pct', h.ati_pct, 'crs_pct', h.crs_pct,
                          'elasticity_usd_per_point', h.elasticity_usd_per_point, 'vli_integrity_pct', h.vli_integrity_pct,
                          'vli_is_fallback', h.vli_is_fallback, 'hrp_pct', h.hrp_pct,
                          'updated_at', (to_json(h.updated_at at time zone 'UTC') #>> '{}') || '+00:00',
                          'revision', h.revision);

create function kpi.anomaly_change_data(a kpi.kpi_anomalies) returns jsonb
language sql stable parallel safe
return jsonb_build_object('as_of', a.as_of, 'kpi', a.kpi, 'value', a.value, 'baseline_median', a.baseline_median,
                          'baseline_mad', a.baseline_mad, 'baseline_weeks', a.baseline_weeks, 'score', a.score,
                          'direction', a.direction, 'threshold', a.threshold,
                          'detected_at', (to_json(a.detected_at at time zone 'UTC') #>> '{}') || '+00:00');

-- One statement's rows into the log, in key order (statement-level, from the transition tables).
create function kpi.log_history_changes() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of)
    select o.tenant_id, 'history', 'delete', o.as_of from old_rows o order by o.tenant_id, o.as_of;
  else
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, data)
    select n.tenant_id, 'history', lower(tg_op), n.as_of, kpi.history_change_data(n)
    from new_rows n order by n.tenant_id, n.as_of;
  end if;
  -- Delivered at commit (and once per transaction): wakes the stream's reader.
  perform pg_notify('kpi_changes', '');
  return null;
end
$$;

create function kpi.log_anomaly_changes() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, kpi)
    select o.tenant_id, 'anomaly', 'delete', o.as_of, o.kpi from old_rows o order by o.tenant_id, o.as_of, o.kpi;
  else
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, kpi, data)
    select n.tenant_id, 'anomaly', lower(tg_op), n.as_of, n.kpi, kpi.anomaly_change_data(n)
    from new_rows n order by n.tenant_id, n.as_of, n.kpi;
  end if;
  perform pg_notify('kpi_changes', '');
  return null;
end
$$;

-- Triggers of one event fire in the order of their names: the history row is logged before the
-- anomalies its scoring writes, so a consumer meets a week before the anomalies about it.
alter trigger kpi_history_inserted_scored on kpi.kpi_history rename to kpi_history_scored_insert;
alter trigger kpi_history_updated_scored on kpi.kpi_history rename to kpi_history_scored_update;

create trigger kpi_history_logged_insert after insert on kpi.kpi_history
  referencing new table as new_rows for each statement execute function kpi.log_history_changes();
create trigger kpi_history_logged_update after update on kpi.kpi_history
  referencing new table as new_rows for each statement execute function kpi.log_history_changes();
create trigger kpi_history_logged_delete after delete on kpi.kpi_history
  referencing old table as old_rows for each statement execute function kpi.log_history_changes();
create trigger kpi_anomalies_logged_insert after insert on kpi.kpi_anomalies
  referencing new table as new_rows for each statement execute function kpi.log_anomaly_changes();
create trigger kpi_anomalies_logged_update after update on kpi.kpi_anomalies
  referencing new table as new_rows for each statement execute function kpi.log_anomaly_changes();
create trigger kpi_anomalies_logged_delete after delete on kpi.kpi_anomalies
  referencing old table as old_rows for each statement execute function kpi.log_anomaly_changes();

-- A cursor, "<txid>.<seq>", as its two parts; INVALID_INPUT when it is none.
create function kpi_api.cursor_position(cursor text, out txid xid8, out seq bigint)
language plpgsql immutable
set search_path = ''
as $$
begin
  if cursor is null or btrim(cursor) = '' then
    txid := '0';
    seq := 0;
    return;
  end if;
  if cursor !~ '^\s*\d{1,19}\.\d{1,18}\s*$' then
    perform kpi_api.raise_http_error('INVALID_INPUT', format('after must be a cursor from an earlier page ("<digits>.<digits>"), got %s', left(cursor, 40)));
  end if;
  txid := split_part(btrim(cursor), '.', 1)::xid8;
  seq := split_part(btrim(cursor), '.', 2)::bigint;
end
$$;

-- A page of the active tenant's changes after `cursor`: up to `page_size`, settled transactions
-- only, in position order, and the cursor to continue from.
create function kpi_api.changes_page(cursor text, page_size integer) returns json
language plpgsql stable
set search_path = ''
as $$
declare
  after_position record;
  settings kpi.change_feed_settings;
  settled_before xid8 := pg_snapshot_xmin(pg_current_snapshot());
  result json;
begin
  select * into after_position from kpi_api.cursor_position(cursor);
  select * into settings from kpi.change_feed_settings;
  if cursor is not null and btrim(cursor) <> ''
     and (after_position.txid, after_position.seq) < (settings.pruned_txid, settings.pruned_seq) then
    perform kpi_api.raise_http_error('CURSOR_EXPIRED',
      format('changes after %s have been pruned (the feed keeps %s)', cursor, settings.keep),
      'Re-read the current state (GET /kpi_history, /kpi_anomalies), then follow the feed without a cursor.');
  end if;
  with page as (
    select c.txid, c.seq, c.entity, c.op, c.as_of, c.kpi, c.data, c.changed_at
    from kpi.kpi_changes c
    where c.tenant_id = (select kpi_api.current_tenant_id())
      and (c.txid, c.seq) > (after_position.txid, after_position.seq)
      and c.txid < settled_before
    order by c.txid, c.seq
    limit page_size
  )
  select json_build_object(
           'changes', coalesce(json_agg(json_build_object(
                        'cursor', p.txid::text || '.' || p.seq, 'entity', p.entity, 'op', p.op, 'as_of', p.as_of,
                        'kpi', p.kpi, 'data', p.data,
                        -- ISO 8601 in UTC, as kpi.utc_iso writes it (which API roles may not call).
                        'changed_at', (to_json(p.changed_at at time zone 'UTC') #>> '{}') || '+00:00')
                        order by p.txid, p.seq), '[]'),
           'next', coalesce((select p2.txid::text || '.' || p2.seq from page p2 order by p2.txid desc, p2.seq desc limit 1),
                            nullif(btrim(cursor), ''), after_position.txid::text || '.' || after_position.seq),
           'has_more', count(*) = page_size)
  into result
  from page p;
  return result;
end
$$;
grant execute on function kpi_api.cursor_position(text) to authenticated;
grant execute on function kpi_api.changes_page(text, integer) to authenticated;

-- `after` is not among PostgREST's reserved query keys (select, columns, on_conflict, and keys
-- ending in order, limit, offset, and, or), so a GET passes it as the argument.
create function api.kpi_history_changes("after" text default null) returns json
language plpgsql stable
as $$
declare
  failed_sqlstate text;
  failed_message text;
  failed_detail text;
begin
  return kpi_api.changes_page("after", 1000);
exception when others then
  get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                          failed_detail = pg_exception_detail;
  perform kpi_api.raise_caught_error(failed_sqlstate, failed_message, failed_detail);
  return null;
end
$$;
comment on function api.kpi_history_changes(text) is
  $$The active tenant's changes to its history and anomalies after the cursor `after` (omit it to start from the oldest change kept): {"changes": [{"cursor", "entity": "history"|"anomaly", "op": "insert"|"update"|"delete", "as_of", "kpi", "data", "changed_at"}], "next": "<cursor>", "has_more"}. Up to 1,000 per page; each change once, none skipped: only settled transactions are returned. History rows carry a revision (the highest is the latest).
Errors: INVALID_INPUT 400 (a malformed cursor), CURSOR_EXPIRED 410 (the changes after it were pruned: re-read the state), FORBIDDEN 403, TENANT_REQUIRED 400.
Example: GET /rpc/kpi_history_changes?after=1234.56$$;
grant execute on function api.kpi_history_changes(text) to authenticated;

-- Pruning: everything up to the newest position that is both older than `keep` and settled, so the
-- log has no holes and the watermark only moves forward.
create function kpi.prune_change_log() returns bigint
language plpgsql
set search_path = ''
as $$
declare
  settings kpi.change_feed_settings;
  last_txid xid8;
  last_seq bigint;
  deleted bigint;
begin
  select * into settings from kpi.change_feed_settings for update;
  select c.txid, c.seq into last_txid, last_seq
  from kpi.kpi_changes c
  where c.changed_at < now() - settings.keep and c.txid < pg_snapshot_xmin(pg_current_snapshot())
  order by c.txid desc, c.seq desc
  limit 1;
  if last_txid is null then
    return 0;
  end if;
  delete from kpi.kpi_changes c where (c.txid, c.seq) <= (last_txid, last_seq);
  get diagnostics deleted = row_count;
  update kpi.change_feed_settings
  set pruned_txid = greatest(pruned_txid, last_txid),
      pruned_seq = case when last_txid > pruned_txid or (last_txid = pruned_txid and last_seq > pruned_seq) then last_seq else pruned_seq end;
  return deleted;
end
$$;
comment on function kpi.prune_change_log() is
  'Deletes the change feed''s entries older than change_feed_settings.keep (up to a settled position, without holes) and records where it stopped; readers with an older cursor get CURSOR_EXPIRED. Run daily by kpi.clean_up_run_history. Example: select kpi.prune_change_log();';

-- The daily log cleanup (pg_cron, 04:30 UTC) prunes the feed, and finished alerts after 90 days.
create or replace function kpi.clean_up_run_history() returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  runs_deleted bigint;
  denials_deleted bigint := 0;
  job_details_deleted bigint := 0;
  alerts_deleted bigint;
begin
  delete from kpi.kpi_runs where started_at < now() - interval '90 days';
  get diagnostics runs_deleted = row_count;
  delete from kpi.api_denials where denied_at < now() - interval '90 days';
  get diagnostics denials_deleted = row_count;
  delete from kpi.alerts where status <> 'pending' and finished_at < now() - interval '90 days';
  get diagnostics alerts_deleted = row_count;
  -- cron.job_run_details exists only in the pg_cron database.
  if to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where start_time < now() - interval ''7 days''';
    get diagnostics job_details_deleted = row_count;
  end if;
  return jsonb_build_object('kpi_runs_deleted', runs_deleted, 'api_denials_deleted', denials_deleted,
                            'alerts_deleted', alerts_deleted, 'kpi_changes_deleted', kpi.prune_change_log(),
                            'cron_job_run_details_deleted', job_details_deleted);
end
$$;

notify pgrst, 'reload schema';

-- migrate:down
create or replace function kpi.clean_up_run_history() returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  runs_deleted bigint;
  denials_deleted bigint := 0;
  job_details_deleted bigint := 0;
begin
  delete from kpi.kpi_runs where started_at < now() - interval '90 days';
  get diagnostics runs_deleted = row_count;
  -- The audit of refused API calls (a later migration) is kept as long as the run log.
  if to_regclass('kpi.api_denials') is not null then
    execute 'delete from kpi.api_denials where denied_at < now() - interval ''90 days''';
    get diagnostics denials_deleted = row_count;
  end if;
  -- cron.job_run_details exists only in the pg_cron database.
  if to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where start_time < now() - interval ''7 days''';
    get diagnostics job_details_deleted = row_count;
  end if;
  return jsonb_build_object('kpi_runs_deleted', runs_deleted, 'api_denials_deleted', denials_deleted,
                            'cron_job_run_details_deleted', job_details_deleted);
end
$$;
drop function kpi.prune_change_log();
drop function api.kpi_history_changes(text);
drop function kpi_api.changes_page(text, integer);
drop function kpi_api.cursor_position(text);
drop trigger kpi_anomalies_logged_delete on kpi.kpi_anomalies;
drop trigger kpi_anomalies_logged_update on kpi.kpi_anomalies;
drop trigger kpi_anomalies_logged_insert on kpi.kpi_anomalies;
drop trigger kpi_history_logged_delete on kpi.kpi_history;
drop trigger kpi_history_logged_update on kpi.kpi_history;
drop trigger kpi_history_logged_insert on kpi.kpi_history;
alter trigger kpi_history_scored_insert on kpi.kpi_history rename to kpi_history_inserted_scored;
alter trigger kpi_history_scored_update on kpi.kpi_history rename to kpi_history_updated_scored;
drop function kpi.log_anomaly_changes();
drop function kpi.log_history_changes();
drop function kpi.anomaly_change_data(kpi.kpi_anomalies);
drop function kpi.history_change_data(kpi.kpi_history);
delete from kpi.error_codes where code = 'CURSOR_EXPIRED';
delete from kpi.table_distribution where table_name in ('kpi_changes', 'change_feed_settings');
drop table kpi.change_feed_settings;
drop table kpi.kpi_changes;
drop trigger kpi_history_revision on kpi.kpi_history;
drop function kpi.raise_history_revision();
alter table kpi.kpi_history drop column revision;
notify pgrst, 'reload schema';
