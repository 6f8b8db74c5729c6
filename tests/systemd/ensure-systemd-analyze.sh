#!/bin/sh
# Make sure systemd-analyze is on PATH so tests/systemd can verify the unit files.
# Debian/Ubuntu ship it in the package "systemd". Installs only when run as root; never
# touches anything if the tool is already present.
set -eu

if command -v systemd-analyze >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "systemd-analyze not found; install the Debian package 'systemd' (needs root)" >&2
    exit 2
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "systemd-analyze not found and apt-get unavailable; install package 'systemd' by hand" >&2
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
# Package lists in slim images are usually empty; install fails without an update first.
apt-get update
apt-get install -y --no-install-recommends systemd
command -v systemd-analyze >/dev/null 2>&1
