#!/usr/bin/env bash
# Starts a private RabbitMQ node for Conveyor's tests and exports CONVEYOR_TEST_AMQP (plain) and CONVEYOR_TEST_AMQP_TLS
# (the same node through its TLS listener: amqps://, trusting the test CA by cacertfile).
#   sourced by scripts/test.sh:   registers a stop hook in STOP_HOOKS
#   by hand:  source scripts/services/rabbitmq.sh          (exports the URL into your shell)
#             bash scripts/services/rabbitmq.sh start|stop  (prints the URL; 'stop' stops it)
#             bash scripts/services/rabbitmq.sh restart     (starts the same node again after 'stop', or stops and
#                                                            starts it: same data, same ports, same URL)
#             bash scripts/services/rabbitmq.sh queues      (each queue: name, messages (ready + unacked), consumers)
#             bash scripts/services/rabbitmq.sh delete-queue NAME  (deletes a queue as an operator would, even an
#                                                            exclusive one, which no other connection may delete)
# CONVEYOR_RABBITMQ_DIR overrides the folder (a fault test runs a node of its own there).
# Installs Debian's rabbitmq-server package when it is missing (the system service is not used).
# The node has a name of its own, listens on 127.0.0.1 on a free port (and a free distribution
# port), keeps its database and logs under .artifacts/rabbitmq, and runs no plugins. The default
# guest/guest user works because it connects over loopback. Erlang's port mapper (epmd, shared by
# every node on the machine) is started by the node if needed and left running. A second listener, on a free port of
# its own, takes TLS (Erlang's ssl application, a dependency of Debian's package): a private CA and a certificate for
# 127.0.0.1 are made in .artifacts/rabbitmq/tls at each start (scripts/services/lib/tls.sh), named in the node's
# rabbitmq.conf there, and the CA's file is CONVEYOR_TEST_AMQP_TLS_CA.
_cv_rabbit_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_cv_rabbit_dir="${CONVEYOR_RABBITMQ_DIR:-$_cv_rabbit_root/.artifacts/rabbitmq}"
# Debian's /usr/sbin wrappers switch to the rabbitmq user; the scripts behind them run the node as
# the caller, with the caller's Erlang cookie, so the node's files stay under .artifacts.
_cv_rabbit_bin=/usr/lib/rabbitmq/bin
# shellcheck source=lib/tls.sh
source "$_cv_rabbit_root/scripts/services/lib/tls.sh"

_cv_rabbit_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000))
}

_cv_rabbit_stop() {
  local node
  [ -f "$_cv_rabbit_dir/node" ] || return 0
  node="$(cat "$_cv_rabbit_dir/node" 2>/dev/null)"
  [ -n "$node" ] || return 0
  # With the pid file, 'stop' returns only once the Erlang VM has exited.
  if [ -s "$_cv_rabbit_dir/rabbitmq.pid" ]; then
    "$_cv_rabbit_bin/rabbitmqctl" -q -n "$node" stop "$_cv_rabbit_dir/rabbitmq.pid" >/dev/null 2>&1 || true
  else
    "$_cv_rabbit_bin/rabbitmqctl" -q -n "$node" stop >/dev/null 2>&1 || true
  fi
  rm -f "$_cv_rabbit_dir/node"
  return 0
}

# Kills the node's Erlang VM with SIGKILL, as the OOM killer would: nothing is flushed or closed. 'restart' starts
# the same node again on the same data.
_cv_rabbit_kill() {
  local pid
  [ -s "$_cv_rabbit_dir/rabbitmq.pid" ] || { echo "rabbitmq: no pid file in $_cv_rabbit_dir" >&2; return 1; }
  pid="$(cat "$_cv_rabbit_dir/rabbitmq.pid")"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$_cv_rabbit_dir/node" "$_cv_rabbit_dir/rabbitmq.pid"
  return 0
}

