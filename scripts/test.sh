#!/usr/bin/env bash
# `npm test`: type check, then every test file against a real PostgreSQL with pg_cron (the test
# harness starts the project's throwaway test cluster itself; see test/setup/database.ts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-deps.sh
node_modules/.bin/tsc --noEmit -p tsconfig.json
exec node_modules/.bin/vitest run "$@"
