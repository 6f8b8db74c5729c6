#!/usr/bin/env bash
# Install the system tools the test suite drives for real: Mosquitto, systemd-analyze, udevadm,
# Node.js with npm (for the real MicroPython interpreter), and a PostgreSQL server for the
# receiver's store tests. As root this uses apt-get (and starts PostgreSQL); otherwise it prints
# exactly what is missing and fails when CI=true.
set -o errexit -o pipefail -o nounset

missing() {
  echo "$1" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
}

as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
  echo "installing: $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if as_root_with_apt; then
    # Debian's mosquitto package starts a broker on :1883; tests start their own on free ports.
    apt_install "${need[@]}"
  else
    missing "missing Debian packages: ${need[*]} (install with: sudo apt-get install ${need[*]})"
  fi
fi

# PostgreSQL: the receiver tests run every store test on it too (tests/integration/receiver/
# pg_helpers.py). The default URL expects trust auth for postgres on 127.0.0.1, as a fresh
# install below sets up; point NENGTAN_TEST_PG_URL elsewhere to use another server.
default_pg_url=postgresql://postgres@127.0.0.1:5432/test
pg_url=${NENGTAN_TEST_PG_URL:-$default_pg_url}
pg_answers() { command -v psql >/dev/null && psql "$pg_url" -Atqc 'SELECT 1' >/dev/null 2>&1; }

if pg_answers; then exit 0; fi
if ! as_root_with_apt; then
  if ! command -v psql >/dev/null; then
    missing "no PostgreSQL client to check $pg_url (install with: sudo apt-get install postgresql)"
  else
    missing "no PostgreSQL answers at $pg_url: $(psql "$pg_url" -Atqc 'SELECT 1' 2>&1 | head -1)
  (install and start one with: sudo apt-get install postgresql && sudo pg_ctlcluster <version> main start,
   or set NENGTAN_TEST_PG_URL to a database you can use)"
  fi
  exit 0
fi
fresh=false
if ! command -v pg_ctlcluster >/dev/null; then
  apt_install postgresql
  fresh=true
fi
# Start every cluster that is down (a container has no systemd to do it at boot).
pg_lsclusters --no-header | while read -r version cluster port status _; do
  if [ "$status" != online ]; then
    echo "starting PostgreSQL $version/$cluster on port $port" >&2
    pg_ctlcluster "$version" "$cluster" start
  fi
done
if [ "$pg_url" = "$default_pg_url" ]; then
  version=$(pg_lsclusters --no-header | awk '$2 == "main" { print $1; exit }')
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if $fresh && [ -f "$hba" ] && ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    # A throwaway test server: local TCP connections as postgres need no password.
    sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster "$version" main reload
  fi
  if ! su postgres -c "psql -Atqc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" | grep -q 1; then
    su postgres -c "createdb test"
  fi
fi
for _ in $(seq 1 20); do
  if pg_answers; then exit 0; fi
  sleep 0.5
done
missing "PostgreSQL still does not answer at $pg_url: $(psql "$pg_url" -Atqc 'SELECT 1' 2>&1 | head -1)"
