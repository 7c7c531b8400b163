#!/usr/bin/env bash
# The one command that measures Conveyor beside the strongest peer on each engine (docs/benchmarks.md#peers), from a
# clean clone: installs the peers' runtimes (install.sh: Debian's packages and npm ci, skipped when present), starts
# fresh PostgreSQL, Redis and RabbitMQ servers on loopback with the project's service scripts (stopped again at the
# end), publishes the harness in Release to .artifacts/bench, and runs it. The report goes to stdout and to
# .artifacts/bench-peers.md, the figures to .artifacts/bench-peers.json.
#   bash bench/peers/run.sh                  every engine, every peer workload, 3 runs of each case
#   bash bench/peers/run.sh --backend redis --system conveyor,bullmq --workload xdrain --runs 1
#                                            any arguments replace this script's default ones (below) entirely;
#                                            --json .artifacts/bench-peers.json is added after them either way
# The servers live under .artifacts/bench-services, apart from those of scripts/test.sh in the same checkout.
# Run it on a quiet machine: nothing else building, testing or measuring.
set -uo pipefail
cd "$(dirname "$0")/../.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

fail() { echo "bench/peers/run.sh: $*" >&2; exit 1; }

bash bench/peers/install.sh || fail "installing the peers' runtimes failed"

export CONVEYOR_POSTGRES_DIR="$PWD/.artifacts/bench-services/postgres" \
  CONVEYOR_REDIS_DIR="$PWD/.artifacts/bench-services/redis" \
  CONVEYOR_RABBITMQ_DIR="$PWD/.artifacts/bench-services/rabbitmq"
mkdir -p .artifacts/bench-services
STOP_HOOKS=()
cleanup() { for hook in "${STOP_HOOKS[@]}"; do $hook || true; done; }
trap cleanup EXIT
for service in postgres redis rabbitmq; do
  # shellcheck source=/dev/null
  source "scripts/services/$service.sh" || fail "starting $service (scripts/services/$service.sh)"
done

dotnet publish -c Release bench/Conveyor.Bench -o .artifacts/bench >&2 || fail "publishing bench/Conveyor.Bench"

args=(--backend all --system all,peers --workload enqueue,xdrain,xlatency --synchronous normal --analyze
  --tasks 20000 --drain-sizes 20000,100000 --runs 3)
if [ $# -gt 0 ]; then args=("$@"); fi
dotnet .artifacts/bench/Conveyor.Bench.dll "${args[@]}" --json .artifacts/bench-peers.json | tee .artifacts/bench-peers.md
exit "${PIPESTATUS[0]}"
