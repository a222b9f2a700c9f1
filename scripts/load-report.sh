#!/usr/bin/env bash
# ota-cloud's performance matrix: durable check-ins/s and p50/p99 with 1k, 10k and 100k
# provisioned devices, on SQLite and on PostgreSQL, with the server pinned to 1 and to 2 cores;
# the bare UDP echo ceiling measured in the same run; chunk-serving MB/s. Writes the table into
# tools/ota-cloud/README.md between the `load-report` markers and prints it.
#
# Usage: bash scripts/load-report.sh [extra ota-cloud-load flags, e.g. --seconds 10]
#   OTA_LOAD_DEVICES=1000,10000 bash scripts/load-report.sh    # fewer fleet sizes
#   OTA_LOAD_SKIP_PG=1 bash scripts/load-report.sh             # SQLite only
#
# PostgreSQL: a throwaway cluster as in scripts/postgres-test.sh (Debian's binaries, a temp dir,
# unix socket only, trust auth, fsync on, run as `postgres` when root), removed on exit. Its
# server processes are not pinned: they share the machine's cores with ota-cloud and the client.
# Takes about 6 minutes on the 2-core VM (provisioning 100k devices on PostgreSQL is most of it).
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${OTA_LOAD_DEVICES:-1000,10000,100000}
readme=tools/ota-cloud/README.md
cargo build -q --release -p ota-cloud --bins
load=target/release/ota-cloud-load

out=$(mktemp -d /tmp/ota-load-report.XXXXXX)
chmod 755 "$out"
pg_stop() { :; }
cleanup() {
  pg_stop
  rm -rf "$out"
}
trap cleanup EXIT INT TERM

echo "load-report: SQLite, devices $devices" >&2
"$load" --devices "$devices" --json "$out/sqlite.json" "$@" >"$out/sqlite.md"
# The issue's target as a latency at a given load: wakes at Poisson times, 5,000 per second.
echo "load-report: SQLite, devices $devices, open loop at 5000 wakes/s" >&2
"$load" --devices "$devices" --rate 5000 --chunk-seconds 0 --json "$out/sqlite-open.json" "$@" \
  >"$out/sqlite-open.md"

if [[ -z "${OTA_LOAD_SKIP_PG:-}" ]]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
    echo "load-report: no PostgreSQL server binaries (apt-get install postgresql); SQLite only" >&2
  else
    as_pg=()
    if [[ $(id -u) -eq 0 ]]; then
      as_pg=(runuser -u postgres --)
      chown postgres:postgres "$out"
    fi
    data="$out/pg"
    pg_stop() {
      if [[ -f "$data/postmaster.pid" ]]; then
        "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
      fi
    }
    "${as_pg[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale \
      >"$out/initdb.log" 2>&1 || { cat "$out/initdb.log" >&2; exit 1; }
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$out/pg.log" -w -t 30 \
      -o "-c listen_addresses='' -c port=5432 -c unix_socket_directories=$out -c max_connections=400" \
      start >/dev/null || { cat "$out/pg.log" >&2; exit 1; }
    url="postgres://postgres@${out//\//%2F}:5432/postgres"
    echo "load-report: PostgreSQL ($("$bin/postgres" --version)), devices $devices" >&2
    "$load" --devices "$devices" --db "$url" --json "$out/pg.json" "$@" >"$out/pg.md"
  fi
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
{
  echo "<!-- load-report:begin (written by scripts/load-report.sh; do not edit by hand) -->"
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) vCPUs (${cpu:-unknown CPU}), Linux $(uname -r):"
  echo "\`bash scripts/load-report.sh $*\`."
  echo
  grep '^|' "$out/sqlite.md" || true
  grep '^|' "$out/sqlite-open.md" | tail -n +3
  if [[ -f "$out/pg.md" ]]; then
    grep '^|' "$out/pg.md" | tail -n +3
  fi
  echo
  cat "$out"/*.md | grep '^(' || true
  echo "<!-- load-report:end -->"
} >"$out/section.md"

# Replace the marked section of the README (or append it when the markers are missing).
python3 - "$readme" "$out/section.md" <<'EOF'
import re, sys
readme, section = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(readme).read()
pat = re.compile(r"<!-- load-report:begin.*?<!-- load-report:end -->", re.S)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(readme, "w").write(text)
EOF
cat "$out/section.md"
