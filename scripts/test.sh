#!/usr/bin/env bash
# Runs Conveyor's whole test suite from a fresh clone: checks formatting, builds with warnings as
# errors, starts the servers the tests need (scripts/services/*.sh, once per run), runs every test
# project and prints one total line from the test results:  N passed, N failed, N skipped
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RESULTS="$ROOT/.artifacts/test-results"
CONFIGURATION="${CONFIGURATION:-Release}"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

step() { printf '\n== %s ==\n' "$*"; }
fail() { echo "FAILED: $*" >&2; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

step "restore"
dotnet restore Conveyor.slnx || fail "restore"

step "format (dotnet format --verify-no-changes)"
dotnet format Conveyor.slnx --verify-no-changes --no-restore || fail "formatting: run 'dotnet format Conveyor.slnx'"

step "build ($CONFIGURATION, warnings as errors)"
dotnet build Conveyor.slnx -c "$CONFIGURATION" --no-restore || fail "build"

# The Prometheus alert rules in deploy/ must load: promtool from Debian's prometheus package (installed when missing;
# its service is not started). MetricsTests checks their metric names against a real server's /metrics.
step "deploy (promtool check rules)"
if ! command -v promtool >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2; } \
    || fail "installing prometheus (promtool)"
fi
promtool check rules deploy/prometheus/*.yml || fail "promtool check rules deploy/prometheus"

# Servers the backend tests need: each script installs its engine from Debian's packages if missing,
# starts it on loopback with a private data directory, and exports its URL. Stopped on exit.
STOP_HOOKS=()
clock_bound=""
# A run cut short (a signal, CI's time limit) ends the background test run and its processes before the servers stop.
cleanup() {
  if [ -n "$clock_bound" ] && kill -0 "$clock_bound" 2>/dev/null; then
    kill -- -"$clock_bound" 2>/dev/null || true
    wait "$clock_bound" 2>/dev/null || true
    cat "$RESULTS/clock-bound.log" 2>/dev/null || true
  fi
  for hook in "${STOP_HOOKS[@]}"; do $hook || true; done
}
trap cleanup EXIT
for service in scripts/services/*.sh; do
  [ -e "$service" ] || continue
  step "service $(basename "$service" .sh)"
  # shellcheck source=/dev/null
  source "$service" || fail "starting $service"
done

overall=0
# The server tests that spend minutes waiting on the clock (a rate of 10 a minute over 3 minutes; a schedule ticking for
# 3 minutes while its leader is killed) use little CPU. They run in a test process of their own (its own process group,
# for the cleanup above), beside the first projects below, rather than holding one of the two parallel slots of
# Conveyor.Server.Tests' own run for 13 minutes. Each test has a database, schema, key prefix or broker prefix of its
# own, so the two runs share no state on the servers.
SERVER_TESTS=tests/Conveyor.Server.Tests/Conveyor.Server.Tests.csproj
CLOCK_BOUND="FullyQualifiedName~.RateLimitPerMinute|FullyQualifiedName~ScheduleFailoverTests."
NOT_CLOCK_BOUND="FullyQualifiedName!~.RateLimitPerMinute&FullyQualifiedName!~ScheduleFailoverTests."
step "test Conveyor.Server.Tests (clock-bound, in the background)"
setsid dotnet test "$SERVER_TESTS" -c "$CONFIGURATION" --no-build --filter "$CLOCK_BOUND" \
  --logger "trx;LogFileName=Conveyor.Server.Tests.clock.trx" --results-directory "$RESULTS" \
  -- RunConfiguration.TreatNoTestsAsError=true > "$RESULTS/clock-bound.log" 2>&1 < /dev/null &
clock_bound=$!
for project in $(find tests -name '*.Tests.csproj' | sort); do
  name="$(basename "$project" .csproj)"
  step "test $name"
  filter=()
  [ "$project" = "$SERVER_TESTS" ] && filter=(--filter "$NOT_CLOCK_BOUND")
  dotnet test "$project" -c "$CONFIGURATION" --no-build ${filter[@]+"${filter[@]}"} \
    --logger "trx;LogFileName=$name.trx" --results-directory "$RESULTS" \
    -- RunConfiguration.TreatNoTestsAsError=true || overall=1
done
step "test Conveyor.Server.Tests (clock-bound, its output)"
wait "$clock_bound" || overall=1
clock_bound=""
cat "$RESULTS/clock-bound.log"
# A run that wrote no results is a failure the totals would not show.
clock_missing=0
[ -e "$RESULTS/Conveyor.Server.Tests.clock.trx" ] || { echo "the clock-bound run wrote no test results" >&2; clock_missing=1; overall=1; }

step "totals"
passed=0; failed=0; skipped=0; files=0
for trx in "$RESULTS"/*.trx; do
  [ -e "$trx" ] || continue
  files=$((files + 1))
  counters="$(grep -o '<Counters [^>]*>' "$trx" | head -1)"
  attr() { echo "$counters" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"; }
  p="$(attr passed)"; f="$(attr failed)"; e="$(attr error)"; t="$(attr timeout)"; a="$(attr aborted)"
  total="$(attr total)"; executed="$(attr executed)"
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${e:-0} + ${t:-0} + ${a:-0}))
  skipped=$((skipped + ${total:-0} - ${executed:-0}))
  echo "$(basename "$trx" .trx): passed ${p:-0}, failed ${f:-0}, not executed $(( ${total:-0} - ${executed:-0} ))"
done
failed=$((failed + clock_missing))
if [ "$files" -eq 0 ] || [ "$passed" -eq 0 ]; then
  echo "no test results found" >&2
  overall=1
fi
[ "$failed" -eq 0 ] || overall=1
echo "$passed passed, $failed failed, $skipped skipped"
exit $overall
