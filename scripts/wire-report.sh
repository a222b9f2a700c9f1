#!/usr/bin/env bash
# Bytes on the wire of cloud-proto: check-ins (nothing pending, one publish, an offer) and whole
# 256 KiB transfers at 512 B and 1 KiB chunks, measured by running the real endpoints; compared
# with Particle's published figures. Usage: bash scripts/wire-report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p cloud-proto --features std --example wire_report
