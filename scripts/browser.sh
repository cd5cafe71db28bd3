#!/usr/bin/env bash
# The headless browser of the dashboard's browser test: the operating system's Chromium, never a
# download (test machines may have no network but their package mirror).
#
#   scripts/browser.sh install | path
#
# Environment: KPI_CHROMIUM  a Chromium or Chrome executable to use instead of the system's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USAGE="usage: bash scripts/browser.sh install|path

The Chromium the browser test drives (playwright-core, no browser download):
  install  install Debian's chromium package with apt-get when no Chromium is found (as root)
  path     print the executable's path (installing it first where install can), or say why there is none
Environment: KPI_CHROMIUM, a Chromium or Chrome executable to use instead."
CLI_NAME=browser
# shellcheck source=scripts/lib/cli.sh
. "$ROOT/scripts/lib/cli.sh"
cli_help "$@"
cli_refuse "" "$@"
say() { printf 'browser: %s\n' "$*" >&2; }
die() { printf 'browser: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"

find_chromium() {
  if [ -n "${KPI_CHROMIUM:-}" ]; then
    [ -x "$KPI_CHROMIUM" ] || die "KPI_CHROMIUM=$KPI_CHROMIUM is not an executable"
    echo "$KPI_CHROMIUM"
    return
  fi
  local candidate
  for candidate in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$candidate" >/dev/null; then command -v "$candidate"; return; fi
  done
  return 1
}

ensure_chromium() {
  local found
  if found=$(find_chromium); then echo "$found"; return; fi
  if can_apt_install; then
    apt_install chromium
    if found=$(find_chromium); then echo "$found"; return; fi
  fi
  die "Chromium is not installed. Run: sudo apt-get install chromium (or set KPI_CHROMIUM to a Chromium or Chrome executable)"
}

case "${1:-}" in
  install) say "Chromium found: $(ensure_chromium)" ;;
  path) ensure_chromium ;;
  '') cli_fail "a command is required" ;;
  *) cli_fail "unknown command: $1" ;;
esac
