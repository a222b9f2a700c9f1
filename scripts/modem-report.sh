#!/usr/bin/env bash
# modem-ublox on the serial line: AT commands and bytes from power-on to an open TCP socket and
# per KiB received, per model (driver against the byte-exact emulator).
# Usage: bash scripts/modem-report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p modem-ublox --example at_report
