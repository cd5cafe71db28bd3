#!/usr/bin/env bash
# `npm run build`: the SDK's JavaScript and type declarations in dist/ (what npm pack publishes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
USAGE="usage: npm run build

Compiles sdk/src to dist/ (JavaScript and .d.ts) with tsconfig.build.json, replacing dist/."
CLI_NAME=build
# shellcheck source=scripts/lib/cli.sh
. scripts/lib/cli.sh
cli_help "$@"
cli_refuse "" "$@"
[ "$#" -eq 0 ] || cli_fail "unexpected argument: $1"
rm -rf dist
node_modules/.bin/tsc -p tsconfig.build.json