# Runs the node named in $_cv_rabbit_dir/{name,port,dist} on the data in that folder, and waits until it answers.
_cv_rabbit_run() {
  local node port dist tls_port
  node="$(cat "$_cv_rabbit_dir/name")"; port="$(cat "$_cv_rabbit_dir/port")"; dist="$(cat "$_cv_rabbit_dir/dist")"
  tls_port="$(cat "$_cv_rabbit_dir/tls-port")"
  echo "$node" > "$_cv_rabbit_dir/node"
  rm -f "$_cv_rabbit_dir/rabbitmq.pid"
  RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port" \
    RABBITMQ_DIST_PORT="$dist" RABBITMQ_MNESIA_BASE="$_cv_rabbit_dir/mnesia" \
    RABBITMQ_LOG_BASE="$_cv_rabbit_dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$_cv_rabbit_dir/enabled_plugins" \
    RABBITMQ_PID_FILE="$_cv_rabbit_dir/rabbitmq.pid" RABBITMQ_CONFIG_FILE="$_cv_rabbit_dir/rabbitmq.conf" \
    "$_cv_rabbit_bin/rabbitmq-server" -detached >"$_cv_rabbit_dir/start.log" 2>&1 \
    || { cat "$_cv_rabbit_dir/start.log" >&2; echo "rabbitmq: rabbitmq-server did not start" >&2; return 1; }
  # await_startup fails at once while the Erlang VM is not yet reachable, so ask again until it answers.
  local up=0
  for _ in $(seq 1 90); do
    if "$_cv_rabbit_bin/rabbitmqctl" -q -n "$node" await_startup --timeout 60 >/dev/null 2>&1; then up=1; break; fi
    sleep 1
  done
  if [ "$up" -ne 1 ]; then
    cat "$_cv_rabbit_dir/start.log" "$_cv_rabbit_dir"/log/*.log >&2 2>/dev/null
    echo "rabbitmq: node $node did not start" >&2
    _cv_rabbit_stop
    return 1
  fi
  export CONVEYOR_TEST_AMQP="amqp://guest:guest@127.0.0.1:$port/"
  export CONVEYOR_TEST_AMQP_TLS_CA="$_cv_rabbit_dir/tls/ca.pem"
  export CONVEYOR_TEST_AMQP_TLS="amqps://guest:guest@127.0.0.1:$tls_port/?cacertfile=$CONVEYOR_TEST_AMQP_TLS_CA"
  echo "rabbitmq: $CONVEYOR_TEST_AMQP, TLS: $CONVEYOR_TEST_AMQP_TLS (node $node, data in $_cv_rabbit_dir)" >&2
}

_cv_rabbit_start() {
  local port dist
  if [ ! -x "$_cv_rabbit_bin/rabbitmq-server" ]; then
    echo "rabbitmq: installing Debian's rabbitmq-server package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >&2; } \
      || { echo "rabbitmq: could not install rabbitmq-server" >&2; return 1; }
  fi
  _cv_rabbit_stop
  rm -rf "$_cv_rabbit_dir"
  mkdir -p "$_cv_rabbit_dir/mnesia" "$_cv_rabbit_dir/log"
  port="$(_cv_rabbit_free_port)"
  dist="$(_cv_rabbit_free_port)"
  echo "$port" > "$_cv_rabbit_dir/port"
  echo "$dist" > "$_cv_rabbit_dir/dist"
  _cv_rabbit_free_port > "$_cv_rabbit_dir/tls-port"
  _cv_tls_make "$_cv_rabbit_dir/tls" || return 1
  # The TLS listener beside the plain one (RABBITMQ_NODE_PORT); clients present no certificate.
  cat > "$_cv_rabbit_dir/rabbitmq.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$(cat "$_cv_rabbit_dir/tls-port")
ssl_options.cacertfile = $_cv_rabbit_dir/tls/ca.pem
ssl_options.certfile = $_cv_rabbit_dir/tls/server.pem
ssl_options.keyfile = $_cv_rabbit_dir/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
  echo "conveyor_$$_$port@localhost" > "$_cv_rabbit_dir/name"
  # An empty enabled-plugins file: no management plugin, faster start.
  : > "$_cv_rabbit_dir/enabled_plugins"
  _cv_rabbit_run
}

# The same node on the same data (durable queues and persistent messages survive): after 'stop', or stops it first.
_cv_rabbit_restart() {
  [ -f "$_cv_rabbit_dir/name" ] || { echo "rabbitmq: no node in $_cv_rabbit_dir to restart; run 'start' first" >&2; return 1; }
  _cv_rabbit_stop
  _cv_rabbit_run
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-start}" in
    start) _cv_rabbit_start && echo "$CONVEYOR_TEST_AMQP" ;;
    stop) _cv_rabbit_stop ;;
    kill) _cv_rabbit_kill ;;
    restart) _cv_rabbit_restart && echo "$CONVEYOR_TEST_AMQP" ;;
    queues) [ -f "$_cv_rabbit_dir/node" ] || { echo "rabbitmq: no node running in $_cv_rabbit_dir" >&2; exit 1; }
      "$_cv_rabbit_bin/rabbitmqctl" -q -n "$(cat "$_cv_rabbit_dir/node")" list_queues --no-table-headers name messages consumers ;;
    delete-queue) [ -f "$_cv_rabbit_dir/node" ] || { echo "rabbitmq: no node running in $_cv_rabbit_dir" >&2; exit 1; }
      [ -n "${2:-}" ] || { echo "usage: $0 delete-queue NAME" >&2; exit 2; }
      "$_cv_rabbit_bin/rabbitmqctl" -q -n "$(cat "$_cv_rabbit_dir/node")" delete_queue "$2" ;;
    *) echo "usage: $0 start|stop|kill|restart|queues|delete-queue NAME" >&2; exit 2 ;;
  esac
else
  _cv_rabbit_start || return 1
  STOP_HOOKS+=(_cv_rabbit_stop)
fi
