#!/usr/bin/env bash
# Makes docs/dashboard-overview.png, the README's screenshot: starts the server on a fresh SQLite file under
# .artifacts/dashboard-screenshot on a free loopback port, gives it a few minutes of mixed work over the HTTP API
# (tasks on five queues, some slow, some failing for good, one queue paused; schedules; workflows), then has Debian's headless
# Chromium shoot the overview (through playwright-core from npm). Stops the server it started. Usage: scripts/dashboard-screenshot.sh [seconds of work]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-90}"
dir=.artifacts/dashboard-screenshot
rm -rf "$dir" && mkdir -p "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
dotnet build src/Conveyor.Server -c Release -v quiet -nologo > "$dir/build.log" 2>&1 || { cat "$dir/build.log" >&2; exit 1; }
DATABASE_URL="sqlite:///$PWD/$dir/conveyor.db" HOST=127.0.0.1 PORT="$port" LOG_LEVEL=Warning \
  CONVEYOR_WORKER__QUEUES=default,emails,reports,webhooks,archive CONVEYOR_HTTP__ALLOWED_HOSTS=127.0.0.1 \
  CONVEYOR_HTTP__ALLOWED_NETWORKS=127.0.0.0/8 CONVEYOR_WORKER__SHUTDOWN_TIMEOUT=00:00:03 \
  dotnet src/Conveyor.Server/bin/Release/net10.0/Conveyor.Server.dll > "$dir/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -fs "$url/health/ready" > /dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
curl -fs "$url/health/ready" > /dev/null || { echo "the server did not become ready:" >&2; cat "$dir/server.log" >&2; exit 1; }

post() { curl -sS --fail-with-body -X POST "$url$1" -H 'content-type: application/json' -d "$2" -o "$dir/last-answer.json" || { cat "$dir/last-answer.json" >&2; return 1; }; }
task() { printf '{"task":"%s","queue":"%s","args":%s,"maxAttempts":%s}' "$1" "$2" "$3" "${4:-3}"; }

post /api/v1/schedules '{"name":"nightly-archive","cron":"0 2 * * *","task":"conveyor.noop","queue":"archive"}'
post /api/v1/schedules '{"name":"digest-emails","every":"PT15S","task":"conveyor.sleep","args":{"ms":40},"queue":"emails"}'
# A paused queue with a backlog (paused before its first task: allowed).
post /api/v1/queues/archive/pause '{}'
for _ in 1 2 3; do post /api/v1/tasks/batch "{\"tasks\":[$(task conveyor.noop archive '{}'),$(task conveyor.noop archive '{}'),$(task conveyor.noop archive '{}')]}"; done
end=$((SECONDS + seconds))
round=0
while [ "$SECONDS" -lt "$end" ]; do
  round=$((round + 1))
  batch=()
  for _ in $(seq 1 $((2 + RANDOM % 6))); do batch+=("$(task conveyor.sleep default '{"ms":20}')"); done
  for _ in $(seq 1 $((1 + RANDOM % 5))); do batch+=("$(task conveyor.sleep emails '{"ms":60}')"); done
  [ $((round % 3)) -eq 0 ] && batch+=("$(task conveyor.sleep reports '{"ms":900}')")
  # A webhook whose endpoint refuses: dead after its one attempt.
  [ $((round % 4)) -eq 0 ] && batch+=("$(task http.request webhooks '{"url":"http://127.0.0.1:1/hook"}' 1)")
  post /api/v1/tasks/batch "{\"tasks\":[$(IFS=,; echo "${batch[*]}")]}"
  [ $((round % 20)) -eq 0 ] && post /api/v1/workflows \
    '{"chord":{"group":[{"task":"conveyor.sleep","queue":"reports","args":{"ms":300}},{"task":"conveyor.sleep","queue":"reports","args":{"ms":500}}],"callback":{"task":"conveyor.noop","queue":"reports"}}}'
  sleep 1
done

# Chromium's own --screenshot shoots at the load event, before the page has read its data; Playwright (playwright-core
# from npm, driving Debian's Chromium) waits until the overview shows the workers and the failures.
npm install --silent --no-save --no-audit --no-fund --prefix "$dir/node" playwright-core@1.65.2 > "$dir/npm.log" 2>&1
URL="$url/" OUT="$PWD/docs/dashboard-overview.png" NODE_PATH="$dir/node/node_modules" node -e '
const { chromium } = require("playwright-core");
(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(process.env.URL);
  await page.locator("[data-card=workers] .value").filter({ hasText: /^[1-9]/ }).waitFor();
  await page.locator(".failures [data-task-id]").first().waitFor();
  await page.locator("[data-queue=webhooks]").waitFor();
  await page.screenshot({ path: process.env.OUT });
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });'
echo "docs/dashboard-overview.png from $url after ${seconds} s of work"
