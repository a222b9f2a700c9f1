#!/usr/bin/env bash
# ota-cloud console figures (issue 13): the fleet page's weight (HTML + CSS + JS bytes) with
# 1,000 devices, its server time (store read + render) against the same data through the JSON
# API (GET /api/v1/devices) and the ratio, one run after a warm-up; plus one live refresh.
# Runs tools/ota-cloud/examples/console_report.rs in release mode (SQLite in a temp dir, the
# admin router in-process, no socket), writes the figures into tools/ota-cloud/README.md
# between the `console-report` markers and prints them.
#
# Usage: bash scripts/console-report.sh [devices]    (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${1:-1000}
readme=tools/ota-cloud/README.md
out=$(mktemp -d /tmp/ota-console-report.XXXXXX)
trap 'rm -rf "$out"' EXIT INT TERM

cargo run -q --release -p ota-cloud --example console_report -- "$devices" >"$out/figures.txt"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
{
  echo "<!-- console-report:begin (written by scripts/console-report.sh; do not edit by hand) -->"
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) vCPUs (${cpu:-unknown CPU}), Linux $(uname -r), release build:"
  echo "\`bash scripts/console-report.sh $*\`."
  echo
  echo '```text'
  cat "$out/figures.txt"
  echo '```'
  echo "<!-- console-report:end -->"
} >"$out/section.md"

# Replace the marked section of the README (or append it when the markers are missing).
python3 - "$readme" "$out/section.md" <<'PY'
import re, sys
readme, section = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(readme).read()
pat = re.compile(r"<!-- console-report:begin.*?<!-- console-report:end -->", re.S)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(readme, "w").write(text)
PY
cat "$out/section.md"
