#!/usr/bin/env bash
# Starts a private PostgreSQL server for Conveyor's tests and exports CONVEYOR_TEST_POSTGRES (plain: sslmode=disable)
# and CONVEYOR_TEST_POSTGRES_TLS (the same server through TLS: sslmode=verify-full, trusting the test CA by sslrootcert).
#   sourced by scripts/test.sh:   registers a stop hook in STOP_HOOKS
#   by hand:  source scripts/services/postgres.sh          (exports the URL into your shell)
#             bash scripts/services/postgres.sh start|stop  (prints the URL; 'stop' stops it)
# Installs Debian's postgresql package when initdb/pg_ctl are missing. The cluster lives under
# .artifacts/postgres (owned by the postgres user, as the server refuses to run as root), listens
# on 127.0.0.1 on a free port with fsync on, and keeps its unix socket in that folder. The same port takes TLS too
# (ssl=on): a private CA and a certificate for 127.0.0.1 are made in .artifacts/postgres/tls at each start
# (scripts/services/lib/tls.sh), and the CA's file is CONVEYOR_TEST_POSTGRES_TLS_CA.
#             bash scripts/services/postgres.sh restart     (stops and starts the same cluster: same data, same port)
#             bash scripts/services/postgres.sh crash       (immediate shutdown, as a power cut: 'restart' then runs crash recovery)
# CONVEYOR_POSTGRES_DIR overrides the folder (a fault test runs a cluster of its own there).
_cv_pg_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=lib/tls.sh
source "$_cv_pg_root/scripts/services/lib/tls.sh"
_cv_pg_dir="${CONVEYOR_POSTGRES_DIR:-$_cv_pg_root/.artifacts/postgres}"

_cv_pg_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

_cv_pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_cv_pg_stop() {
  local bin
  bin="$(_cv_pg_bin)" || return 0
  [ -f "$_cv_pg_dir/data/postmaster.pid" ] && _cv_pg_as "$bin/pg_ctl" -D "$_cv_pg_dir/data" stop -m fast >/dev/null 2>&1
  return 0
}

# An immediate shutdown: the server quits without a checkpoint, and replays its WAL at the next start.
_cv_pg_crash() {
  local bin
  bin="$(_cv_pg_bin)" || return 0
  [ -f "$_cv_pg_dir/data/postmaster.pid" ] && _cv_pg_as "$bin/pg_ctl" -D "$_cv_pg_dir/data" stop -m immediate >/dev/null 2>&1
  return 0
}

_cv_pg_run() {
  _cv_pg_as "$1/pg_ctl" -D "$_cv_pg_dir/data" -l "$_cv_pg_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$2 -c unix_socket_directories=$_cv_pg_dir -c fsync=on -c max_connections=300 -c ssl=on -c ssl_cert_file=$_cv_pg_dir/tls/server.pem -c ssl_key_file=$_cv_pg_dir/tls/server.key" \
    start >/dev/null || { cat "$_cv_pg_dir/server.log" >&2; return 1; }
  # Plain sessions say sslmode=disable: with ssl=on, Npgsql's default (prefer) would make every test session TLS.
  export CONVEYOR_TEST_POSTGRES="postgresql://conveyor:conveyor@127.0.0.1:$2/conveyor?sslmode=disable"
  export CONVEYOR_TEST_POSTGRES_TLS_CA="$_cv_pg_dir/tls/ca.pem"
  export CONVEYOR_TEST_POSTGRES_TLS="postgresql://conveyor:conveyor@127.0.0.1:$2/conveyor?sslmode=verify-full&sslrootcert=$CONVEYOR_TEST_POSTGRES_TLS_CA"
}

_cv_pg_restart() {
  local bin
  bin="$(_cv_pg_bin)" || return 1
  _cv_pg_stop
  _cv_pg_run "$bin" "$(cat "$_cv_pg_dir/port")"
}

_cv_pg_start() {
  local bin port
  if ! bin="$(_cv_pg_bin)"; then
    echo "postgres: installing Debian's postgresql package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2; } \
      || { echo "postgres: could not install postgresql" >&2; return 1; }
    bin="$(_cv_pg_bin)" || { echo "postgres: initdb not found after install" >&2; return 1; }
  fi
  _cv_pg_stop
  rm -rf "$_cv_pg_dir"
  mkdir -p "$_cv_pg_dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$_cv_pg_dir"; chmod 755 "$(dirname "$_cv_pg_dir")"; fi
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)))"
  echo conveyor > "$_cv_pg_dir/pw" 2>/dev/null || _cv_pg_as sh -c "echo conveyor > '$_cv_pg_dir/pw'"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$_cv_pg_dir/pw"
  _cv_pg_as "$bin/initdb" -D "$_cv_pg_dir/data" -U conveyor --pwfile="$_cv_pg_dir/pw" -A scram-sha-256 -E UTF8 --no-locale >"$_cv_pg_dir/initdb.log" 2>&1 \
    || { cat "$_cv_pg_dir/initdb.log" >&2; return 1; }
  echo "$port" > "$_cv_pg_dir/port"
  _cv_tls_make "$_cv_pg_dir/tls" || return 1
  # The server refuses a key readable by others or owned by another user.
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$_cv_pg_dir/tls"
  _cv_pg_run "$bin" "$port" || return 1
  PGPASSWORD=conveyor "$bin/psql" -h 127.0.0.1 -p "$port" -U conveyor -d postgres -qc "CREATE DATABASE conveyor" >/dev/null \
    || { echo "postgres: could not create the database" >&2; return 1; }
  echo "postgres: $CONVEYOR_TEST_POSTGRES, TLS: $CONVEYOR_TEST_POSTGRES_TLS (data in $_cv_pg_dir)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-start}" in
    start) _cv_pg_start && echo "export CONVEYOR_TEST_POSTGRES=$CONVEYOR_TEST_POSTGRES" \
      && echo "export CONVEYOR_TEST_POSTGRES_TLS='$CONVEYOR_TEST_POSTGRES_TLS'" \
      && echo "export CONVEYOR_TEST_POSTGRES_TLS_CA=$CONVEYOR_TEST_POSTGRES_TLS_CA" ;;
    stop) _cv_pg_stop ;;
    restart) _cv_pg_restart ;;
    crash) _cv_pg_crash ;;
    *) echo "usage: $0 [start|stop|restart|crash]" >&2; exit 2 ;;
  esac
else
  _cv_pg_start || return 1
  if declare -p STOP_HOOKS >/dev/null 2>&1; then STOP_HOOKS+=(_cv_pg_stop); fi
fi
