#!/usr/bin/env bash
# The Electron firmware end to end in QEMU (netduino2 = STM32F205): the real firmware
# (electron-firmware --features qemu, release) behind the bootloader, its modem USART connected
# to the SARA-U260 emulator (electron-qemu-bridge), the emulator's UDP sockets to a real
# `ota-cloud serve`. Runs until the cloud's own records show the device's check-in, its
# publish and the completed download of a small signed release, or a timeout.
#
# Exits 0 only if `ota-cloud device show` reports a check-in, at least one publish and the
# LwM2M state Downloaded for the device. Prints the console log, the per-wake figures and the
# peak stack.
#
# Usage: bash scripts/electron-qemu.sh [TIMEOUT_S]   (default 300)
# Env: KEEP=1 keeps the work directory; IMAGE_SIZE (default 4096) is the release's image size.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TIMEOUT_S=${1:-300}
IMAGE_SIZE=${IMAGE_SIZE:-4096}
DEVICE_DIR=examples/electron/device

step() { printf '\n==> %s\n' "$*"; }
die() { echo "electron-qemu: $*" >&2; exit 1; }

command -v qemu-system-arm >/dev/null || die "qemu-system-arm not installed (apt-get install qemu-system-arm)"
OBJCOPY=""
for c in "$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy" \
  "$(command -v llvm-objcopy || true)" "$(command -v rust-objcopy || true)"; do
  if [[ -n "$c" && -x "$c" ]]; then OBJCOPY=$c; break; fi
done
[[ -n "$OBJCOPY" ]] || die "no llvm-objcopy (rustup component add llvm-tools, or apt-get install llvm)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ "${KEEP:-0}" == 1 ]]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step "host tools (ota-tool, ota-cloud, electron-qemu-bridge)"
cargo build -q -p ota-tool -p ota-cloud -p electron-qemu-bridge
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
OTA_TOOL="$TARGET_DIR/debug/ota-tool"
CLOUD="$TARGET_DIR/debug/ota-cloud"
BRIDGE="$TARGET_DIR/debug/electron-qemu-bridge"
cloud() { "$CLOUD" --data "$WORK/cloud" "$@"; }

