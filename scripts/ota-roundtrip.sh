#!/usr/bin/env bash
# End-to-end round trip of the host tool: keygen, sign a 200 KiB image, inspect, verify, then
# tamper with one image byte and check that verify refuses it.
# Exits 0 only if the good container verifies AND the tampered one is refused.
# Usage: bash scripts/ota-roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p ota-tool
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$(pwd)/$TARGET_DIR"
OTA="$TARGET_DIR/debug/ota-tool"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

step() { printf '\n==> %s\n' "$*"; }

IMAGE_SIZE=204800
CHUNK=1024
TAMPER_AT=100000 # image offset of the byte to flip: chunk 97

step "keygen"
"$OTA" keygen --out key.pem --pub-out pub.pem

step "firmware: $IMAGE_SIZE pseudo-random bytes"
head -c "$IMAGE_SIZE" /dev/urandom >fw.bin

step "sign"
"$OTA" sign --key key.pem --image fw.bin --version 1.2.0 --security-counter 3 \
  --hardware-id electron-u260 --chunk-size "$CHUNK" --out fw.ota

step "inspect"
"$OTA" inspect fw.ota

step "inspect --json"
JSON="$("$OTA" inspect --json fw.ota)"
echo "$JSON"
MANIFEST_LEN="$(sed -n 's/.*"manifest_len":\([0-9]*\).*/\1/p' <<<"$JSON")"
[[ -n "$MANIFEST_LEN" ]] || { echo "no manifest_len in the JSON" >&2; exit 1; }

step "verify (expect OK)"
"$OTA" verify --pubkey pub.pem --hardware-id electron-u260 --min-counter 3 fw.ota

step "flip image byte $TAMPER_AT, verify again (expect refusal)"
cp fw.ota tampered.ota
OFFSET=$((16 + MANIFEST_LEN + TAMPER_AT))
OLD="$(od -An -tu1 -j "$OFFSET" -N1 tampered.ota | tr -d ' ')"
NEW=$((OLD ^ 0x01))
printf "\\$(printf '%03o' "$NEW")" | dd of=tampered.ota bs=1 seek="$OFFSET" conv=notrunc status=none
if cmp -s fw.ota tampered.ota; then
  echo "FAIL: the tampered copy is identical" >&2
  exit 1
fi
set +e
"$OTA" verify --pubkey pub.pem tampered.ota 2>verify.err
RC=$?
set -e
cat verify.err
if [[ $RC -eq 0 ]]; then
  echo "FAIL: verify accepted a tampered image" >&2
  exit 1
fi
if [[ $RC -ne 1 ]] || ! grep -q "^error: chunk $((TAMPER_AT / CHUNK)) digest mismatch" verify.err; then
  echo "FAIL: verify did not refuse the tampered image as expected (exit $RC)" >&2
  exit 1
fi
echo "refused (exit $RC), as it must be"

step "summary"
CONTAINER_LEN="$(wc -c <fw.ota | tr -d ' ')"
awk -v img="$IMAGE_SIZE" -v man="$MANIFEST_LEN" -v cont="$CONTAINER_LEN" -v chunk="$CHUNK" 'BEGIN {
  printf "image %d bytes in %d chunks of %d\n", img, int((img + chunk - 1) / chunk), chunk
  printf "manifest %d bytes = %.2f%% of the image; container %d bytes\n", man, 100 * man / img, cont
  print "round trip OK: good image verified, tampered image refused"
}'
