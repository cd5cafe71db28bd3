-- migrate:up

-- The change feed kept each history change as JSON built by the writing statement: the fill paid
-- for a JSON document per row written (measured: two thirds of the log's cost). A history change
-- now keeps the row itself, as this composite type, and readers build the API's JSON from it when
-- they read a page (kpi_api.history_change_data, db/definitions/08_change_feed.sql). The type is the
-- feed's own, not kpi_history's row type, so that altering kpi_history never needs the log
-- rewritten: a column added to the history is added here too, in the same migration, when the
-- feed should carry it. Entries written before keep their JSON in `data`.
create type kpi.history_change as (
  as_of date,
  aiv_pct numeric(5, 2),
  ati_pct numeric(5, 2),
  crs_pct numeric(5, 2),
  elasticity_usd_per_point numeric(10, 2),
  vli_integrity_pct numeric(5, 2),
  vli_is_fallback boolean,
  hrp_pct numeric(5, 2),
  updated_at timestamptz,
  revision integer
);
comment on type kpi.history_change is 'A kpi_history row as the change feed keeps it (kpi.kpi_changes.history_row).';
alter table kpi.kpi_changes add column history_row kpi.history_change;
comment on column kpi.kpi_changes.history_row is
  'For a history insert or update: the row after the change (readers turn it into the API''s JSON); data is then NULL.';
-- The JSON builder of before, which the definitions replace (it took kpi_history's row type).
drop function if exists kpi.history_change_data(kpi.kpi_history);

-- migrate:down
update kpi.kpi_changes c
set data = jsonb_build_object('as_of', (c.history_row).as_of, 'aiv_pct', (c.history_row).aiv_pct, 'ati_pct', (c.history_row).ati_pct,
                              'crs_pct', (c.history_row).crs_pct, 'elasticity_usd_per_point', (c.history_row).elasticity_usd_per_point,
                              'vli_integrity_pct', (c.history_row).vli_integrity_pct, 'vli_is_fallback', (c.history_row).vli_is_fallback,
                              'hrp_pct', (c.history_row).hrp_pct,
                              'updated_at', (to_json((c.history_row).updated_at at time zone 'UTC') #>> '{}') || '+00:00',
                              'revision', (c.history_row).revision)
where c.history_row is not null;
alter table kpi.kpi_changes drop column history_row;
-- With the functions of the definitions that take or return it (the log's trigger calls one: apply
-- the previous release's definitions after rolling back, docs/operations.md, "Upgrading").
drop type kpi.history_change cascade;
