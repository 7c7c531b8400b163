#!/usr/bin/env bash
# Installs the runtimes of the bench's peers (docs/benchmarks.md#peers), once per machine; safe to run again.
#   Debian: ruby-sidekiq (Sidekiq 6.4), python3-celery (Celery 5.2) and python3-redis, nodejs and npm when missing.
#   npm: the exact versions of bench/peers/graphile and bench/peers/bullmq, from their package-lock.json (npm ci).
# MassTransit is a NuGet package of the bench itself (restored with the solution): nothing to install here.
# Nothing of this is needed by the tests or by .ci/run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

packages=(ruby-sidekiq python3-celery python3-redis)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "apt-get install ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

for folder in graphile bullmq; do
  echo "npm ci in bench/peers/$folder" >&2
  (cd "$here/$folder" && npm ci --no-audit --no-fund --loglevel=error)
done

# Graphile Worker 0.17 asks for Node >= 14 (0.18 needs 22.18, newer than Debian's and this machine's Node 20).
echo "node $(node --version), ruby $(ruby -e 'print RUBY_VERSION'), sidekiq $(ruby -e 'require "sidekiq"; print Sidekiq::VERSION'), celery $(/usr/bin/python3 -c 'import celery; print(celery.__version__)')" >&2
echo "peers installed" >&2
