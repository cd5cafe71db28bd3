#!/usr/bin/env bash
# First start of the container only: the login role PostgREST connects as, with its password taken
# from the environment. The migrations create the same role without a password when it is missing.
set -euo pipefail
: "${AUTHENTICATOR_PASSWORD:?set AUTHENTICATOR_PASSWORD (see .env.example)}"
psql -v ON_ERROR_STOP=1 -v pw="$AUTHENTICATOR_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
create role authenticator login noinherit password :'pw';
SQL
