#!/usr/bin/env bash
# Runs ota-cloud's PostgreSQL tests (tools/ota-cloud/tests/postgres.rs) against a throwaway
# cluster: initdb in a temp dir, a server listening only on a unix socket in that dir (no TCP
# port, so nothing to collide with a system cluster or another run), trust auth, stopped and
# removed on exit whatever happens. Extra arguments go to `cargo test` (a test name filter).
#
# Needs Debian's `postgresql` package (binaries in /usr/lib/postgresql/<version>/bin): installed
# here when missing and running as root (`.ci/run` installs it too). PostgreSQL refuses to run
# as root: as root the server runs as the `postgres` user (runuser); as any other user it runs
# as that user.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ (-z "$bin" || ! -x "$bin/initdb") && $(id -u) -eq 0 ]]; then
  # A fresh machine: this script works on its own, as the README's test command must.
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
  echo "postgres-test: no PostgreSQL server binaries (apt-get install postgresql)" >&2
  exit 1
fi

as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  if ! id -u postgres >/dev/null 2>&1; then
    echo "postgres-test: running as root but there is no postgres user (the postgresql package creates it)" >&2
    exit 1
  fi
  as_pg=(runuser -u postgres --)
fi

dir=$(mktemp -d /tmp/ota-pg.XXXXXX)
chmod 755 "$dir"
[[ ${#as_pg[@]} -gt 0 ]] && chown postgres:postgres "$dir"
data="$dir/data"

cleanup() {
  if [[ -f "$data/postmaster.pid" ]]; then
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"${as_pg[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
# fsync stays on (the default): the tests check acknowledged-after-commit behaviour, and the
# store sets synchronous_commit itself.
"${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 30 \
  -o "-c listen_addresses='' -c port=5432 -c unix_socket_directories=$dir -c max_connections=400" \
  start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

# The socket directory as the URL's host, percent-encoded (tokio-postgres: a host starting
# with / is a unix socket directory).
export OTA_CLOUD_PG_URL="postgres://postgres@${dir//\//%2F}:5432/postgres"
echo "postgres-test: throwaway cluster ($("$bin/postgres" --version)) at $OTA_CLOUD_PG_URL"
# admin and metrics: the admin API and /metrics over PgStore (each also runs on SQLite).
cargo test -p ota-cloud --test postgres --test admin --test metrics "$@"
