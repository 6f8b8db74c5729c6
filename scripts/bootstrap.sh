#!/usr/bin/env bash
# Create or reuse .venv and install Nengtan into it (editable) with the given extras.
# Usage: scripts/bootstrap.sh [extras]   e.g. scripts/bootstrap.sh test,broker
set -o errexit -o pipefail -o nounset
root=$(cd "$(dirname "$0")/.." && pwd)
extras=${1:-broker}
py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null; then
  echo "missing: python3 (>= 3.11). Debian: apt-get install python3 python3-venv" >&2; exit 1
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "missing: Python >= 3.11 (found $("$py" --version 2>&1))" >&2; exit 1
fi
if [ ! -x "$root/.venv/bin/python" ]; then
  "$py" -m venv "$root/.venv" || {
    echo "cannot create a virtual environment. Debian: apt-get install python3-venv" >&2; exit 1; }
fi
stamp="$root/.venv/.nengtan-installed-$extras"
# Reinstall only when the project's dependencies changed since the last install.
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[$extras]"
  touch "$stamp"
fi
