#!/usr/bin/env bash
# Smoke test of the HTTP API: health, the cron RPC with a wrong and the right secret, the history
# as JSON, the CSV export.
#
#   BASE_URL=http://localhost:3000 CRON_SECRET=… TOKEN=… scripts/test-kpi-history.sh
#       against a running PostgREST with curl (TOKEN: a tenant JWT; or set PGRST_JWT_SECRET and
#       TENANT_ID and one is minted)
#   DATABASE_URL=postgres://… CRON_SECRET=… TENANT_ID=… scripts/test-kpi-history.sh
#       without PostgREST: the same requests, run through psql the way PostgREST runs them
#       (one transaction, role, JWT claims, headers). DATABASE_URL defaults to the local cluster.
#
# TENANT_ID defaults to the demo tenant acme. Exits non-zero when any check fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USAGE="usage: [BASE_URL=http://localhost:3000] CRON_SECRET=… [TOKEN=…|PGRST_JWT_SECRET=…] [TENANT_ID=…] scripts/test-kpi-history.sh

Smoke test of the HTTP API: health, the cron RPC with a wrong and with the right secret, the
history as JSON, the CSV export. With BASE_URL: curl against a running PostgREST. Without: the same
requests through psql on DATABASE_URL (default: the local cluster), as PostgREST runs them.
Note: the cron check runs a real all-tenant fill (POST /rpc/kpi_history_cron), as pg_cron would.
TENANT_ID defaults to the demo tenant acme. Exits non-zero when any check fails."
CLI_NAME=test-kpi-history
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
cli_refuse "" "$@"
[ "$#" -eq 0 ] || cli_fail "unexpected argument: $1"

TENANT_ID="${TENANT_ID:-00000000-0000-4000-a000-00000000ac01}"
WRONG_SECRET="not-the-cron-secret-but-long-enough-to-look-real"
failures=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() { # name, then a command that succeeds when the check passes
  local name=$1
  shift
  if "$@"; then
    echo "ok    $name"
  else
    echo "FAIL  $name"
    failures=$((failures + 1))
  fi
}
contains() { grep -q -- "$2" "$1"; }
first_line_is() { [ "$(head -n 1 "$1" | tr -d '\r')" = "$2" ]; }

if [ -z "${CRON_SECRET:-}" ]; then
  echo "test-kpi-history: set CRON_SECRET to the secret installed with scripts/cron-secret.sh" >&2
  exit 2
fi
CSV_HEADER="tenant,as_of,aiv_pct,ati_pct,crs_pct,elasticity_usd_per_point,vli_integrity_pct,vli_is_fallback,hrp_pct,updated_at"

