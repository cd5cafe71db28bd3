#!/usr/bin/env bash
# Installs the secret that guards POST /rpc/kpi_history_cron, from the CRON_SECRET environment
# variable. Only a salted hash reaches the table; the secret is never printed or logged.
#
#   scripts/cron-secret.sh install   make CRON_SECRET the only active secret
#   scripts/cron-secret.sh rotate    add CRON_SECRET and keep the old one working (move callers over…)
#   scripts/cron-secret.sh retire    …then retire every secret but the newest
#
# Against DATABASE_URL when set, otherwise the local cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USAGE="usage: npm run cron-secret -- install|rotate|retire   (reads CRON_SECRET)

  install  make CRON_SECRET the only active secret
  rotate   add CRON_SECRET, keeping the old one working while callers move over
  retire   then retire every secret but the newest
Only a salted hash reaches the database; the secret is never printed. Against DATABASE_URL when
set, otherwise the local cluster."
CLI_NAME=cron-secret
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
cli_refuse "" "$@"
[ "$#" -le 1 ] || cli_fail "unexpected argument: $2"

action="${1:-}"
case "$action" in
  install | rotate | retire) ;;
  '') cli_fail "an action is required" ;;
  *) cli_fail "unknown action: $action" ;;
esac
if [ "$action" != retire ]; then
  if [ -z "${CRON_SECRET:-}" ]; then
    echo "cron-secret: CRON_SECRET is not set. Generate one with: export CRON_SECRET=\"\$(openssl rand -base64 48)\"" >&2
    exit 1
  fi
  if [ "${#CRON_SECRET}" -lt 32 ]; then
    echo "cron-secret: CRON_SECRET must be at least 32 characters (it has ${#CRON_SECRET}). Generate one with: openssl rand -base64 48" >&2
    exit 1
  fi
fi

if [ -n "${DATABASE_URL:-}" ]; then
  exec psql "$DATABASE_URL" -X -v action="$action" -f db/setup/cron_secret.sql
fi
exec bash scripts/db.sh psql -X -v action="$action" -f db/setup/cron_secret.sql
