#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when they are missing.
# Usage: scripts/system-deps.sh PKG...   (`make install-test` passes $(SYSTEM_DEPS) from the Makefile)
# Runs as root on CI and fresh machines; elsewhere it says what to install and stops.
# When every package is already installed it only asks dpkg and exits 0 (well under a second).
set -euo pipefail

installed() {
  # `dpkg -s` also succeeds for a removed package whose config files remain, so read the status itself.
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

need=()
for pkg in "$@"; do
  case "$pkg" in
    chromium) command -v chromium >/dev/null 2>&1 || need+=(chromium) ;;
    *) installed "$pkg" || need+=("$pkg") ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing Debian packages: ${need[*]}" >&2
  echo "system-deps: not root, so not installing them; run: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi

echo "system-deps: installing ${need[*]}"
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
# Only refresh the package lists when something has to be installed.
apt-get update -qq
# No recommends: they add ~100 packages to chromium (desktop bits) and prometheus-node-exporter,
# smartmontools and friends to prometheus, none of which the tests use.
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/system-deps-apt.log 2>&1; then
  tail -n 30 /tmp/system-deps-apt.log >&2
  echo "system-deps: apt-get install failed (full log: /tmp/system-deps-apt.log)" >&2
  exit 1
fi

missing=()
for pkg in "${need[@]}"; do installed "$pkg" || missing+=("$pkg"); done
if [ ${#missing[@]} -ne 0 ]; then
  echo "system-deps: still not installed after apt-get: ${missing[*]}" >&2
  exit 1
fi
echo "system-deps: installed ${#need[@]} package(s) in $(( $(date +%s) - start ))s"
