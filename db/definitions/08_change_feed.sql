-- The change feed: every insert, update and delete of kpi.kpi_history, kpi.kpi_anomalies and
-- kpi.custom_kpi_weeks, appended to kpi.kpi_changes by the writing statement, readable in order,
-- each change once, resumable from a cursor.
--
-- The position is the writing transaction's id (xid8) and a sequence number within the log. A
-- sequence alone would not do: a transaction that drew its number first can commit after a reader
-- has moved past it. So a reader returns only changes of transactions that are settled — older than
-- the oldest transaction of this database still running (kpi_api.change_log_horizon) — and nothing
-- can later appear behind its cursor. A transaction that starts first and commits last holds the changes
-- after it back until it commits; then it is delivered first.
--
-- Positions order transactions by when they first wrote, not when they committed. Two
-- transactions cannot change one row at the same time (the row lock), but the later one can hold
-- the smaller id; so each history row carries a `revision`, raised by every update, and a consumer
-- keeping the latest state keeps the highest revision.
--
-- Every reader — the API, the stream, watchKpiHistory(), the export — reads through
-- kpi_api.read_changes: one cursor format, one settled-only rule, one expiry check.

-- ============================================================================================
-- Writing the log
-- ============================================================================================

create or replace function kpi.raise_history_revision() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.revision := old.revision + 1;
  return new;
end
$$;
create or replace trigger kpi_history_revision before update on kpi.kpi_history
  for each row execute function kpi.raise_history_revision();

-- A history row as the log keeps it: the row itself (no JSON is built while the fill writes).
create or replace function kpi.history_change_row(h kpi.kpi_history) returns kpi.history_change
language sql immutable parallel safe
return row(h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point, h.vli_integrity_pct,
           h.vli_is_fallback, h.hrp_pct, h.updated_at, h.revision)::kpi.history_change;

