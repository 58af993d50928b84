#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on a loopback port for the test suite and prints its URL.
# PostgreSQL refuses to run as root, so the cluster belongs to the `postgres` user when we are root.
# Usage: .ci/postgres.sh DIR [PORT]   (stop it with: pg_ctl -D DIR/data stop)
set -euo pipefail
dir=$(realpath -m "${1:?usage: postgres.sh DIR [PORT]}")
port=${2:-55432}
bindir=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)")
run() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}
mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/sh postgres
  chown postgres "$dir"
fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
  run "$bindir/initdb" -D "$dir/data" -U kiln --auth=trust >"$dir/initdb.log" 2>&1
fi
if ! run "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c max_connections=300" start >/dev/null
fi
echo "postgresql://kiln@127.0.0.1:$port/postgres"
