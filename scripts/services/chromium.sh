#!/usr/bin/env bash
# Makes Debian's Chromium available to the dashboard's browser tests (tests/Conveyor.Dashboard.Tests, which drive it
# with Playwright; Playwright's own browser download is never used) and exports CONVEYOR_CHROMIUM with its path.
#   sourced by scripts/test.sh (nothing to stop), or by hand:  bash scripts/services/chromium.sh  (prints the path)
# Installs the chromium package when it is missing.
_cv_chromium_start() {
  local path
  path="$(command -v chromium || true)"
  if [ -z "$path" ]; then
    echo "chromium: installing Debian's chromium package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >&2; } \
      || { echo "chromium: could not install chromium" >&2; return 1; }
    path="$(command -v chromium)" || { echo "chromium: installed, but not on PATH" >&2; return 1; }
  fi
  export CONVEYOR_CHROMIUM="$path"
  echo "chromium: $CONVEYOR_CHROMIUM ($("$path" --version 2>/dev/null | head -1))" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _cv_chromium_start && echo "$CONVEYOR_CHROMIUM"
else
  _cv_chromium_start || return 1
fi
