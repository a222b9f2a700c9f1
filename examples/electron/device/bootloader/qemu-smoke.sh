#!/usr/bin/env bash
# Boots the bootloader (feature `qemu`) on QEMU's netduino2 (an STM32F205) and checks where the
# core ends up, from the QEMU monitor's registers:
#   1. with an application at 0x0802_0000 (electron-firmware): the PC is inside the active slot
#      and the SP inside the RAM, i.e. ota-core found nothing to do on the blank state log and the
#      bootloader checked the vector table and jumped;
#   2. with a blank active slot: the PC is in the bootloader's `park` (no jump to garbage).
# Usage: bash bootloader/qemu-smoke.sh   (from examples/electron/device; needs qemu-system-arm)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p electron-bootloader --features qemu
cp target/thumbv7m-none-eabi/release/electron-bootloader target/bootloader-qemu.elf
cargo build -q --release -p electron-firmware
TOOLS="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
NM="$TOOLS/llvm-nm"
# The application's flash image only: QEMU refuses two ELFs whose (empty) RAM segments overlap.
"$TOOLS/llvm-objcopy" -O binary --only-section=.vector_table --only-section=.text \
  --only-section=.rodata --only-section=.data \
  target/thumbv7m-none-eabi/release/electron-firmware target/firmware-smoke.bin

regs() { # flash images (file@address) to load beside the bootloader -> "PC SP"
  local loaders=()
  for f in "$@"; do loaders+=(-device "loader,file=${f%@*},addr=${f#*@}"); done
  (sleep 2; echo "info registers"; sleep 1; echo quit) |
    timeout 30 qemu-system-arm -machine netduino2 -display none -serial null -monitor stdio \
      -kernel target/bootloader-qemu.elf "${loaders[@]}" 2>/dev/null |
    tr -d '\r' | sed -n 's/.*R13=\([0-9a-f]*\) R14=[0-9a-f]* R15=\([0-9a-f]*\).*/\2 \1/p' | head -1
}

fail=0
read -r pc sp < <(regs target/firmware-smoke.bin@0x08020000) || { echo "FAIL: no registers from QEMU"; exit 1; }
if (( 0x$pc >= 0x08020000 && 0x$pc < 0x08080000 && 0x$sp > 0x20000000 && 0x$sp <= 0x20020000 )); then
  echo "ok: jumped to the application (PC $pc, SP $sp)"
else
  echo "FAIL: expected the application, PC $pc SP $sp"; fail=1
fi

read -r start size < <("$NM" -C -S target/bootloader-qemu.elf | awk '/electron_bootloader::park/ {print $1, $2; exit}') || { echo "FAIL: no park symbol"; exit 1; }
read -r pc sp < <(regs) || { echo "FAIL: no registers from QEMU"; exit 1; }
if (( 0x$pc >= 0x$start && 0x$pc < 0x$start + 0x$size )); then
  echo "ok: blank active slot, parked (PC $pc in park at $start)"
else
  echo "FAIL: expected park at $start (+0x$size), PC $pc"; fail=1
fi
exit $fail
