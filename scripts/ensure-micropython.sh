#!/bin/sh
# Installs the pinned MicroPython WebAssembly interpreter into tests/micro/node_modules,
# so micro/ code is tested by the real MicroPython dialect, not just CPython.
# Idempotent: does nothing if the pinned version is already there.
set -eu

PKG="@micropython/micropython-webassembly-pyscript"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="$ROOT/tests/micro"
# The pin lives in tests/micro/package.json only, so there is one place to bump it.
VERSION="$(sed -n 's|.*"@micropython/micropython-webassembly-pyscript": *"\([^"]*\)".*|\1|p' "$PREFIX/package.json")"
[ -n "$VERSION" ] || { echo "ensure-micropython: no $PKG pin in $PREFIX/package.json" >&2; exit 1; }
INSTALLED="$PREFIX/node_modules/$PKG/package.json"

if [ -f "$INSTALLED" ] && grep -q "\"version\": \"$VERSION\"" "$INSTALLED"; then
    echo "ensure-micropython: $PKG@$VERSION already installed"
    exit 0
fi

missing=""
command -v node >/dev/null 2>&1 || missing="$missing node (Debian package: nodejs)"
command -v npm >/dev/null 2>&1 || missing="$missing npm (Debian package: npm)"
if [ -n "$missing" ]; then
    echo "ensure-micropython: cannot install $PKG@$VERSION, missing:$missing" >&2
    echo "ensure-micropython: e.g. sudo apt-get install nodejs npm" >&2
    exit 1
fi

# --no-save: npm would otherwise rewrite the exact pin as ^x.y.z and write a lockfile.
npm install --prefix "$PREFIX" --no-audit --no-fund --no-save "$PKG@$VERSION"
echo "ensure-micropython: installed $PKG@$VERSION into $PREFIX/node_modules"
