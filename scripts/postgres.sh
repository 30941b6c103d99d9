#!/usr/bin/env bash
# A throwaway PostgreSQL server for revstore-postgres's tests.
#
#   scripts/postgres.sh start        starts one; prints `export` lines for
#                                    eval: REVSTORE_POSTGRES_URL (the test
#                                    database), REVSTORE_POSTGRES_CTL (pg_ctl
#                                    for this server, to restart it) and
#                                    REVSTORE_POSTGRES_DIR (for `stop`)
#   scripts/postgres.sh stop DIR     stops it and deletes its files
#   scripts/postgres.sh with CMD...  runs CMD with a server started for it
#
# Debian's `postgresql` package is installed (apt-get, as root) when no
# server binaries are found. The server runs as the `postgres` user when
# started by root (initdb refuses root), keeps its data in a fresh temporary
# folder, listens on a unix socket in that folder and on 127.0.0.1 at a free
# port, trusts local connections, and keeps fsync on: the tests check
# durability settings, not a server tuned to lie about them.
set -euo pipefail

die() {
  echo "scripts/postgres.sh: $*" >&2
  exit 1
}

# The newest server's bin folder (Debian keeps one per major version).
find_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir)
    if [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  fi
  return 1
}

install_server() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "no PostgreSQL server binaries (initdb) found, and they can only be installed by root with apt-get: install Debian's postgresql package"
  fi
  echo "scripts/postgres.sh: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # The package may try to start its own cluster; a failure to do so (no
  # init system in a container) does not concern the throwaway server.
  apt-get install -y -qq postgresql >&2 || apt-get install -y -qq postgresql-common postgresql >&2
}

# Runs a command as the server's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local bindir dir port attempt
  bindir=$(find_bindir) || { install_server; bindir=$(find_bindir) || die "installing postgresql gave no initdb"; }
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    die "running as root, but there is no postgres user to run the server as (Debian's postgresql package creates it)"
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/revstore-pg.XXXXXX")
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
  fi
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; die "initdb failed"; }
  # The settings live in the data folder, so `pg_ctl restart` keeps them.
  as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 32MB
fsync = on
synchronous_commit = on
log_min_messages = warning
EOF
  for attempt in $(seq 1 20); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      continue # taken
    fi
    as_owner sed -i "/^port = /d" "$dir/data/postgresql.conf"
    echo "port = $port" | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
      as_owner "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE revstore_test" >/dev/null \
        || { stop_dir "$dir"; die "cannot create the test database"; }
      local ctl="$bindir/pg_ctl -D $dir/data -l $dir/server.log -w -t 60"
      if [ "$(id -u)" = 0 ]; then
        ctl="runuser -u postgres -- $ctl"
      fi
      echo "export REVSTORE_POSTGRES_URL='postgres://postgres@127.0.0.1:$port/revstore_test'"
      echo "export REVSTORE_POSTGRES_CTL='$ctl'"
      echo "export REVSTORE_POSTGRES_DIR='$dir'"
      echo "scripts/postgres.sh: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port and $dir (data and log in $dir)" >&2
      return 0
    fi
  done
  tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
  rm -rf "$dir"
  die "the server did not start (see the log above)"
}

stop_dir() {
  local dir=$1 bindir
  [ -d "$dir/data" ] || { rm -rf "$dir"; return 0; }
  bindir=$(find_bindir) || true
  if [ -n "${bindir:-}" ]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start)
    start
    ;;
  stop)
    [ -n "${2:-}" ] || die "usage: scripts/postgres.sh stop DIR"
    case "$2" in
      */revstore-pg.*) stop_dir "$2" ;;
      *) die "$2 is not a folder this script made" ;;
    esac
    ;;
  with)
    shift
    [ $# -gt 0 ] || die "usage: scripts/postgres.sh with CMD..."
    env_lines=$(start)
    eval "$env_lines"
    trap 'stop_dir "$REVSTORE_POSTGRES_DIR"' EXIT
    "$@"
    ;;
  *)
    die "usage: scripts/postgres.sh start | stop DIR | with CMD..."
    ;;
esac
