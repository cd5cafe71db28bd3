#!/usr/bin/env bash
# Says clearly when Node.js is missing or older than package.json's "engines" allows, before
# `npm ci` fails on it with something obscure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
required=$(sed -nE 's/.*"node": ">=([0-9]+).*/\1/p' package.json | head -n 1)
if ! command -v node >/dev/null; then
  echo "kpi-history needs Node.js $required or newer, and node is not installed (https://nodejs.org, or your package manager)." >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt "$required" ]; then
  echo "kpi-history needs Node.js $required or newer; this is $(node --version) ($(command -v node)). Install Node.js $required+ and run again." >&2
  exit 1
fi
