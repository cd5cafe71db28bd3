#!/usr/bin/env bash
# The project's own PostgreSQL cluster with pg_cron: private, in a git-ignored folder, on 127.0.0.1.
#
#   scripts/db.sh up | down | status | url | psql [psql args…] | reset | install
#
# Environment (all optional):
#   KPI_DB_PORT    port to listen on              (default 54329: clear of a system PostgreSQL on 5432;
#                  when something else holds it, a new cluster takes the next free port and keeps it)
#   KPI_DB_NAME    application database; pg_cron lives in it (default kpi_history)
#   KPI_DB_DIR     data directory                 (default <repo>/.data/pg)
#   KPI_DB_FAST    1 = fsync off, for throwaway test clusters only
#   KPI_DB_SETTINGS  extra postgresql.conf lines, e.g. "shared_buffers = '4GB'" (the benchmark's)
#   KPI_PG_BINDIR  PostgreSQL's bin directory     (default: the newest one installed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEFAULT_PORT=54329
PORT=""
DB_NAME="${KPI_DB_NAME:-kpi_history}"
DATA_DIR="${KPI_DB_DIR:-$ROOT/.data/pg}"
SUPERUSER=postgres

say() { printf 'db: %s\n' "$*" >&2; }
die() { printf 'db: error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
as_server_user() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

find_bindir() {
  if [ -n "${KPI_PG_BINDIR:-}" ]; then echo "$KPI_PG_BINDIR"; return; fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/postgres" ]; then echo "$dir"; return; fi
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/postgres" ]; then pg_config --bindir; return; fi
  if command -v postgres >/dev/null; then dirname "$(readlink -f "$(command -v postgres)")"; return; fi
}

has_pg_cron() {
  local bindir=$1 libdir
  libdir=$("$bindir/pg_config" --pkglibdir 2>/dev/null || echo "$bindir/../lib")
  [ -f "$libdir/pg_cron.so" ]
}

# shellcheck source=scripts/lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"

# Installs PostgreSQL and the matching pg_cron when missing (root on Debian/Ubuntu), or says exactly
# what to run. Prints the bin directory.
ensure_binaries() {
  local bindir major
  bindir=$(find_bindir || true)
  if [ -z "$bindir" ]; then
    if can_apt_install; then
      apt_install postgresql postgresql-contrib
      bindir=$(find_bindir || true)
    fi
    [ -n "$bindir" ] || die "PostgreSQL is not installed. Run: sudo apt-get install postgresql postgresql-contrib \
(or install PostgreSQL 15+ and set KPI_PG_BINDIR to its bin directory)"
  fi
  major=$("$bindir/postgres" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')
  [ "$major" -ge 15 ] || die "PostgreSQL $major found in $bindir; 15 or newer is needed (security_invoker views)."
  if ! has_pg_cron "$bindir"; then
    if can_apt_install; then
      apt_install "postgresql-$major-cron"
    fi
    has_pg_cron "$bindir" || die "pg_cron is not installed for PostgreSQL $major. Run: sudo apt-get install postgresql-$major-cron"
  fi
  echo "$bindir"
}

# As root, the server runs as `postgres`, which must reach the data directory. The script changes
# the owner only of what it creates itself: the missing directories down to the data directory,
# and the log file beside it. A data directory the postgres user cannot reach (a checkout under
# /root, a parent with mode 700) gets its cluster under /var/lib/postgresql instead, the same
# place every time.
nearest_existing() {
  local dir=$1
  while [ ! -e "$dir" ]; do dir=$(dirname "$dir"); done
  echo "$dir"
}

# mkdir -p, giving the postgres user each directory it creates, and nothing else.
make_dirs_for_server() {
  local dir=$1 missing=()
  while [ ! -e "$dir" ]; do
    missing=("$dir" "${missing[@]}")
    dir=$(dirname "$dir")
  done
  for dir in "${missing[@]}"; do
    mkdir "$dir"
    chown postgres: "$dir"
  done
}

resolve_data_dir() {
  if is_root && ! runuser -u postgres -- test -x "$(nearest_existing "$DATA_DIR")"; then
    local hash
    hash=$(printf '%s' "$DATA_DIR" | md5sum | cut -c1-12)
    REQUESTED_DATA_DIR=$DATA_DIR
    DATA_DIR="/var/lib/postgresql/kpi-history/$hash/$(basename "$DATA_DIR")"
  fi
}

create_data_dir() {
  if [ -n "${REQUESTED_DATA_DIR:-}" ]; then
    say "the postgres user cannot reach $REQUESTED_DATA_DIR: the cluster lives in $DATA_DIR"
  fi
  if is_root; then
    make_dirs_for_server "$DATA_DIR"
    [ -e "$DATA_DIR.log" ] || install -o postgres -g postgres -m 600 /dev/null "$DATA_DIR.log"
  else
    mkdir -p "$DATA_DIR"
  fi
}

# KPI_DB_PORT when set; else the port this cluster was last started on (its kpi-history.conf);
# else the default.
resolve_port() {
  if [ -n "${KPI_DB_PORT:-}" ]; then
    PORT=$KPI_DB_PORT
  else
    PORT=$(sed -nE 's/^port = ([0-9]+)$/\1/p' "$DATA_DIR/kpi-history.conf" 2>/dev/null || true)
    PORT=${PORT:-$DEFAULT_PORT}
  fi
}

# A port is in use when something answers on it, or when any socket is bound to it: the 543xx ports
# lie in Linux's ephemeral range, so a client connection of another program (the tests open many)
# can hold one for a while without listening, and the server's bind then fails. Sockets in
# TIME_WAIT (state 06) do not count: PostgreSQL binds with SO_REUSEADDR.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
  local local_port
  local_port=$(printf ':%04X' "$1")
  awk -v p="$local_port" 'FNR > 1 && $4 != "06" && substr($2, length($2) - 4) == p { found = 1; exit }
    END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Ports the project gives to other databases, never taken by this one even when free now: the
# compose stack's (54330), the end-to-end stack's (54331) and the benchmark's cluster (54359).
RESERVED_PORTS="54330 54331 54359"
is_reserved_port() { [[ " $RESERVED_PORTS " == *" $1 "* ]]; }

# What listens on a port: another kpi-history cluster (and where), another PostgreSQL, or else.
port_holder() {
  local dir
  dir=$(PGCONNECT_TIMEOUT=2 "$BINDIR/psql" -X -q -t -A -h 127.0.0.1 -p "$1" -U "$SUPERUSER" -d postgres \
    -c "select current_setting('data_directory')" 2>/dev/null || true)
  if [ -n "$dir" ] && [ -f "$dir/kpi-history.conf" ]; then
    echo "another kpi-history cluster (data directory $dir; stop it with: KPI_DB_DIR=$dir scripts/db.sh down)"
  elif [ -n "$dir" ]; then
    echo "another PostgreSQL server (data directory $dir)"
  else
    echo "another program"
  fi
}

# Before starting on a port something else holds: with KPI_DB_PORT given, say what holds it and
# stop; otherwise take the next free port (kept in kpi-history.conf for url, psql and status).
choose_port() {
  port_in_use "$PORT" || return 0
  local holder
  holder=$(port_holder "$PORT")
  if [ -n "${KPI_DB_PORT:-}" ]; then
    die "port $PORT is held by $holder. Set KPI_DB_PORT to a free port, or stop what holds it."
  fi
  local held=$PORT
  PORT=$(next_free_port "$held")
  say "port $held is held by $holder: this cluster takes $PORT, and keeps it (KPI_DB_PORT overrides)"
}

next_free_port() {
  local candidate=$(($1 + 1))
  while port_in_use "$candidate" || is_reserved_port "$candidate"; do candidate=$((candidate + 1)); done
  echo "$candidate"
}

url() { echo "postgres://$SUPERUSER@127.0.0.1:$PORT/$DB_NAME"; }

write_config() {
  local fsync=on
  [ "${KPI_DB_FAST:-0}" = 1 ] && fsync=off
  as_server_user tee "$DATA_DIR/kpi-history.conf" >/dev/null <<EOF
# Written by scripts/db.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
shared_preload_libraries = 'pg_cron'
cron.database_name = '$DB_NAME'
# Jobs run in background workers: no connection, so no password or pg_hba entry is needed.
cron.use_background_workers = on
max_worker_processes = 32
fsync = $fsync
log_min_messages = warning
${KPI_DB_SETTINGS:-}
EOF
  grep -q "^include_if_exists = 'kpi-history.conf'" "$DATA_DIR/postgresql.conf" ||
    echo "include_if_exists = 'kpi-history.conf'" | as_server_user tee -a "$DATA_DIR/postgresql.conf" >/dev/null
}

# The server is running when postmaster.pid names a live PostgreSQL process. pg_ctl's own check is
# fooled by a crashed postmaster left as a zombie, or by its PID reused by another program.
server_pid() {
  local pidfile="$DATA_DIR/postmaster.pid" pid state
  [ -f "$pidfile" ] || return 1
  pid=$(head -n 1 "$pidfile")
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed -E 's/^[0-9]+ \([^)]*\) (.).*/\1/' "/proc/$pid/stat")
  [ "$state" != Z ] && grep -qE '^(postgres|postmaster)' "/proc/$pid/comm" && echo "$pid"
}

is_running() { server_pid >/dev/null; }

# The port our server listens on (line 4 of postmaster.pid); another server may hold $PORT.
running_port() { sed -n 4p "$DATA_DIR/postmaster.pid" 2>/dev/null; }

# A crash leaves postmaster.pid behind; remove it so that pg_ctl does not refuse to start.
clear_stale_pid() {
  if [ -f "$DATA_DIR/postmaster.pid" ] && ! is_running; then
    say "removing stale $DATA_DIR/postmaster.pid left by a crashed server"
    rm -f "$DATA_DIR/postmaster.pid"
  fi
}

psql_super() { "$BINDIR/psql" -X -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER" "$@"; }

# True while the server started last is replaying WAL after a crash: it runs, and the end of its
# log is a redo in progress or a refusal because recovery has not reached a consistent state.
pg_is_recovering() {
  as_server_user "$BINDIR/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1 || return 1
  tail -n 3 "$DATA_DIR.log" 2>/dev/null | grep -qE 'redo in progress|not yet accepting connections|redo starts at'
}

cmd_up() {
  BINDIR=$(ensure_binaries)
  create_data_dir
  if [ ! -f "$DATA_DIR/PG_VERSION" ]; then
    say "creating cluster in $DATA_DIR"
    chmod 700 "$DATA_DIR"
    as_server_user "$BINDIR/initdb" -D "$DATA_DIR" -U "$SUPERUSER" --auth=trust -E UTF8 --no-locale >/dev/null
  fi
  clear_stale_pid
  is_running || choose_port
  write_config
  if is_running && [ "$(running_port)" != "$PORT" ]; then
    # Settings such as the port only apply on restart.
    say "restarting: the running server listens on port $(running_port), not $PORT"
    as_server_user "$BINDIR/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null
  fi
  if ! is_running; then
    say "starting PostgreSQL on 127.0.0.1:$PORT (log: $DATA_DIR.log)"
    local started=0 taken
    for _ in 1 2 3; do
      as_server_user "$BINDIR/pg_ctl" -D "$DATA_DIR" -l "$DATA_DIR.log" -w -t 60 start >/dev/null && { started=1; break; }
      # A port chosen here can be taken between the check and the server's bind (another cluster
      # starting at the same moment, a client's ephemeral port): take the next one. A port given
      # in KPI_DB_PORT is never changed.
      [ -z "${KPI_DB_PORT:-}" ] && ! is_running && tail -n 5 "$DATA_DIR.log" 2>/dev/null | grep -q 'Address already in use' || break
      taken=$PORT
      PORT=$(next_free_port "$taken")
      say "port $taken was taken while the server started: this cluster takes $PORT, and keeps it (KPI_DB_PORT overrides)"
      write_config
    done
    if [ "$started" = 0 ]; then
      # After a crash the server replays its WAL before it accepts connections, which can take
      # minutes on a large cluster (the bench's): wait while the log says it is still replaying.
      while pg_is_recovering; do
        say "still recovering after a crash ($(grep -o 'elapsed time: [0-9.]* s' "$DATA_DIR.log" | tail -n 1)); waiting"
        sleep 10
        if as_server_user "$BINDIR/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1 && psql_super -d postgres -tAc 'select 1' >/dev/null 2>&1; then
          break
        fi
      done
      if ! psql_super -d postgres -tAc 'select 1' >/dev/null 2>&1; then
        # The reason is in the server's log; show its end rather than make the reader go looking.
        tail -n 5 "$DATA_DIR.log" 2>/dev/null | sed 's/^/db:   /' >&2 || true
        die "the server did not start; see $DATA_DIR.log"
      fi
    fi
  fi
  if [ -z "$(psql_super -d postgres -tAc "select 1 from pg_database where datname = '$DB_NAME'")" ]; then
    psql_super -d postgres -c "create database \"$DB_NAME\""
  fi
  # pg_cron can only be created in cron.database_name, which is this database.
  psql_super -d "$DB_NAME" -c "set client_min_messages = warning; create extension if not exists pg_cron"
  say "ready: $(url)"
}

cmd_down() {
  BINDIR=$(find_bindir) || die "PostgreSQL is not installed"
  if [ -f "$DATA_DIR/PG_VERSION" ] && is_running; then
    as_server_user "$BINDIR/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null
    say "stopped"
  else
    say "not running"
  fi
}

cmd_status() {
  BINDIR=$(find_bindir) || die "PostgreSQL is not installed"
  if [ -f "$DATA_DIR/PG_VERSION" ] && is_running && [ "$(running_port)" = "$PORT" ] &&
    "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER"; then
    echo "running  $(url)  data: $DATA_DIR"
  else
    echo "stopped  data: $DATA_DIR"
    return 3
  fi
}

cmd_reset() {
  cmd_down
  rm -rf "$DATA_DIR" "$DATA_DIR.log"
  cmd_up
}

USAGE="usage: npm run db:up|db:down|db:psql [-- psql arguments]   (scripts/db.sh up|down|status|url|psql [args]|reset|install)

The project's own PostgreSQL cluster with pg_cron, in .data/pg on 127.0.0.1:$DEFAULT_PORT:
  up       start it (installing PostgreSQL and pg_cron with apt-get when missing, as root)
  down     stop it (the data stays)
  status   whether it runs, and where
  url      its connection URL
  psql     psql on its database (further arguments go to psql)
  reset    stop it, delete its data, start it empty
  install  only install PostgreSQL and pg_cron
Environment: KPI_DB_PORT, KPI_DB_NAME, KPI_DB_DIR, KPI_DB_FAST, KPI_DB_SETTINGS, KPI_PG_BINDIR (see the
top of scripts/db.sh)."
CLI_NAME=db
# shellcheck source=scripts/lib/cli.sh
. "$ROOT/scripts/lib/cli.sh"
cli_help "$@"
# psql takes its own options; every other command none.
[ "${1:-}" = psql ] || cli_refuse "" "${@:2}"

resolve_data_dir
resolve_port
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  url) url ;;
  psql)
    shift
    BINDIR=$(find_bindir) || die "PostgreSQL is not installed"
    exec "$BINDIR/psql" "$(url)" "$@"
    ;;
  reset) cmd_reset ;;
  install) say "PostgreSQL and pg_cron found in $(ensure_binaries)" ;;
  '') cli_fail "a command is required" ;;
  *) cli_fail "unknown command: $1" ;;
esac
