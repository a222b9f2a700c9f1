#!/usr/bin/env bash
# Flash (.text + .rodata + .data init) and static RAM (.data + .bss) of ota-core on
# thumbv7m-none-eabi, at opt-level "z" and "s", for the verify path alone and the whole crate,
# minus a baseline binary with the same runtime. With QEMU installed, also the peak stack of
# manifest verification, measured by stack painting on an emulated STM32F205 (netduino2).
# Usage: bash scripts/size-report.sh
set -euo pipefail
cd "$(dirname "$0")/../tools/size-report"
rustup target add thumbv7m-none-eabi >/dev/null 2>&1 || true
rustup component add llvm-tools >/dev/null 2>&1 || true
SIZE="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
BIN=target/thumbv7m-none-eabi/release/ota-size-report

measure() { # opt feature [extra rustflags] -> "flash ram"
  RUSTFLAGS="-C link-arg=-Tlink.x ${3:-}" CARGO_PROFILE_RELEASE_OPT_LEVEL="$1" \
    cargo build -q --release --features "$2"
  "$SIZE" -A "$BIN" | awk '
    $1==".vector_table"||$1==".text"||$1==".rodata" {flash+=$2}
    $1==".data" {flash+=$2; ram+=$2}
    $1==".bss"||$1==".uninit" {ram+=$2}
    END {print flash+0, ram+0}'
}

printf '%-8s %-10s %12s %12s\n' opt part "flash (B)" "static RAM (B)"
for opt in z s; do
  read -r bf br < <(measure "$opt" baseline)
  for part in verify full; do
    read -r f r < <(measure "$opt" "$part")
    printf '%-8s %-10s %12d %12d\n' "$opt" "$part" $((f - bf)) $((r - br))
  done
done
# The same with sha2's loop-based software SHA-256 (a user-level cfg, see ota-core's README).
compact='--cfg sha2_backend_soft="compact"'
read -r bf br < <(measure z baseline "$compact")
for part in verify full; do
  read -r f r < <(measure z "$part" "$compact")
  printf '%-8s %-10s %12d %12d\n' "z+sha2c" "$part" $((f - bf)) $((r - br))
done

if command -v qemu-system-arm >/dev/null 2>&1; then
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z cargo build -q --release --features stack
  echo "stack (opt z, QEMU netduino2): $(timeout 120 qemu-system-arm -M netduino2 -nographic \
    -semihosting-config enable=on,target=native -kernel "$BIN" 2>/dev/null | tr -d '\r')"
else
  echo "stack: qemu-system-arm not installed (apt-get install qemu-system-arm) — not measured"
fi
