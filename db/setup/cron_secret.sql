-- Installs CRON_SECRET from the environment (psql 15+: \getenv), never from the command line, so
-- that it shows in no process list. Run by scripts/cron-secret.sh with -v action=install|rotate|retire.
\set ON_ERROR_STOP on
\set QUIET on
-- A superuser keeps this session's statements, and the secret in them, out of the server log.
\o /dev/null
select set_config(name, value, false)
from (values ('log_statement', 'none'), ('log_min_duration_statement', '-1'),
             ('log_min_error_statement', 'panic')) as s (name, value)
where (select rolsuper from pg_roles where rolname = current_user);
\o
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
