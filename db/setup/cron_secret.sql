-- Installs CRON_SECRET from the environment (psql 15+: \getenv), never from the command line, so
-- that it shows in no process list. Run by scripts/cron-secret.sh with -v action=install|rotate|retire.
\set ON_ERROR_STOP on
\set QUIET on
\ir quiet-statement-log.sql
\getenv secret CRON_SECRET

\if :{?secret}
\else
\set secret ''
\endif

-- install: exactly this secret active afterwards, whatever was active before (mid-rotation too).
select :'action' = 'install' as installs \gset
\if :installs
select kpi.install_cron_secret(:'secret') as result \gset
\echo installed: :result
\endif

select :'action' = 'rotate' as rotates \gset
\if :rotates
select kpi.add_cron_secret(:'secret') as result \gset
\echo added: :result
\endif

select :'action' = 'retire' as retires \gset
\if :retires
select kpi.retire_cron_secrets(1) as result \gset
\echo retired: :result
\endif
