#!/usr/bin/env bash
# Regenerates the console screenshots in docs/ (docs/console-fleet.png, console-device.png,
# console-rollout.png) that the README shows: runs ota-cloud's browser test of a rollout
# (tools/ota-cloud/tests/browser.rs: headless Chromium at 1280x900, the ota-cloud binary, 50
# simulated devices) with OTA_CONSOLE_SCREENSHOTS set, which makes it save them.
# Needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver).
# Usage: bash scripts/console-screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromedriver >/dev/null 2>&1 && [ -z "${OTA_CHROMEDRIVER:-}" ]; then
  echo "chromedriver not found: apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
OTA_CONSOLE_SCREENSHOTS="$out" cargo test -q -p ota-cloud --test browser -- \
  --exact upload_roll_out_at_ten_percent_watch_devices_confirm_and_pause
for f in console-fleet.png console-device.png console-rollout.png; do
  [ -s "$out/$f" ] || { echo "the test saved no $f" >&2; exit 1; }
  cp "$out/$f" "docs/$f"
  echo "docs/$f"
done