-- The API's view of a history row, as the feed carries it: built when a page is read. No SET
-- clause and kpi.utc_iso written out, so the planner inlines it into the reading statement.
create or replace function kpi_api.history_change_data(h kpi.history_change) returns jsonb
language sql stable parallel safe
return jsonb_build_object('as_of', h.as_of, 'aiv_pct', h.aiv_pct, 'ati_pct', h.ati_pct, 'crs_pct', h.crs_pct,
                          'elasticity_usd_per_point', h.elasticity_usd_per_point, 'vli_integrity_pct', h.vli_integrity_pct,
                          'vli_is_fallback', h.vli_is_fallback, 'hrp_pct', h.hrp_pct,
                          'updated_at', (to_json(h.updated_at at time zone 'UTC') #>> '{}') || '+00:00',
                          'revision', h.revision);

create or replace function kpi.anomaly_change_data(a kpi.kpi_anomalies) returns jsonb
language sql stable parallel safe
return jsonb_build_object('as_of', a.as_of, 'kpi', a.kpi, 'value', a.value, 'baseline_median', a.baseline_median,
                          'baseline_mad', a.baseline_mad, 'baseline_weeks', a.baseline_weeks, 'score', a.score,
                          'direction', a.direction, 'threshold', a.threshold,
                          'detected_at', (to_json(a.detected_at at time zone 'UTC') #>> '{}') || '+00:00');

-- A week's custom values (only active KPIs' keys).
create or replace function kpi.custom_values_change_data(w kpi.custom_kpi_weeks) returns jsonb
language sql stable parallel safe
return jsonb_build_object('as_of', w.as_of, 'values', w.kpi_values,
                          'updated_at', (to_json(w.updated_at at time zone 'UTC') #>> '{}') || '+00:00');

-- One statement's rows into the log, in key order (statement-level, from the transition tables).
-- TG_ARGV[0] names the entity. Security definer: a tenant admin's change of a definition rewrites
-- its weeks, and the log of that is written whoever changed it.
create or replace function kpi.log_changes() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- (PL/pgSQL plans each statement when it first runs it: each branch names only the transition
  -- table and row type its event has.)
  if tg_op = 'DELETE' then
    if tg_argv[0] = 'anomaly' then
      insert into kpi.kpi_changes (tenant_id, entity, op, as_of, kpi)
      select o.tenant_id, 'anomaly', 'delete', o.as_of, o.kpi from old_rows o order by o.tenant_id, o.as_of, o.kpi;
    else
      insert into kpi.kpi_changes (tenant_id, entity, op, as_of)
      select o.tenant_id, tg_argv[0], 'delete', o.as_of from old_rows o order by o.tenant_id, o.as_of;
    end if;
  elsif tg_argv[0] = 'history' then
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, history_row)
    select n.tenant_id, 'history', lower(tg_op), n.as_of, kpi.history_change_row(n)
    from new_rows n order by n.tenant_id, n.as_of;
  elsif tg_argv[0] = 'anomaly' then
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, kpi, data)
    select n.tenant_id, 'anomaly', lower(tg_op), n.as_of, n.kpi, kpi.anomaly_change_data(n)
    from new_rows n order by n.tenant_id, n.as_of, n.kpi;
  else
    insert into kpi.kpi_changes (tenant_id, entity, op, as_of, data)
    select n.tenant_id, 'custom_values', lower(tg_op), n.as_of, kpi.custom_values_change_data(n)
    from new_rows n order by n.tenant_id, n.as_of;
  end if;
  -- Delivered at commit (and once per transaction): wakes the stream's reader.
  perform pg_notify('kpi_changes', '');
  return null;
end
$$;

-- Triggers of one event fire in the order of their names: a history row is logged
-- (kpi_history_logged_*) before the anomalies its scoring writes (kpi_history_scored_*), so a
-- consumer meets a week before the anomalies about it.
create or replace trigger kpi_history_logged_insert after insert on kpi.kpi_history
  referencing new table as new_rows for each statement execute function kpi.log_changes('history');
create or replace trigger kpi_history_logged_update after update on kpi.kpi_history
  referencing new table as new_rows for each statement execute function kpi.log_changes('history');
create or replace trigger kpi_history_logged_delete after delete on kpi.kpi_history
  referencing old table as old_rows for each statement execute function kpi.log_changes('history');
create or replace trigger kpi_anomalies_logged_insert after insert on kpi.kpi_anomalies
  referencing new table as new_rows for each statement execute function kpi.log_changes('anomaly');
create or replace trigger kpi_anomalies_logged_update after update on kpi.kpi_anomalies
  referencing new table as new_rows for each statement execute function kpi.log_changes('anomaly');
create or replace trigger kpi_anomalies_logged_delete after delete on kpi.kpi_anomalies
  referencing old table as old_rows for each statement execute function kpi.log_changes('anomaly');
create or replace trigger custom_kpi_weeks_logged_insert after insert on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.log_changes('custom_values');
create or replace trigger custom_kpi_weeks_logged_update after update on kpi.custom_kpi_weeks
  referencing new table as new_rows for each statement execute function kpi.log_changes('custom_values');
create or replace trigger custom_kpi_weeks_logged_delete after delete on kpi.custom_kpi_weeks
  referencing old table as old_rows for each statement execute function kpi.log_changes('custom_values');

-- ============================================================================================
-- Reading it: the one reader
-- ============================================================================================

-- A cursor, "<txid>.<seq>", as its two parts: INVALID_INPUT when it is none; NULL or '' is the
-- start of the log.
create or replace function kpi_api.cursor_position(cursor text, out txid xid8, out seq bigint)
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
    perform kpi_api.raise_request_error('INVALID_INPUT',
      format('after must be a cursor from an earlier page ("<digits>.<digits>"), got %s', left(cursor, 40)));
  end if;
  txid := split_part(btrim(cursor), '.', 1)::xid8;
  seq := split_part(btrim(cursor), '.', 2)::bigint;
end
$$;

-- ============================================================================================
-- Settled: the one rule every reader and the pruning apply
-- ============================================================================================

-- The position below which the log is settled: every transaction with a smaller id has ended, or
-- belongs to another database (it cannot write this log). That is the oldest transaction still
-- running in this database, else the snapshot's xmax. Transaction ids are shared by the whole
-- server, so the snapshot's own xmin would let a long transaction in any other database (a report,
-- a migration, a test) hold every tenant's feed back; pg_stat_activity says which database each
-- running transaction is in (its backend_xid is shown to every role). A running transaction not
-- found there — one that ended since the snapshot, or a prepared one — counts as this database's:
-- the error is always on the side of waiting. Callers compare with the call itself, not a scalar
-- subquery: the planner then estimates with its value and probes the log's position index (a
-- subquery's unknown value is planned as a third of the log: a sequential scan of all of it).
create or replace function kpi_api.change_log_horizon() returns xid8
language sql stable
set search_path = ''
as $$
  select coalesce(
           (select min(running.xid)
            from pg_catalog.pg_snapshot_xip(s.snapshot) as running(xid)
            where not exists (select from pg_catalog.pg_stat_activity a
                              where a.backend_xid = running.xid::xid
                                and a.datid <> (select d.oid from pg_catalog.pg_database d where d.datname = current_database()))),
           pg_catalog.pg_snapshot_xmax(s.snapshot))
  from (select pg_catalog.pg_current_snapshot() as snapshot) s
$$;
comment on function kpi_api.change_log_horizon() is
  'The change feed''s settled horizon: entries with a smaller txid are complete and visible. The oldest transaction still running in this database (others cannot write the log), else the snapshot''s xmax.';

-- The changes after `after_cursor` (from the oldest kept when NULL or ''), of one tenant or of
-- every tenant the caller may read (`of_tenant` NULL): settled transactions only, in position
-- order, at most `page_size`. A cursor older than what pruning removed is CURSOR_EXPIRED.
-- Security invoker: the API's roles read their tenant's rows under row-level security; the owner
-- (the stream's follower, watchKpiHistory(), the export) reads every tenant.
create or replace function kpi_api.read_changes(after_cursor text, of_tenant uuid, page_size integer)
returns table (tenant_id uuid, cursor text, txid xid8, seq bigint, entity text, op text, as_of date, kpi text, data jsonb, changed_at text)
language plpgsql stable
set search_path = ''
as $$
declare
  position record;
  settings kpi.change_feed_settings;
  horizon xid8 := kpi_api.change_log_horizon();
begin
  select * into position from kpi_api.cursor_position(after_cursor);
  select * into settings from kpi.change_feed_settings;
  if after_cursor is not null and btrim(after_cursor) <> ''
     and (position.txid, position.seq) < (settings.pruned_txid, settings.pruned_seq) then
    perform kpi_api.raise_request_error('CURSOR_EXPIRED',
      format('changes after %s have been pruned (the feed keeps %s)', btrim(after_cursor), settings.keep),
      'Re-read the current state (GET /kpi_history, /kpi_anomalies, /custom_kpi_values), then follow the feed without a cursor.');
  end if;
  return query
  select c.tenant_id, c.txid::text || '.' || c.seq, c.txid, c.seq, c.entity, c.op, c.as_of, c.kpi,
         coalesce(c.data, kpi_api.history_change_data(c.history_row)),
         -- ISO 8601 in UTC, as kpi.utc_iso writes it (which API roles may not call).
         (to_json(c.changed_at at time zone 'UTC') #>> '{}') || '+00:00'
  from kpi.kpi_changes c
  where (of_tenant is null or c.tenant_id = of_tenant)
    and (c.txid, c.seq) > (position.txid, position.seq)
    and c.txid < horizon
  order by c.txid, c.seq
  limit page_size;
end
$$;
comment on function kpi_api.read_changes(text, uuid, integer) is
  'The change feed after a cursor, settled transactions only, in order: the one reader behind the API, the stream and the export. Raises INVALID_INPUT for a malformed cursor and CURSOR_EXPIRED for a pruned one.';

-- The newest settled position (of one tenant, or all): a reader that starts "from now" starts here.
create or replace function kpi_api.change_log_head(of_tenant uuid) returns text
language sql stable
set search_path = ''
as $$
  select c.txid::text || '.' || c.seq from kpi.kpi_changes c
  where c.txid < kpi_api.change_log_horizon() and (of_tenant is null or c.tenant_id = of_tenant)
  order by c.txid desc, c.seq desc limit 1
$$;

-- True when changes after the cursor exist but are held back behind an older transaction still
-- running — one that may end without a notification (it wrote nothing to the log).
create or replace function kpi_api.changes_held_back(after_cursor text, of_tenant uuid) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (
    select from kpi.kpi_changes c, kpi_api.cursor_position(after_cursor) p
    where (c.txid, c.seq) > (p.txid, p.seq)
      and c.txid >= kpi_api.change_log_horizon()
      and (of_tenant is null or c.tenant_id = of_tenant))
$$;

-- A page of the active tenant's changes after `cursor`, and the cursor to continue from.
create or replace function kpi_api.changes_page(cursor text, page_size integer) returns json
language sql stable
set search_path = ''
as $$
  select json_build_object(
           'changes', coalesce(json_agg(json_build_object(
                        'cursor', p.cursor, 'entity', p.entity, 'op', p.op, 'as_of', p.as_of, 'kpi', p.kpi, 'data', p.data,
                        'changed_at', p.changed_at) order by p.txid, p.seq), '[]'),
           'next', coalesce((array_agg(p.cursor order by p.txid desc, p.seq desc))[1], nullif(btrim(changes_page.cursor), ''), '0.0'),
           'has_more', count(*) = changes_page.page_size)
  from kpi_api.read_changes(changes_page.cursor, (select kpi_api.current_tenant_id()), changes_page.page_size) p
$$;

-- ============================================================================================
-- Pruning: everything up to the newest position that is both older than `keep` and settled, so
-- the log has no holes and the watermark only moves forward.
-- ============================================================================================
create or replace function kpi.prune_change_log() returns bigint
language plpgsql
set search_path = ''
as $$
declare
  settings kpi.change_feed_settings;
  last_txid xid8;
  last_seq bigint;
  horizon xid8;
  deleted bigint;
begin
  select * into settings from kpi.change_feed_settings for update;
  horizon := kpi_api.change_log_horizon();
  select c.txid, c.seq into last_txid, last_seq
  from kpi.kpi_changes c
  where c.changed_at < now() - settings.keep and c.txid < horizon
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
