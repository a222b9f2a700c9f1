#!/usr/bin/env bash
# Flash (.text + .rodata + .data init) and static RAM (.data + .bss) on thumbv7m-none-eabi, minus
# a baseline binary with the same runtime: ota-core at opt-level "z" and "s" (verify path alone and
# the whole crate), sleep-guard with 8 reasons, cloud-proto's device side ("cloud": endpoint
# and stream decoder in statics), and modem-ublox with one model family or all four. With QEMU installed, also the peak stack of
# manifest verification, measured by stack painting on an emulated STM32F205 (netduino2).
# For modem-ublox, a per-function breakdown after inlining (tools/size-report/breakdown.py) is
# written to tools/size-report/target/breakdown-<part>.txt.
# Usage: bash scripts/size-report.sh [modem]   ("modem": the modem-ublox lines only)
set -euo pipefail
only="${1:-all}"
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
if [ "$only" != modem ]; then
for opt in z s; do
  read -r bf br < <(measure "$opt" baseline)
  for part in verify full; do
    read -r f r < <(measure "$opt" "$part")
    printf '%-8s %-10s %12d %12d\n' "$opt" "$part" $((f - bf)) $((r - br))
  done
done
# sleep-guard with 8 reasons (a static SleepGuard, every call linked in).
read -r bf br < <(measure z baseline)
read -r f r < <(measure z sleep)
printf '%-8s %-10s %12d %12d\n' z "sleep-guard(8)" $((f - bf)) $((r - br))

# cloud-proto's device side (endpoint + stream decoder in statics).
read -r f r < <(measure z cloud)
printf '%-8s %-10s %12d %12d\n' z "cloud" $((f - bf)) $((r - br))
else
  read -r bf br < <(measure z baseline)
fi

# modem-ublox: the Electron's family only, and all four (driver with a 256-byte line buffer in a
# static; every operation linked in).
# modem-u2-cmds: the Electron's family with the optional commands linked in too (raw command,
# CSQ, CCLK, DNS); modem-u2-udp: only what the README's UDP check-in calls.
for part in modem-u2 modem-u2-cmds modem-u2-udp modem-all; do
  read -r f r < <(measure z "$part")
  printf '%-8s %-10s %12d %12d\n' z "$part" $((f - bf)) $((r - br))
  # Kept out of the driver (issue 8 item 10): the runtime's 64-bit division (ns -> ms is done
  # with 32-bit divides) and core::fmt (commands are built without it).
  banned=$("$(dirname "$SIZE")/llvm-nm" -C "$BIN" | grep -E "__aeabi_uldivmod|u64_div_rem|core::fmt" || true)
  if [ -n "$banned" ]; then
    printf '%s links 64-bit division or core::fmt:\n%s\n' "$part" "$banned" >&2
    exit 1
  fi
  # Where the driver's bytes go, function by function after inlining (needs llvm-symbolizer;
  # the breakdown goes to target/, the summary line here).
  if command -v llvm-symbolizer >/dev/null 2>&1; then
    LLVM_BIN="$(dirname "$SIZE")" python3 breakdown.py "$BIN" modem_ublox 40 \
      >"target/breakdown-$part.txt"
    echo "         $(head -n 1 "target/breakdown-$part.txt") -> tools/size-report/target/breakdown-$part.txt"
  fi
done

[ "$only" = modem ] && exit 0

# The same with sha2's loop-based software SHA-256 (a user-level cfg, see ota-core's README).
compact='--cfg sha2_backend_soft="compact"'
read -r bf br < <(measure z baseline "$compact")
for part in verify full cloud; do
  read -r f r < <(measure z "$part" "$compact")
  printf '%-8s %-10s %12d %12d\n' "z+sha2c" "$part" $((f - bf)) $((r - br))
done

if command -v qemu-system-arm >/dev/null 2>&1; then
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z cargo build -q --release --features stack
  echo "stack (opt z, QEMU netduino2): $(timeout 120 qemu-system-arm -M netduino2 -nographic \
    -semihosting-config enable=on,target=native -kernel "$BIN" 2>/dev/null | tr -d '\r')"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z cargo build -q --release --features cloud-stack
  echo "stack (opt z, QEMU netduino2): $(timeout 120 qemu-system-arm -M netduino2 -nographic \
    -semihosting-config enable=on,target=native -kernel "$BIN" 2>/dev/null | tr -d '\r')"
  # Worst-case instructions of SleepGuard::decide (8 reasons, 7 leases expiring, a critical
  # lease running), counted from QEMU's translation-block trace between two marker functions.
  RUSTFLAGS="-C link-arg=-Tlink.x" CARGO_PROFILE_RELEASE_OPT_LEVEL=z cargo build -q --release --features sleep-count
  NM="$(dirname "$SIZE")/llvm-nm"
  start=$("$NM" "$BIN" | awk '$3=="count_start"{print $1}')
  end=$("$NM" "$BIN" | awk '$3=="count_end"{print $1}')
  log=$(mktemp)
  timeout 120 qemu-system-arm -M netduino2 -nographic -semihosting-config enable=on,target=native \
    -kernel "$BIN" -d in_asm,exec,nochain -D "$log" >/dev/null 2>&1 || true
  echo "sleep-guard decide, worst case with 8 reasons (opt z): $(python3 ../../scripts/count-insns.py "$log" "$start" "$end") Thumb-2 instructions"
  rm -f "$log"
else
  echo "stack: qemu-system-arm not installed (apt-get install qemu-system-arm) — not measured"
fi
