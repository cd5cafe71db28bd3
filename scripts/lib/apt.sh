# Installing Debian packages the project needs (sourced by scripts/db.sh and scripts/browser.sh).
# The caller defines say(); apt_install runs only as root on a system with apt-get.
#   apt_install PACKAGE…    apt-get install, updating the package lists first when there are none
#                           (a fresh container) or KPI_APT_UPDATE is set, and once more on failure

apt_install() {
  say "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial || true)" ] || [ -n "${KPI_APT_UPDATE:-}" ]; then
    apt-get update -qq >&2
  fi
  apt-get install -y -qq "$@" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "$@" >&2; }
}

can_apt_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
