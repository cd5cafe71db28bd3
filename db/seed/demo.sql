-- Demo data for `npm start`: a few tenants with several weeks of reports, deterministic (fixed
-- dates and values), re-runnable (the demo tenants are replaced as a whole).
--   acme      8 weeks of AVI, weekly VLI audits, weekly clarity reports
--   globex    6 weeks of AVI, never audited (VLI falls back to 100)
--   initech   audited and measured, but no AVI report yet (the fill reports NO_AVI)
--   umbrella  4 weeks of AVI; its latest clarity report carries an invalid HRP ("high")
--   hooli     16 steady weeks, then AIV collapses (62 % → 31 %) and HRP jumps (5 % → 40 %): anomalies
begin;

delete from kpi.tenants where slug in ('acme', 'globex', 'initech', 'umbrella', 'hooli');

insert into kpi.tenants (id, slug, name) values
  ('00000000-0000-4000-a000-00000000ac01', 'acme', 'Acme Corp'),
  ('00000000-0000-4000-a000-00000000610b', 'globex', 'Globex, Inc.'),
  ('00000000-0000-4000-a000-000000001417', 'initech', 'Initech'),
  ('00000000-0000-4000-a000-000000000b0b', 'umbrella', 'Umbrella "Health" Ltd'),
  ('00000000-0000-4000-a000-0000000000a1', 'hooli', 'Hooli');

-- Weekly AVI reports ending with the week of Monday 2026-11-23.
insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, computed_at)
select t.id,
       date '2026-11-23' - 7 * (t.weeks - w),
       40 + 2.5 * w + t.offset_pct,
       55 + 1.25 * w,
       70 - 0.5 * w + t.offset_pct / 2,
       1200 + 35 * w + 10 * t.offset_pct,
       (date '2026-11-23' - 7 * (t.weeks - w)) + interval '7 days 2 hours'
from (values ('00000000-0000-4000-a000-00000000ac01'::uuid, 8, 0),
             ('00000000-0000-4000-a000-00000000610b'::uuid, 6, 7),
             ('00000000-0000-4000-a000-000000000b0b'::uuid, 4, -12)) as t (id, weeks, offset_pct)
cross join lateral generate_series(1, t.weeks) as w;

-- VLI audits on Wednesdays (none for globex).
insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct)
select t.id, date '2026-11-25' - 7 * (t.weeks - w) + time '09:30', 88 + w + t.offset_pct
from (values ('00000000-0000-4000-a000-00000000ac01'::uuid, 8, 0),
             ('00000000-0000-4000-a000-000000001417'::uuid, 3, 2),
             ('00000000-0000-4000-a000-000000000b0b'::uuid, 4, -20)) as t (id, weeks, offset_pct)
cross join lateral generate_series(1, t.weeks) as w;

-- Clarity reports on Thursdays.
insert into kpi.clarity_reports (tenant_id, measured_at, metrics)
select t.id, date '2026-11-26' - 7 * (t.weeks - w) + time '14:00',
       jsonb_build_object('hrp', round(0.30 - 0.02 * w, 4), 'tokens_sampled', 5000 + 100 * w)
from (values ('00000000-0000-4000-a000-00000000ac01'::uuid, 8),
             ('00000000-0000-4000-a000-00000000610b'::uuid, 6),
             ('00000000-0000-4000-a000-000000001417'::uuid, 3),
             ('00000000-0000-4000-a000-000000000b0b'::uuid, 3)) as t (id, weeks)
cross join lateral generate_series(1, t.weeks) as w;

insert into kpi.clarity_reports (tenant_id, measured_at, metrics) values
  ('00000000-0000-4000-a000-000000000b0b', '2026-11-27 09:00+00', '{"hrp": "high", "tokens_sampled": 4200}');

-- hooli: sixteen steady weeks, audited and measured, the last one far off in AIV and HRP.
insert into kpi.avi_reports (tenant_id, week_start, aiv_pct, ati_pct, crs_pct, elasticity_usd_per_point, computed_at)
select '00000000-0000-4000-a000-0000000000a1', date '2026-11-23' - 7 * (16 - w),
       case when w = 16 then 31 else 62 + 0.5 * (w % 3) end, 48 + 0.25 * (w % 4), 66, 2100 + 5 * (w % 2),
       (date '2026-11-23' - 7 * (16 - w)) + interval '7 days 2 hours'
from generate_series(1, 16) as w;
insert into kpi.vli_audits (tenant_id, audited_at, integrity_pct)
select '00000000-0000-4000-a000-0000000000a1', date '2026-11-25' - 7 * (16 - w) + time '09:30', 95 + 0.5 * (w % 2)
from generate_series(1, 16) as w;
insert into kpi.clarity_reports (tenant_id, measured_at, metrics)
select '00000000-0000-4000-a000-0000000000a1', date '2026-11-26' - 7 * (16 - w) + time '14:00',
       jsonb_build_object('hrp', case when w = 16 then 0.40 else 0.05 + 0.005 * (w % 2) end, 'tokens_sampled', 8000)
from generate_series(1, 16) as w;

commit;
