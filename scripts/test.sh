#!/usr/bin/env bash
# `npm test`: type check, then every test file against a real PostgreSQL with pg_cron (the test
# harness starts the project's throwaway test cluster itself; see test/setup/database.ts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USAGE="usage: npm test [-- vitest arguments, e.g. test/api/cron.test.ts -t 'a test name']

Type-checks, then runs every test (or those the arguments choose) against a real PostgreSQL with
pg_cron: a throwaway cluster the harness starts itself (TEST_DATABASE_URL: a server of yours, where
it creates and drops databases named kpi_test_*). Ends with each skipped suite and why, then one
line: tests: N passed, N failed, N skipped. KPI_TESTS_MAY_SKIP=<path prefix>: a skipped test
elsewhere fails the run (CI: test/e2e/). Options other than --help go to vitest, which checks them."
CLI_NAME=test
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
bash scripts/ensure-deps.sh
node_modules/.bin/tsc --noEmit -p tsconfig.json

mkdir -p .data
results=.data/vitest-results.json
rm -f "$results"
status=0
errors=.data/vitest-stderr.log
# vitest's stderr is copied to $errors by tee, through a descriptor closed in vitest itself (its
# fd 2 alone keeps the pipe): a process substitution's descriptor stays open in the command, every
# process vitest starts inherits it, among them the test cluster the harness starts and leaves
# running, and tee, holding the caller's stderr, lived as long as that server (`npm test 2>&1 |
# tail` never ended).
exec {stderr_copy}> >(tee "$errors" >&2)
tee_pid=$!
node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" 2>&"$stderr_copy" {stderr_copy}>&- || status=$?
exec {stderr_copy}>&-
wait "$tee_pid"
# One plain closing line, the same for every runner that reads it.
if [ -f "$results" ]; then
  node scripts/test-summary.mjs "$results" || status=1
else
  # vitest died before it could report: that is a failure, and says so in the same shape.
  if grep -q "Unknown option" "$errors" 2>/dev/null; then
    printf '%s: %s\n%s\n' "$CLI_NAME" "$(grep -o 'Unknown option `[^`]*`' "$errors" | head -n 1) (vitest's options pass through)" "${USAGE%%$'\n'*}" >&2
  fi
  echo "tests: 0 passed, 1 failed, 0 skipped"
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
