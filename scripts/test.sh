#!/usr/bin/env bash
# `npm test`: type check, then every test file against a real PostgreSQL with pg_cron (the test
# harness starts the project's throwaway test cluster itself; see test/setup/database.ts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-deps.sh
node_modules/.bin/tsc --noEmit -p tsconfig.json

mkdir -p .data
results=.data/vitest-results.json
rm -f "$results"
status=0
node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" || status=$?
# One plain closing line, the same for every runner that reads it.
if [ -f "$results" ]; then
  node scripts/test-summary.mjs "$results"
else
  # vitest died before it could report: that is a failure, and says so in the same shape.
  echo "tests: 0 passed, 1 failed, 0 skipped"
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
