-- Keeps this psql session's statements, and any secret in them, out of the server log: a session
-- of a superuser turns statement logging off for itself (log_statement, log_min_duration_statement,
-- and the statement text logged with an error). A non-superuser cannot, and its statements are
-- logged as the server is configured. Included by db/setup/cron_secret.sql and the smoke script.
\o /dev/null
select set_config(name, value, false)
from (values ('log_statement', 'none'), ('log_min_duration_statement', '-1'),
             ('log_min_error_statement', 'panic')) as s (name, value)
where (select rolsuper from pg_roles where rolname = current_user);
\o
