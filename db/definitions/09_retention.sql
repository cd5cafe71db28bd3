-- Retention: source reports kept as long as each tenant's plan says (the history forever), and the
-- logs kept for a while. Deleting expired sources never changes the history: a week whose sources
-- may be gone is never recomputed (kpi.source_horizon, 03_sources.sql), and the rows the history
-- still needs are kept.

-- ============================================================================================
-- Expired sources
-- ============================================================================================

-- How each source is read by the rule below: its key after the tenant (in time order), and what
-- "before the cutoff" is for a row `k` (`c.cutoff` the instant): an audit or a clarity report
-- taken before it; an AVI report of a week that ended before the cutoff's UTC day.
create or replace function kpi.source_table_layout(source text, out key_columns text, out before_cutoff text)
language sql immutable
set search_path = ''
as $$
  select l.key_columns, l.before_cutoff
  from (values ('avi_reports', 'week_start', $c$k.week_start <= (c.cutoff at time zone 'UTC')::date - 7$c$),
               ('vli_audits', 'audited_at, id', 'k.audited_at < c.cutoff'),
               ('clarity_reports', 'measured_at, id', 'k.measured_at < c.cutoff')) l (source, key_columns, before_cutoff)
  where l.source = source_table_layout.source
$$;

-- The one rule, for every source: of each tenant, the newest row before its cutoff (now minus
-- its retention) is kept, and every row after it; what is older goes. The row kept is the one
-- still in effect at the cutoff — the audit and the clarity report that weeks ending after the
-- cutoff are computed from (for a tenant audited once two years ago, that audit), the AVI report of
-- a tenant that stopped reporting (the daily fill's week; without it the tenant would turn NO_AVI).
--
-- Written once, as the query of the expired rows (tenant and key) of `source`, which both the
-- cleanup and its preview run. Parameters: $1 the instant the cutoffs are taken from, $2 and $3
-- the first and last tenant id (inclusive), $4 a retention in days to use instead of each
-- tenant's own (NULL: its own, the override or else its plan's).
create or replace function kpi.expired_sources_query(source text) returns text
language plpgsql immutable
set search_path = ''
as $$
declare
  layout record := kpi.source_table_layout(source);
  keys text[];
begin
  if layout.key_columns is null then
    raise exception 'kpi.expired_sources_query: unknown source table %', source;
  end if;
  keys := string_to_array(layout.key_columns, ', ');
  return format($q$
    select x.tenant_id, %2$s
    from kpi.tenants t
    join kpi.plans p on p.plan = t.plan
    cross join lateral (
      select $1 - make_interval(days => coalesce($4, t.source_retention_days, p.source_retention_days)) as cutoff) c
    cross join lateral (
      select %6$s from kpi.%1$I k
      where k.tenant_id = t.id and %3$s
      order by %4$s limit 1) kept
    cross join lateral (
      select x.tenant_id, %2$s from kpi.%1$I x
      where x.tenant_id = t.id and (%2$s) < (kept.%5$s)) x
    where t.id >= $2 and t.id <= $3 and c.cutoff is not null$q$,
    source,
    (select string_agg('x.' || k, ', ') from unnest(keys) k),
    layout.before_cutoff,
    (select string_agg('k.' || k || ' desc', ', ') from unnest(keys) k),
    (select string_agg(k, ', kept.') from unnest(keys) k),
    (select string_agg('k.' || k, ', ') from unnest(keys) k));
end
$$;

-- One batch: deletes at most `batch_size` expired rows of one source table, as of `as_of`, among
-- at most `batch_size` tenants from `from_tenant` on (in id order), so that a batch is short
-- whether it finds much or nothing. Returns how many rows went and where the next batch starts
-- (NULL: this source is done): the same tenant when the row limit cut it short, else the tenant
-- after the slice. A cleanup walks the tenants once, whatever their number.
create or replace function kpi.delete_expired_sources(source text, as_of timestamptz, from_tenant uuid, batch_size integer,
                                                      out deleted bigint, out next_tenant uuid)
language plpgsql volatile
set search_path = ''
as $$
declare
  keys text[] := string_to_array((kpi.source_table_layout(source)).key_columns, ', ');
  last_deleted uuid;
  slice_end uuid;
  slice_size integer;
begin
  select max(s.id::text collate "C")::uuid, count(*) into slice_end, slice_size
  from (select t.id from kpi.tenants t where t.id >= from_tenant order by t.id limit batch_size) s;
  -- What goes here only ever fed weeks that are final: no change to track.
  perform set_config('kpi.tracking', 'off', true);
  execute format($q$
    with expired as (%2$s order by 1 limit $5),
    gone as (
      delete from kpi.%1$I d using expired e
      where d.tenant_id = e.tenant_id and (%3$s) = (%4$s)
      returning d.tenant_id
    )
    select count(*), max(g.tenant_id::text collate "C")::uuid from gone g$q$,
    source,
    kpi.expired_sources_query(source),
    (select string_agg('d.' || k, ', ') from unnest(keys) k),
    (select string_agg('e.' || k, ', ') from unnest(keys) k))
  into deleted, last_deleted
  using as_of, from_tenant, slice_end, null::integer, batch_size;
  next_tenant := case
    when deleted >= batch_size then last_deleted
    when slice_size >= batch_size then (select t.id from kpi.tenants t where t.id > slice_end order by t.id limit 1)
  end;
