#!/usr/bin/env bash
# Usage: bench/supervisor_rss.sh [BUILD_DIR...]   (ROUNDS=5, IDLE=12)
# Idle memory of `conveyor worker --processes 2 --concurrency 16` on a fresh SQLite file (Linux): the supervisor's and
# its children's VmRSS after IDLE seconds, LOG_LEVEL=warning. The builds (default: this checkout's Release build,
# `dotnet build src/Conveyor.Server -c Release`) take turns, so that a before/after pair is measured in the same run;
# one line per start, then each build's median, minimum and maximum of the supervisor's figure.
set -euo pipefail
ROUNDS=${ROUNDS:-5}
IDLE=${IDLE:-12}
builds=("$@")
if [ ${#builds[@]} -eq 0 ]; then
  builds=("$(cd "$(dirname "$0")/.." && pwd)/src/Conveyor.Server/bin/Release/net10.0")
fi
results=$(mktemp)
for round in $(seq 1 "$ROUNDS"); do
  for build in "${builds[@]}"; do
    work=$(mktemp -d)
    (cd "$work" && exec env DATABASE_URL="sqlite:///$work/r.db" LOG_LEVEL=warning "$build/conveyor" worker --processes 2 --concurrency 16 >/dev/null 2>&1) &
    supervisor=$!
    sleep "$IDLE"
    rss=$(awk '/VmRSS/{print $2}' "/proc/$supervisor/status")
    children=$(for child in $(pgrep -P "$supervisor"); do awk '/VmRSS/{printf "%s ", $2}' "/proc/$child/status"; done)
    echo "$build round $round: supervisor $rss kB, children ${children}kB, load $(cut -d' ' -f1 /proc/loadavg)"
    echo "$build $rss" >> "$results"
    kill -TERM "$supervisor"
    wait "$supervisor" || true
    rm -rf "$work"
  done
done
for build in "${builds[@]}"; do
  grep -F "$build " "$results" | awk '{print $2}' | sort -n |
    awk -v build="$build" '{v[NR]=$1} END {printf "%s: supervisor median %d kB (%d-%d), %d starts\n", build, v[int((NR+1)/2)], v[1], v[NR], NR}'
done
rm -f "$results"
