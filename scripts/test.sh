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
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
  ' "$results"
fi
exit "$status"