step "ota-cloud: init, product, device, a signed ${IMAGE_SIZE}-byte release, rollout to the device"
HW=electron-u260
"$OTA_TOOL" keygen --out "$WORK/release.pem" --pub-out "$WORK/release.pub.pem"
# The raw Ed25519 key the firmware trusts: the last 32 bytes of the SPKI DER.
RELEASE_KEY=$(grep -v -- ----- "$WORK/release.pub.pem" | base64 -d | tail -c 32 | od -An -tx1 | tr -d ' \n')
[[ ${#RELEASE_KEY} == 64 ]] || die "could not read the release public key"
cloud init >/dev/null
PRODUCT=$(cloud product add --name electron --hardware-id "$HW" --release-key "$WORK/release.pub.pem")
DEVICE=$(cloud device add --product "$PRODUCT" --key-out "$WORK/device.key")
head -c "$IMAGE_SIZE" /dev/urandom >"$WORK/v1.1.0.bin"
"$OTA_TOOL" sign --key "$WORK/release.pem" --image "$WORK/v1.1.0.bin" --version 1.1.0 \
  --security-counter 1 --hardware-id "$HW" --chunk-size 512 --out "$WORK/v1.1.0.ota" >/dev/null
RELEASE=$(cloud release upload --product "$PRODUCT" "$WORK/v1.1.0.ota" | awk '{print $1}')
ROLLOUT=$(cloud rollout start --release "$RELEASE" --device "$DEVICE")
echo "product $PRODUCT, device $DEVICE, release ${RELEASE:0:16}…, rollout $ROLLOUT"

# A free UDP port for the server, compiled into the firmware (ELECTRON_SERVER).
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER="127.0.0.1:$PORT"

step "device binaries (--features qemu, release): server $SERVER"
BOOTLOADER=none
(
  cd "$DEVICE_DIR"
  ELECTRON_SERVER="$SERVER" ELECTRON_RELEASE_KEY="$RELEASE_KEY" ELECTRON_HARDWARE_ID="$HW" \
    cargo build -q --release -p electron-firmware --features qemu
)
DEV_TARGET="$DEVICE_DIR/target/thumbv7m-none-eabi/release"
# The bootloader runs first when it has its QEMU build (memory-qemu.x reserving the stand-ins'
# region); otherwise the firmware runs alone behind an 8-byte vector stub at 0x0800_0000.
if [[ -f "$DEVICE_DIR/bootloader/memory-qemu.x" ]]; then
  (cd "$DEVICE_DIR" && cargo build -q --release -p electron-bootloader --features qemu)
  BOOTLOADER=electron-bootloader
fi

step "flash image: 1 MB of 0xFF; bootloader at 0, identity at 0xC000, firmware at 0x2_0000"
"$OBJCOPY" -O binary "$DEV_TARGET/electron-firmware" "$WORK/firmware.bin"
"$BRIDGE" identity --key "$WORK/device.key" --out "$WORK/identity.bin"
if [[ "$BOOTLOADER" != none ]]; then
  "$OBJCOPY" -O binary "$DEV_TARGET/electron-bootloader" "$WORK/bootloader.bin"
fi
python3 - "$WORK" "$BOOTLOADER" <<'EOF'
import sys
work, boot = sys.argv[1], sys.argv[2]
img = bytearray(b"\xff" * 0x100000)
def put(off, data, room):
    if len(data) > room:
        sys.exit(f"{len(data)} bytes do not fit the {room} at {off:#x}")
    img[off:off + len(data)] = data
fw = open(f"{work}/firmware.bin", "rb").read()
put(0x20000, fw, 384 * 1024)
put(0xC000, open(f"{work}/identity.bin", "rb").read(), 256)
if boot == "none":
    # The firmware's initial SP and reset vector, where the core reads them at reset.
    put(0, fw[:8], 0x4000)
else:
    put(0, open(f"{work}/bootloader.bin", "rb").read(), 0x4000)
open(f"{work}/flash.bin", "wb").write(img)
print(f"firmware {len(fw)} B; boot: {boot if boot != 'none' else 'vector stub (no QEMU bootloader build)'}")
EOF

step "ota-cloud serve, the bridge, QEMU (netduino2, -icount shift=0,sleep=off)"
"$CLOUD" --data "$WORK/cloud" serve --udp "$SERVER" --tcp 127.0.0.1:0 --admin 127.0.0.1:0 --next-checkin-s 30 \
  >"$WORK/serve.out" 2>"$WORK/serve.log" &
PIDS+=($!)
"$BRIDGE" run --link "$WORK/link.sock" --modem "$WORK/modem.sock" \
  --transcript "$WORK/modem-transcript.txt" >"$WORK/bridge.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  [[ -S "$WORK/link.sock" && -S "$WORK/modem.sock" ]] && grep -q '^listening' "$WORK/serve.out" && break
  sleep 0.1
done
[[ -S "$WORK/modem.sock" ]] || die "the bridge did not start: $(cat "$WORK/bridge.log")"
START=$(date +%s.%N)
qemu-system-arm -M netduino2 -nographic -monitor none -icount shift=0,sleep=off \
  -device loader,file="$WORK/flash.bin",addr=0x08000000,force-raw=on -d guest_errors,unimp -D "$WORK/qemu-debug.log" \
  -serial file:"$WORK/console.log" -serial unix:"$WORK/link.sock" -serial unix:"$WORK/modem.sock" \
  >"$WORK/qemu.log" 2>&1 &
QEMU=$!
PIDS+=($QEMU)

# The cloud's records decide: a check-in, a publish, the download reported complete.
done_ok=0
deadline=$(( $(date +%s) + TIMEOUT_S ))
while (( $(date +%s) < deadline )); do
  sleep 2
  kill -0 "$QEMU" 2>/dev/null || break
  show=$(cloud device show "$DEVICE" 2>/dev/null || true)
  if grep -q '^last check-in' <<<"$show" && grep -Eq '^publishes [1-9]' <<<"$show" \
    && grep -q '^lwm2m Downloaded' <<<"$show"; then
    done_ok=1
    break
  fi
done
END=$(date +%s.%N)
# Let the wake in progress finish its console report (the cloud records the download before
# the wake ends); later wakes are not waited for.
boots=$(grep -c '^boot:' "$WORK/console.log" || true)
for _ in $(seq 240); do
  (( $(grep -c '^stack peak' "$WORK/console.log" || true) >= boots )) && break
  kill -0 "$QEMU" 2>/dev/null || break
  sleep 0.5
done
kill "$QEMU" 2>/dev/null || true
wait "$QEMU" 2>/dev/null || true
sleep 0.5

step "console (USART1)"
tr -d '\r' <"$WORK/console.log"
step "bridge"
cat "$WORK/bridge.log"
step "the cloud's records"
cloud device show "$DEVICE" || true
echo "-- publishes (ota-cloud events):"
cloud events --device "$DEVICE" || true
echo "-- rollout:"
cloud rollout show "$ROLLOUT" || true

step "figures"
awk -v s="$START" -v e="$END" 'BEGIN { printf "wall time (QEMU start to the recorded download): %.1f s\n", e - s }'
echo "wakes: $(grep -c '^wake ' "$WORK/console.log" || true)"
grep -E '^(wake|modem up|check-in|offer|chunks|result)' "$WORK/console.log" | tr -d '\r' \
  | awk '/^wake /{n++} {print "  " $0}'
peak=$(grep -Eo 'stack peak: [0-9]+' "$WORK/console.log" | awk '{print $3}' | sort -n | tail -1)
echo "peak stack (max over wakes): ${peak:-?} B"

if [[ $done_ok != 1 ]]; then
  echo "FAIL: the cloud's records do not show the check-in, the publish and the completed download" >&2
  echo "(serve log: $(tail -5 "$WORK/serve.log"))" >&2
  exit 1
fi
echo "OK: the cloud recorded the check-in, the publish and the completed download"
