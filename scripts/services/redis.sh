#!/usr/bin/env bash
# Starts a private redis-server for Conveyor's tests and exports CONVEYOR_TEST_REDIS (plain) and CONVEYOR_TEST_REDIS_TLS
# (the same server through its TLS port: rediss://, trusting the test CA by ssl_ca_certs).
#   sourced by scripts/test.sh:   registers a stop hook in STOP_HOOKS
#   by hand:  source scripts/services/redis.sh          (exports the URL into your shell)
#             bash scripts/services/redis.sh start|stop  (prints the URL; 'stop' stops it)
#             bash scripts/services/redis.sh kill        (SIGKILL, as the OOM killer would: nothing is flushed)
#             bash scripts/services/redis.sh restart     (starts the same server again after 'stop' or 'kill', or
#                                                         stops and starts it: same data, same port, same URL)
# CONVEYOR_REDIS_DIR overrides the folder (a fault test runs a server of its own there).
# Installs Debian's redis-server package when it is missing (the system service is not used).
# The server runs daemonized on 127.0.0.1 on a free port, with its data, log and pidfile under
# .artifacts/redis, with the settings Conveyor needs (docs/redis.md): appendonly yes,
# appendfsync everysec, maxmemory-policy noeviction; and the one it recommends, auto-aof-rewrite-min-size 512mb.
_cv_redis_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_cv_redis_dir="${CONVEYOR_REDIS_DIR:-$_cv_redis_root/.artifacts/redis}"
# shellcheck source=lib/tls.sh
source "$_cv_redis_root/scripts/services/lib/tls.sh"

_cv_redis_stop() {
  local pid
  [ -f "$_cv_redis_dir/redis.pid" ] || return 0
  pid="$(cat "$_cv_redis_dir/redis.pid" 2>/dev/null)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$_cv_redis_dir/redis.pid"
  return 0
}

# Kills the server with SIGKILL. 'restart' starts it again on the same data.
_cv_redis_kill() {
  local pid
  [ -s "$_cv_redis_dir/redis.pid" ] || { echo "redis: no pid file in $_cv_redis_dir" >&2; return 1; }
  pid="$(cat "$_cv_redis_dir/redis.pid")"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$_cv_redis_dir/redis.pid"
  return 0
}

# Runs the server on the port in $_cv_redis_dir/port and the data in that folder, and waits until it answers.
_cv_redis_run() {
  local port tls_port
  port="$(cat "$_cv_redis_dir/port")"
  tls_port="$(cat "$_cv_redis_dir/tls-port")"
  # No client certificates: clients authenticate the server, and the server its clients by password (none here).
  redis-server --bind 127.0.0.1 --port "$port" --dir "$_cv_redis_dir" --daemonize yes \
    --tls-port "$tls_port" --tls-cert-file "$_cv_redis_dir/tls/server.pem" --tls-key-file "$_cv_redis_dir/tls/server.key" \
    --tls-ca-cert-file "$_cv_redis_dir/tls/ca.pem" --tls-auth-clients no \
    --pidfile "$_cv_redis_dir/redis.pid" --logfile "$_cv_redis_dir/redis.log" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save "" \
    --auto-aof-rewrite-min-size 512mb \
    || { echo "redis: redis-server did not start" >&2; return 1; }
  for _ in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 || { cat "$_cv_redis_dir/redis.log" >&2; return 1; }
  export CONVEYOR_TEST_REDIS="redis://127.0.0.1:$port"
  export CONVEYOR_TEST_REDIS_TLS_CA="$_cv_redis_dir/tls/ca.pem"
  export CONVEYOR_TEST_REDIS_TLS="rediss://127.0.0.1:$tls_port?ssl_ca_certs=$CONVEYOR_TEST_REDIS_TLS_CA"
  echo "redis: $CONVEYOR_TEST_REDIS, TLS: $CONVEYOR_TEST_REDIS_TLS (data in $_cv_redis_dir)" >&2
}

_cv_redis_start() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis: installing Debian's redis-server package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >&2; } \
      || { echo "redis: could not install redis-server" >&2; return 1; }
  fi
  _cv_redis_stop
  rm -rf "$_cv_redis_dir"
  mkdir -p "$_cv_redis_dir"
  local file
  for file in port tls-port; do
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' > "$_cv_redis_dir/$file" 2>/dev/null \
      || echo $((20000 + RANDOM % 20000)) > "$_cv_redis_dir/$file"
  done
  _cv_tls_make "$_cv_redis_dir/tls" || return 1
  _cv_redis_run
}

# The same server on the same data (the append-only file) and port: after 'stop' or 'kill', or stops it first.
_cv_redis_restart() {
  [ -f "$_cv_redis_dir/port" ] || { echo "redis: no server in $_cv_redis_dir to restart; run 'start' first" >&2; return 1; }
  _cv_redis_stop
  _cv_redis_run
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-start}" in
    # Only the plain URL, what the fault tests read ('source' this script for the TLS one).
    start) _cv_redis_start && echo "$CONVEYOR_TEST_REDIS" ;;
    stop) _cv_redis_stop ;;
    kill) _cv_redis_kill ;;
    restart) _cv_redis_restart && echo "$CONVEYOR_TEST_REDIS" ;;
    *) echo "usage: $0 start|stop|kill|restart" >&2; exit 2 ;;
  esac
else
  _cv_redis_start || return 1
  STOP_HOOKS+=(_cv_redis_stop)
fi
