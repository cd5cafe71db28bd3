#!/usr/bin/env bash
# `npm run test:e2e`: the whole stack of docker-compose.yml (PostgreSQL + pg_cron, dbmate,
# the cron secret, PostgREST v16.2) in a compose project of its own, the demo data backfilled,
# then test/e2e against it, then the stack removed. Needs a Docker engine; without one it says so
# and exits 2 (nothing was tested).
#
# Secrets are generated for the run (never your .env). Ports: KPI_E2E_API_PORT (default 3100),
# KPI_E2E_ADMIN_PORT (3101), KPI_E2E_STREAM_PORT (3102), KPI_E2E_DB_PORT (54331), so a stack you
# run yourself is untouched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USAGE="usage: npm run test:e2e

Brings up the whole compose stack (PostgreSQL + pg_cron, migrations, PostgREST v16.2, the worker) in a project
of its own with generated secrets, seeds the demo data, runs test/e2e against it, and removes the
stack. Needs a Docker engine (without one: exit 2, nothing tested). Ports: KPI_E2E_API_PORT (3100),
KPI_E2E_ADMIN_PORT (3101), KPI_E2E_STREAM_PORT (3102), KPI_E2E_DB_PORT (54331)."
CLI_NAME=test:e2e
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
cli_refuse "" "$@"
[ "$#" -eq 0 ] || cli_fail "unexpected argument: $1"

if ! docker_error=$(docker info 2>&1 >/dev/null); then
  echo "test:e2e: not run: no Docker engine answers ($(printf '%s' "$docker_error" | head -n 1))." >&2
  echo "test:e2e: the replay in npm test covers the same calls; run this where Docker runs (CI: .github/workflows/ci.yml)." >&2
  exit 2
fi

bash scripts/ensure-deps.sh
work=$(mktemp -d)
project="kpi-history-e2e-$$"
secret() { node -e 'console.log(require("crypto").randomBytes(36).toString("base64url"))'; }
export POSTGRES_PASSWORD=$(secret) AUTHENTICATOR_PASSWORD=$(secret) PGRST_JWT_SECRET=$(secret) CRON_SECRET=$(secret)
export KPI_API_PORT=${KPI_E2E_API_PORT:-3100} KPI_ADMIN_PORT=${KPI_E2E_ADMIN_PORT:-3101} KPI_COMPOSE_DB_PORT=${KPI_E2E_DB_PORT:-54331}
export KPI_STREAM_PUBLISHED_PORT=${KPI_E2E_STREAM_PORT:-3102}
compose() { docker compose --project-name "$project" --env-file /dev/null "$@"; }
cleanup() {
  compose down --volumes --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== docker compose up ($project)"
compose up --detach --build
echo "== waiting for PostgREST (admin /ready)"
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$KPI_ADMIN_PORT/ready" >/dev/null 2>&1; then ready=1; break; fi
  sleep 1
done
if [ -z "${ready:-}" ]; then
  compose ps -a >&2
  compose logs --no-color --tail 50 >&2
  echo "test:e2e: PostgREST did not become ready in 120 s" >&2
  exit 1
fi

echo "== waiting for the worker (its health check, /v1/health)"
for _ in $(seq 1 120); do
  if [ "$(docker inspect --format '{{.State.Health.Status}}' "$(compose ps -q worker)" 2>/dev/null)" = healthy ] \
     && curl -sf "http://127.0.0.1:$KPI_STREAM_PUBLISHED_PORT/v1/health" >/dev/null 2>&1; then worker_ready=1; break; fi
  sleep 1
done
if [ -z "${worker_ready:-}" ]; then
  compose ps -a >&2
  compose logs --no-color --tail 50 worker >&2
  echo "test:e2e: the worker did not become healthy in 120 s" >&2
  exit 1
fi

echo "== demo data, backfilled"
compose exec -T db psql -U postgres -d kpi_history -X -q -v ON_ERROR_STOP=1 <db/seed/demo.sql
compose exec -T db psql -U postgres -d kpi_history -X -q -v ON_ERROR_STOP=1 -c 'select kpi.backfill_kpi_history()' >/dev/null
compose exec -T db psql -U postgres -d kpi_history -X -q -A -t -c 'select version()'

echo "== test/e2e"
DATABASE_URL="postgres://postgres:$POSTGRES_PASSWORD@127.0.0.1:$KPI_COMPOSE_DB_PORT/kpi_history" \
POSTGREST_URL="http://127.0.0.1:$KPI_API_PORT" POSTGREST_ADMIN_URL="http://127.0.0.1:$KPI_ADMIN_PORT" \
  node_modules/.bin/vitest run --config vitest.e2e.config.ts
