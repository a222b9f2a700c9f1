#!/usr/bin/env bash
# The Electron story's figures (examples/electron/README.md, "Figures"): per-wake cost with
# nothing pending, bytes on the air for a 200 KB update and their ratio to the image, wakes and
# awake seconds at 5 s and 10 s budgets at 10 kB/s, chunks re-fetched after injected power
# cuts, and the wall time of the default run. Every figure is simulated time or bytes from
# `electron-sim --json`, except the wall time (this machine's, printed, never asserted).
# Usage: bash scripts/electron-report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p electron-sim
sim=target/release/electron-sim
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "## Default run (200 KiB image, 10 s budget + 20 s extension, 10 kB/s, two power cuts)"
start=$(date +%s.%N)
status=0
"$sim" --json "$out/default.json" >"$out/default.txt" || status=$?
end=$(date +%s.%N)
printf 'exit status %s, wall time %.1f s\n' "$status" "$(echo "$end - $start" | bc)"
jq -r '"wakes \(.wakes), awake \(.awake_s | . * 10 | round / 10) s, chunks re-fetched \(.chunks_refetched), power cuts \(.power_cuts), final v\(.final_version.major).\(.final_version.minor).\(.final_version.patch) confirmed \(.final_confirmed); rollback: server failed \(.rollback.server_failed), final v\(.rollback.summary.final_version.major).\(.rollback.summary.final_version.minor).\(.rollback.summary.final_version.patch)"' "$out/default.json"
echo

echo "## A wake with nothing pending (UDP payload)"
"$sim" --faults none --no-rollback --json "$out/clean.json" >/dev/null
jq -r '.idle_wake | "\(.bytes_up) B up + \(.bytes_down) B down in \(.datagrams_up)+\(.datagrams_down) datagrams, \(.round_trips) round trip (+ Goodbye), awake \(.awake_ms) ms"' "$out/clean.json"
echo

echo "## The 200 KiB update, no faults (10 s budget + 20 s extension, 10 kB/s)"
jq -r '"update bytes \(.update_bytes.up) up + \(.update_bytes.down) down = \(.update_bytes.up + .update_bytes.down) for an image of \(.image_size): ratio \((.update_bytes.up + .update_bytes.down) / .image_size * 1000 | round / 1000); download wakes on the air \(.download.link_bytes) B payload, \(.download.billed_bytes) B with IP/UDP headers; chunk frames \(.download.chunk_frames_delivered) for \(.download.manifest_chunks) manifest + \(.download.chunks_total) image chunks"' "$out/clean.json"
echo

echo "## Wakes and awake seconds for the download, 200 KiB at 10 kB/s"
echo "| budget | extension | download wakes | awake s | story |"
echo "|---|---|---|---|---|"
for budget in 5000 10000 15000; do
  for ext in 20000 0; do
    s=0
    "$sim" --faults none --no-rollback --awake-budget-ms "$budget" --max-extension-ms "$ext" \
      --max-wakes 60 --json "$out/b.json" >/dev/null || s=$?
    jq -r --arg b "$budget" --arg e "$ext" --arg s "$s" \
      '"| \($b|tonumber/1000) s | \($e|tonumber/1000) s | \(.download.wakes) | \(.download.awake_s * 10 | round / 10) | \(if $s == "0" then "v2 confirmed" else "not updated in 60 wakes" end) |"' "$out/b.json"
  done
done
echo

echo "## Chunks re-fetched after injected power cuts (200 KiB, 400 chunks)"
echo "| faults | cuts | chunk writes (400 needed) | stored chunks written again | chunk frames sent again on the air | story |"
echo "|---|---|---|---|---|---|"
for f in cut:download@100:torn cut:download@333:before cut:download@500:torn,cut:install@40:torn \
  cut:download@700:after,cut:install@3:torn; do
  s=0
  "$sim" --faults "$f" --no-rollback --json "$out/c.json" >/dev/null || s=$?
  jq -r --arg f "$f" --arg s "$s" \
    '"| `\($f)` | \(.power_cuts) | \(.download.chunks_written) | \(.chunks_refetched) | \(.download.chunks_resent) | \(if $s == "0" then "v2 confirmed" else "FAILED" end) |"' "$out/c.json"
done
echo

echo "## A fleet of 8 (staged rollout 25 % → 50 % → 100 %, no faults)"
start=$(date +%s.%N)
status=0
"$sim" --fleet 8 --faults none --json "$out/fleet.json" >/dev/null 2>&1 || status=$?
end=$(date +%s.%N)
jq -r '"\(.confirmed)/\(.devices) confirmed, shares \(.shares_bp | map(. / 100 | tostring + " %") | join(" → ")), \(.wakes) wakes, \(.awake_s | round) s awake in all, update bytes \(.update_bytes.up + .update_bytes.down) (\((.update_bytes.up + .update_bytes.down) / .devices | round) per device)"' "$out/fleet.json"
printf 'exit status %s, wall time %.1f s\n' "$status" "$(echo "$end - $start" | bc)"