end
$$;

-- What the next cleanup would delete of one tenant's sources, by the same rule — with its
-- retention as it is, or as `source_retention_days` would make it (a plan change: pass the plan's
-- days; the tenant's own override, when it has one, still wins over a plan). Deletes nothing.
create or replace function kpi.preview_source_cleanup(tenant text, source_retention_days integer default null)
returns table (source text, rows_to_delete bigint, cutoff timestamptz)
language plpgsql stable
set search_path = ''
as $$
declare
  tenant_id uuid := kpi.tenant_id_of(tenant);
  retention integer;
begin
  if source_retention_days is not null and source_retention_days < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'source_retention_days must be at least 1 (NULL: the tenant''s own)');
  end if;
  select coalesce(t.source_retention_days, preview_source_cleanup.source_retention_days, p.source_retention_days) into retention
  from kpi.tenants t join kpi.plans p on p.plan = t.plan where t.id = tenant_id;
  foreach source in array array['avi_reports', 'vli_audits', 'clarity_reports'] loop
    execute format('select count(*) from (%s) e', kpi.expired_sources_query(source))
      into rows_to_delete
      using now(), tenant_id, tenant_id, retention;
    cutoff := now() - make_interval(days => retention);
    return next;
  end loop;
end
$$;
comment on function kpi.preview_source_cleanup(text, integer) is
  'What the next source cleanup would delete of a tenant (slug or id), per source table, by the rule the cleanup runs: with its retention as it is, or with source_retention_days instead of its plan''s (its own override still wins). Deletes nothing; cutoff NULL: kept forever. Example: select * from kpi.preview_source_cleanup(''acme'', 90);';

-- The daily cleanup. Each batch is its own transaction, so no batch holds its locks longer than
-- it takes to delete `batch_size` rows (measured by npm run bench; the run log keeps the longest).
-- Like the daily fill, it commits its run as `running` first and refuses a transaction block.
create or replace procedure kpi.run_source_cleanup(batch_size integer default 1000)
language plpgsql
as $$
declare
  run_id bigint;
  as_of timestamptz;
  source text;
  deleted bigint;
  from_tenant uuid;
  started timestamptz;
  batch_ms numeric;
  counts jsonb := '{"avi_reports": 0, "vli_audits": 0, "clarity_reports": 0}';
  batches integer := 0;
  longest_ms numeric := 0;
  total_ms numeric := 0;
begin
  commit;
  if batch_size is null or batch_size < 1 then
    perform kpi.raise_error('INVALID_INPUT', 'batch_size must be at least 1');
  end if;
  run_id := kpi.start_kpi_run('cleanup', null, null, null);
  as_of := now();
  -- Committed before the first row goes: from now on no fill recomputes a week that may lose them.
  update kpi.retention_state set last_cleanup_as_of = as_of;
  commit;
  foreach source in array array['avi_reports', 'vli_audits', 'clarity_reports'] loop
    from_tenant := '00000000-0000-0000-0000-000000000000';
    while from_tenant is not null loop
      started := clock_timestamp();
      select d.deleted, d.next_tenant into deleted, from_tenant
      from kpi.delete_expired_sources(source, as_of, from_tenant, batch_size) d;
      batch_ms := round(extract(epoch from clock_timestamp() - started) * 1000, 3);
      batches := batches + 1;
      longest_ms := greatest(longest_ms, batch_ms);
      total_ms := total_ms + batch_ms;
      counts := jsonb_set(counts, array[source], to_jsonb((counts ->> source)::bigint + deleted));
      -- Progress, committed with the batch: the log shows how far a cleanup got.
      update kpi.kpi_runs r
      set details = jsonb_build_object('deleted', counts, 'rows_deleted', (select sum(value::bigint) from jsonb_each_text(counts)), 'batches', batches, 'longest_batch_ms', longest_ms,
                                       'total_batch_ms', total_ms, 'batch_size', batch_size, 'as_of', kpi.utc_iso(as_of)),
          -- A cleanup writes no history: what it deleted is in details.
          rows_written = 0
      where r.id = run_id;
      commit;
    end loop;
  end loop;
  update kpi.kpi_runs r set status = 'ok', finished_at = clock_timestamp() where r.id = run_id;
  commit;
end
$$;
comment on procedure kpi.run_source_cleanup(integer) is
  'Deletes source reports older than each tenant''s retention (plan or override), in batches of batch_size rows, each its own transaction; never the rows the history still needs. Logged in kpi.kpi_runs (kind cleanup, details.deleted). Run daily by pg_cron. Example: call kpi.run_source_cleanup();';

-- ============================================================================================
-- The logs: run log, denial audit and finished alerts after 90 days, the change feed after its
-- `keep`, pg_cron's own run details after 7 days (pg_cron never deletes them).
-- ============================================================================================
create or replace function kpi.clean_up_run_history() returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  runs_deleted bigint;
  denials_deleted bigint;
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
comment on function kpi.clean_up_run_history() is
  'Deletes kpi_runs, api_denials and finished alerts older than 90 days, the change feed older than change_feed_settings.keep, and cron.job_run_details older than 7 days. Run daily by pg_cron.';