# ---------------------------------------------------------------------------------------------
if [ -n "${BASE_URL:-}" ]; then
  echo "== $BASE_URL (PostgREST, with curl)"
  if [ -z "${TOKEN:-}" ]; then
    if [ -z "${PGRST_JWT_SECRET:-}" ]; then
      echo "test-kpi-history: set TOKEN, or PGRST_JWT_SECRET to mint one" >&2
      exit 2
    fi
    TOKEN=$(node_modules/.bin/tsx scripts/token.ts "$TENANT_ID") || exit 2
  fi
  # Secrets go to curl in files, not on its command line where any user could read them.
  umask 077
  printf 'x-cron-secret: %s\n' "$WRONG_SECRET" >"$work/wrong.h"
  printf 'x-cron-secret: %s\n' "$CRON_SECRET" >"$work/right.h"
  printf 'Authorization: Bearer %s\nx-tenant: %s\n' "$TOKEN" "$TENANT_ID" >"$work/user.h"
  http() { # out-file, curl args… → prints the status code
    curl -s -o "$1" -D "$1.headers" -w '%{http_code}' "${@:2}"
  }
  http "$work/tenant" -H @"$work/user.h" "$BASE_URL/active_tenant?select=slug" >/dev/null
  slug=$(sed -nE 's/^\[\{"slug":"([^"]*)"\}\]$/\1/p' "$work/tenant")
  if [ -z "$slug" ]; then
    echo "   tenant $TENANT_ID is not in this database: run \`npm start\` (demo data), or set TENANT_ID to a tenant's id"
  else
    echo "   tenant $TENANT_ID ($slug)"
  fi
  status=$(http "$work/health" "$BASE_URL/rpc/kpi_history_health")
  check "health answers 200 with a status" bash -c "[ $status = 200 ] && grep -q '\"status\"' '$work/health'"
  status=$(http "$work/denied" -X POST -H @"$work/wrong.h" -H 'Content-Type: application/json' -d '{}' "$BASE_URL/rpc/kpi_history_cron")
  check "cron RPC with a wrong secret: 403 FORBIDDEN" bash -c "[ $status = 403 ] && grep -q FORBIDDEN '$work/denied'"
  status=$(http "$work/cron" -X POST -H @"$work/right.h" -H 'Content-Type: application/json' -d '{}' "$BASE_URL/rpc/kpi_history_cron")
  check "cron RPC with the secret: 200 and a result" bash -c "[ $status = 200 ] && grep -q '\"ok\"' '$work/cron'"
  status=$(http "$work/history" -H @"$work/user.h" "$BASE_URL/kpi_history?order=as_of.desc&limit=52")
  check "history: 200 and a JSON array" bash -c "[ $status = 200 ] && head -c 1 '$work/history' | grep -q '\['"
  status=$(http "$work/monthly" -H @"$work/user.h" "$BASE_URL/kpi_history_monthly?order=period_start.desc&limit=12")
  check "months: 200 and the tenant's months" bash -c "[ $status = 200 ] && head -c 2 '$work/monthly' | grep -q '\[{' && grep -Eq '\"tenant\" ?: ?\"$slug\"' '$work/monthly'"
  status=$(http "$work/export.csv" -H @"$work/user.h" -H 'Accept: text/csv' "$BASE_URL/rpc/kpi_history_csv?weeks=2")
  check "CSV: 200, text/csv, attachment" bash -c "[ $status = 200 ] && grep -qi '^content-type: text/csv' '$work/export.csv.headers' && grep -qi '^content-disposition: attachment; filename=\"kpi-history-$slug-[0-9-]*\.csv' '$work/export.csv.headers'"
  check "CSV: header row" first_line_is "$work/export.csv" "$CSV_HEADER"
  check "CSV: weeks=2 gives at most two weeks" bash -c "[ \$(wc -l <'$work/export.csv') -le 3 ] && [ \$(wc -l <'$work/export.csv') -ge 2 ]"
  status=$(http "$work/bad-weeks" -H @"$work/user.h" -H 'Accept: text/csv' "$BASE_URL/rpc/kpi_history_csv?weeks=0")
  check "CSV: weeks=0 is INVALID_INPUT 400" bash -c "[ $status = 400 ] && grep -q INVALID_INPUT '$work/bad-weeks'"

