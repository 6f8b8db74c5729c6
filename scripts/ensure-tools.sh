#!/usr/bin/env bash
# Install the system tools the test suite drives for real: Mosquitto, systemd-analyze, udevadm,
# Node.js with npm (for the real MicroPython interpreter). As root this uses apt-get; otherwise it
# prints exactly which Debian packages are missing and fails when CI=true.
set -o errexit -o pipefail -o nounset
need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's mosquitto package starts a broker on :1883; tests start their own on free ports.
  exit 0
fi
echo "missing Debian packages: ${need[*]} (install with: sudo apt-get install ${need[*]})" >&2
if [ "${CI:-}" = "true" ]; then exit 1; fi