# ---------------------------------------------------------------------------------------------
else
  if [ -z "${DATABASE_URL:-}" ]; then
    DATABASE_URL=$(bash scripts/db.sh url)
  fi
  # Named without its password (and without its options).
  echo "== $(printf '%s' "${DATABASE_URL%%\?*}" | sed -E 's#^([a-z]+://[^:/@]+):[^@]*@#\1:***@#') (psql, as PostgREST would run each request)"
  # request ROLE METHOD PATH CLAIMS HEADERS SQL: the answer's status and body, one line each.
  # CLAIMS and HEADERS are SQL expressions; the secret and the tenant travel in the environment and
  # psql's \getenv, so they are quoted by psql, appear on no command line, and — the session
  # turning statement logging off first, as the secret installer does — in no server log line.
  request() {
    SMOKE_ROLE=$1 SMOKE_METHOD=$2 SMOKE_PATH=$3 SMOKE_SECRET=$SECRET SMOKE_TENANT=$TENANT_ID \
      psql "$DATABASE_URL" -X -q -t -A -v ON_ERROR_STOP=1 2>&1 <<SQL
\i db/setup/quiet-statement-log.sql
\getenv role SMOKE_ROLE
\getenv method SMOKE_METHOD
\getenv path SMOKE_PATH
\getenv secret SMOKE_SECRET
\getenv tenant SMOKE_TENANT
begin isolation level read committed $([ "$2" = GET ] && echo read only);
\o /dev/null
select set_config('search_path', '"api", "public"', true), set_config('role', :'role', true),
       set_config('request.jwt.claims', ($4)::text, true), set_config('request.method', :'method', true),
       set_config('request.path', :'path', true), set_config('request.headers', ($5)::text, true),
       set_config('request.cookies', '{}', true);
\o
$6
select coalesce(nullif(current_setting('response.status', true), ''), '200');
commit;
SQL
  }
  anon="json_build_object('role', 'anon')"
  user="json_build_object('role', 'authenticated', 'sub', 'smoke', 'tenant_ids', json_build_array(:'tenant'))"
  cron_headers="json_build_object('x-cron-secret', :'secret', 'content-type', 'application/json')"

  # A database without the tenant (no demo data yet) fails every tenant check: say so first.
  slug=$(SMOKE_TENANT=$TENANT_ID psql "$DATABASE_URL" -X -q -t -A -v ON_ERROR_STOP=1 2>/dev/null <<'SQL' || true
\getenv tenant SMOKE_TENANT
select slug from kpi.tenants where id::text = lower(:'tenant');
SQL
)
  if [ -z "$slug" ]; then
    echo "   tenant $TENANT_ID is not in this database: run \`npm start\` (demo data), or set TENANT_ID to a tenant's id"
  else
    echo "   tenant $TENANT_ID ($slug)"
  fi

  SECRET=$WRONG_SECRET
  request anon GET /rpc/kpi_history_health "$anon" "'{}'::json" 'select api.kpi_history_health();' >"$work/health"
  check "health answers with a status" contains "$work/health" '"status"'
  request anon POST /rpc/kpi_history_cron "$anon" "$cron_headers" "select api.kpi_history_cron('{}');" >"$work/denied"
  check "cron RPC with a wrong secret: 403 FORBIDDEN" bash -c "grep -q FORBIDDEN '$work/denied' && tail -n 1 '$work/denied' | grep -qx 403"
  SECRET=$CRON_SECRET
  request anon POST /rpc/kpi_history_cron "$anon" "$cron_headers" "select api.kpi_history_cron('{}');" >"$work/cron"
  SECRET=
  check "cron RPC with the secret: 200 and a result" bash -c "grep -q '\"ok\"' '$work/cron' && tail -n 1 '$work/cron' | grep -qx 200"
  request authenticated GET /kpi_history "$user" "json_build_object('x-tenant', :'tenant')" \
    'select coalesce(json_agg(h), $$[]$$) from (select * from api.kpi_history order by as_of desc limit 52) h;' >"$work/history"
  check "history: a JSON array of the tenant's weeks" bash -c "head -c 2 '$work/history' | grep -q '\[{' && tail -n 1 '$work/history' | grep -qx 200"
  request authenticated GET /kpi_history_monthly "$user" "json_build_object('x-tenant', :'tenant')" \
    'select coalesce(json_agg(m), $$[]$$) from (select * from api.kpi_history_monthly order by period_start desc limit 12) m;' >"$work/monthly"
  check "months: a JSON array of the tenant's months" bash -c "head -c 2 '$work/monthly' | grep -q '\[{' && grep -Eq '\"tenant\" ?: ?\"$slug\"' '$work/monthly' && tail -n 1 '$work/monthly' | grep -qx 200"
  request authenticated GET /rpc/kpi_history_csv "$user" "json_build_object('accept', 'text/csv')" \
    "select api.kpi_history_csv(weeks => '52'); select current_setting('response.headers', true);" >"$work/export.csv"
  check "CSV: header row" first_line_is "$work/export.csv" "$CSV_HEADER"
  check "CSV: attachment named after the tenant ($slug)" contains "$work/export.csv" "attachment; filename=\\\\\"kpi-history-$slug-[0-9-]*\.csv"
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed" >&2
  for file in "$work"/*; do
    # Show what came back, never the request files holding secrets.
    case "$file" in *.h) continue ;; esac
    echo "--- $(basename "$file")" >&2
    head -c 2000 "$file" >&2
    echo >&2
  done
  exit 1
fi
echo "all checks passed"
