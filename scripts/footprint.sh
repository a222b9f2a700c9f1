#!/usr/bin/env bash
# The Electron firmware's measured footprint, regenerated into docs/footprint.md (issue 12):
#
# * instructions and peak stack of the SDK's device-side work: electron-bench on QEMU's
#   STM32F205 (netduino2) under -icount shift=0 (manifest verification, SHA-256 per KiB, the
#   check-in's authentication, one chunk end to end: receive, authenticate, hash + program);
# * flash and static RAM per crate (.text, .rodata, .data, .bss) of the release firmware ELF,
#   by symbol and inline-chain attribution, with totals that add up to the section sizes;
# * the firmware against the targets (flash < 128 KiB at opt-level "z", aim 96 KiB; static
#   RAM < 32 KiB): exits non-zero if a hard limit is exceeded;
# * the bootloader's size (with and without its `verify-signature` feature, if it has one);
# * the firmware's peak stack, from the QEMU run's console (`stack peak: N B`) when a log of
#   scripts/electron-qemu.sh is given;
# * (full run only) the per-crate opt-level sweep: z / s / 2 for sha2, ed25519-compact,
#   ota-core, cloud-proto, modem-ublox, size and instructions (a build of the bench each).
#
# Usage: bash scripts/footprint.sh [--check] [--elf PATH] [--qemu-log PATH] [--no-sweep]
#   --check     build, measure and check the targets; print the report, leave the doc alone
#               (what scripts/ci.sh runs; no opt-level sweep)
#   --elf PATH  the firmware ELF to report per crate and check (default: the release build of
#               electron-firmware, built here)
#   --qemu-log  console log of scripts/electron-qemu.sh, for the firmware's peak stack
#   --no-sweep  skip the opt-level sweep (about 10 bench builds)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dev="$root/examples/electron/device"
check=0 sweep=1 elf="" qlog=""
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1; sweep=0 ;;
    --no-sweep) sweep=0 ;;
    --elf) elf="$(realpath "$2")"; shift ;;
    --qemu-log) qlog="$(realpath "$2")"; shift ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

FLASH_LIMIT=$((128 * 1024)) FLASH_AIM=$((96 * 1024)) RAM_LIMIT=$((32 * 1024))
rustup target add thumbv7m-none-eabi >/dev/null 2>&1 || true
rustup component add llvm-tools >/dev/null 2>&1 || true
LLVM="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
SYMBOLIZER="$(command -v llvm-symbolizer || true)"
have_qemu=1
if ! command -v qemu-system-arm >/dev/null; then
  # The size limits need no QEMU; the instruction counts do.
  [ "$check" = 1 ] || { echo "qemu-system-arm is needed (apt-get install qemu-system-arm)" >&2; exit 1; }
  have_qemu=0
  echo "qemu-system-arm not installed: instructions and stacks not measured, size limits checked" >&2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
T="$dev/target/thumbv7m-none-eabi/release"
cd "$dev"

# Runs the bench ELF $1 under QEMU; its lines go to $2. Fails if the bench fails.
run_bench() {
  if ! timeout 600 qemu-system-arm -M netduino2 -nographic -icount shift=0 -monitor none \
      -semihosting-config enable=on,target=native -kernel "$1" </dev/null 2>&1 \
      | tr -d '\r' >"$2"; then
    cat "$2" >&2
    echo "electron-bench failed under QEMU" >&2
    return 1
  fi
  grep -q '^bench done ok$' "$2" || { cat "$2" >&2; echo "electron-bench did not finish" >&2; return 1; }
}

# Sections of ELF $1: "flash ram text rodata data bss" (flash: vector table + .text + .rodata
# + .data's initial values; static RAM: .data + .bss + .uninit).
sections() {
  "$LLVM/llvm-size" -A "$1" | awk '
    $1==".vector_table" {v=$2} $1==".text" {t=$2} $1==".rodata" {r=$2}
    $1==".data" {d=$2} $1==".bss" {b=$2} $1==".uninit" {u=$2}
    END {print v+t+r+d, d+b+u, v+t, r, d, b+u}'
}

echo "==> electron-bench (release) under QEMU netduino2, -icount shift=0" >&2
cargo build -q --release -p electron-bench
: >"$work/bench.txt"
if [ "$have_qemu" = 1 ]; then
  run_bench "$T/electron-bench" "$work/bench.txt"
fi

echo "==> firmware and bootloader (release)" >&2
if [ -z "$elf" ]; then
  cargo build -q --release -p electron-firmware
  elf="$T/electron-firmware"
fi
cargo build -q --release -p electron-bootloader
cp "$T/electron-bootloader" "$work/bootloader"
boot_sig=""
if grep -q '^verify-signature' bootloader/Cargo.toml; then
  # With a key: without one the check is dead code (no key can match) and drops out of the
  # build, which would measure nothing. Any Ed25519 key has the same size.
  openssl genpkey -algorithm ed25519 -out "$work/sig.pem" 2>/dev/null
  openssl pkey -in "$work/sig.pem" -pubout -out "$work/sig.pub.pem"
  ELECTRON_OTA_PUBKEY_PEM="$work/sig.pub.pem" \
    cargo build -q --release -p electron-bootloader --features verify-signature
  cp "$T/electron-bootloader" "$work/bootloader-sig"
  boot_sig="$work/bootloader-sig"
  cargo build -q --release -p electron-bootloader # leave the default build in target/
fi

# Per-crate attribution of an ELF: a Markdown table on stdout.
crate_table() {
  LLVM="$LLVM" SYMBOLIZER="$SYMBOLIZER" python3 - "$1" <<'PY'
import os, re, struct, subprocess, sys
from collections import defaultdict

elf = sys.argv[1]
LLVM = os.environ["LLVM"]
CRATES = ["ota_core", "cloud_proto", "modem_ublox", "sleep_guard", "electron_app",
          "electron_bsp", "sha2", "ed25519_compact", "postcard", "heapless", "crc"]
CORE = {"core", "compiler_builtins", "alloc"}
COLS = CRATES + ["core/compiler_builtins", "other", "unattributed"]

def clean(n):
    for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$u7b$", "{"), ("$u7d$", "}"),
                 ("$C$", ","), ("$RF$", "&"), ("$u5b$", "["), ("$u5d$", "]"), ("$BP$", "*"),
                 ("$u27$", "'"), ("..", "::")):
        n = n.replace(a, b)
    return n

def crate_of(name):
    """The crate whose code a (demangled) symbol or inlined frame is: the first path's
    crate; for `<T as Trait>::f` the type's crate unless it is core's and the trait is not."""
    n = clean(name).lstrip("_")
    if n.startswith("__aeabi") or n in ("memcpy", "memset", "memmove", "memcmp") or \
            n.startswith("__") and "::" not in n:
        return "core/compiler_builtins"
    paths = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    if not paths:
        return None
    first = paths[0]
    if n.startswith("<") and first in CORE:
        m = re.search(r" as ([A-Za-z_][A-Za-z0-9_]*)::", n)
        if m and m.group(1) not in CORE:
            first = m.group(1)
    if first in CORE:
        return "core/compiler_builtins"
    return first if first in CRATES else "other:" + first

def bucket(c):
    if c is None:
        return "unattributed"
    return "other" if c.startswith("other:") else c

# Sections and symbols.
raw = open(elf, "rb").read()
secs = {}  # name -> (address, size, file offset); ELF32 little-endian section headers
shoff, = struct.unpack_from("<I", raw, 0x20)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", raw, 0x2E)
hdrs = [struct.unpack_from("<IIIIII", raw, shoff + i * shentsize) for i in range(shnum)]
strtab = hdrs[shstrndx][4]
for name_off, typ, flags, addr, off, size in hdrs:
    name = raw[strtab + name_off:raw.index(b"\0", strtab + name_off)].decode()
    secs[name] = (addr, size, off)
syms = []  # (addr, size, kind, name)
for line in subprocess.run([f"{LLVM}/llvm-nm", "-C", "-S", "-n", elf], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    p = line.split(None, 3)
    if len(p) == 4 and int(p[1], 16) > 0:
        syms.append((int(p[0], 16) & ~1 if p[2] in "tT" else int(p[0], 16), int(p[1], 16), p[2], p[3]))

def sec_of(addr):
    for s, (a, size, _) in secs.items():
        if a <= addr < a + size and s in (".vector_table", ".text", ".rodata", ".data", ".bss", ".uninit"):
            return s
    return None

table = defaultdict(lambda: defaultdict(int))   # section -> bucket -> bytes
others = defaultdict(int)

# .text: every instruction and literal word, charged to the innermost frame of its inline
# chain (the code it was written in); without llvm-symbolizer, to its symbol.
dis = subprocess.run([f"{LLVM}/llvm-objdump", "-d", "--no-show-raw-insn", "-j", ".text", elf],
                     capture_output=True, text=True, check=True).stdout
addrs = [int(m.group(1), 16) for m in re.finditer(r"^\s*([0-9a-f]+):", dis, re.M)]
text_a, text_size, _ = secs[".text"]
addrs = sorted(set(a for a in addrs if text_a <= a < text_a + text_size))
sizes = [(b - a) for a, b in zip(addrs, addrs[1:] + [text_a + text_size])]
code_crate = {}
sym_at = {}
for a, size, kind, name in syms:
    if kind in "tT":
        sym_at[a] = (size, name)
if os.environ.get("SYMBOLIZER"):
    out = subprocess.run([os.environ["SYMBOLIZER"], "--obj=" + elf, "--inlining",
                          "--functions=linkage"],
                         input="".join(f"0x{a:x}\n" for a in addrs), capture_output=True,
                         text=True, check=True).stdout
    blocks = out.strip("\n").split("\n\n")
    if len(blocks) != len(addrs):
        sys.exit("llvm-symbolizer answered %d of %d addresses" % (len(blocks), len(addrs)))
    for a, blk in zip(addrs, blocks):
        frames = blk.split("\n")[0::2]
        c = None
        for fr in frames:  # innermost first; skip frames without a known name
            if fr != "??":
                c = crate_of(fr)
                if c:
                    break
        code_crate[a] = c
else:
    starts = sorted(sym_at)
    import bisect
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        c = None
        if i >= 0 and a < starts[i] + sym_at[starts[i]][0]:
            c = crate_of(sym_at[starts[i]][1])
        code_crate[a] = c
for a, size in zip(addrs, sizes):
    c = code_crate[a]
    table[".text"][bucket(c)] += size
    if c and c.startswith("other:"):
        others[c[6:]] += size
if ".vector_table" in secs:
    table[".text"]["other"] += secs[".vector_table"][1]
    others["cortex_m_rt (vector table)"] += secs[".vector_table"][1]

# Data sections. .data/.bss: named statics by their path. .rodata: after LTO most constants
# have no symbol, so it is cut at every address something points at (a literal word in code,
# a named constant, a pointer inside already attributed read-only data: panic locations to
# file names, vtables) and each piece goes to the crate that points at its start (the
# majority, if several do); what nothing points at is unattributed.
import bisect
objs = sorted([(a, size, name) for a, size, kind, name in syms
               if sec_of(a) in (".rodata", ".data", ".bss", ".uninit")])
named = defaultdict(int)
for a, size, name in objs:
    sec = sec_of(a)
    if sec == ".rodata":
        continue
    sec = ".bss" if sec == ".uninit" else sec
    c = crate_of(name) if not name.startswith(".L") else None
    table[sec][bucket(c)] += size
    named[sec] += size
    if c and c.startswith("other:"):
        others[c[6:]] += size
for sec in (".data", ".bss"):
    total = secs.get(sec, (0, 0, 0))[1] + (secs.get(".uninit", (0, 0, 0))[1] if sec == ".bss" else 0)
    table[sec]["unattributed"] += total - named[sec]
if ".rodata" in secs:
    ro_a, ro_size, ro_off = secs[".rodata"]
    ro_end = ro_a + ro_size
    ro = raw[ro_off:ro_off + ro_size]
    fixed = {}   # named constants: address -> crate
    ends = set()
    for a, size, name in objs:
        if sec_of(a) == ".rodata" and not name.startswith(".L"):
            fixed[a] = crate_of(name)
            ends.add(a + size)
    code_refs = defaultdict(list)
    for m in re.finditer(r"^\s*([0-9a-f]+):(?:\s[0-9a-f]{2})*\s+\.word\s+0x([0-9a-f]+)", dis, re.M):
        src, val = int(m.group(1), 16), int(m.group(2), 16)
        if ro_a <= val < ro_end and code_crate.get(src):
            code_refs[val].append(code_crate[src])
    data_ptrs = [(ro_a + i, struct.unpack_from("<I", ro, i)[0]) for i in range(0, ro_size - 3, 4)]
    data_ptrs = [(src, val) for src, val in data_ptrs if ro_a <= val < ro_end]
    owner_at = {}
    for _ in range(4):
        refs = defaultdict(list, {k: list(v) for k, v in code_refs.items()})
        if owner_at:
            bounds = sorted(owner_at)
            for src, val in data_ptrs:
                i = bisect.bisect_right(bounds, src) - 1
                if i >= 0 and owner_at[bounds[i]]:
                    refs[val].append(owner_at[bounds[i]])
        new = {}
        for addr, cs in refs.items():
            new[addr] = max(sorted(set(cs)), key=cs.count)
        new.update(fixed)
        for e in ends:
            new.setdefault(e, None)
        if new == owner_at:
            break
        owner_at = new
    bounds = sorted(a for a in owner_at if ro_a <= a < ro_end)
    covered = 0
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else ro_end
        c = owner_at[start]
        table[".rodata"][bucket(c)] += end - start
        covered += end - start
        if c and c.startswith("other:"):
            others[c[6:]] += end - start
    table[".rodata"]["unattributed"] += ro_size - covered

SECS = [".text", ".rodata", ".data", ".bss"]
tot = {s: sum(table[s].values()) for s in SECS}
print("| crate | .text | .rodata | .data | .bss | flash | RAM |")
print("|---|---:|---:|---:|---:|---:|---:|")
for c in COLS:
    v = [table[s].get(c, 0) for s in SECS]
    if sum(v) == 0 and c not in CRATES:
        continue
    print(f"| {c} | " + " | ".join(str(x) for x in v) +
          f" | {v[0] + v[1] + v[2]} | {v[2] + v[3]} |")
print("| **total** | " + " | ".join(f"**{tot[s]}**" for s in SECS) +
      f" | **{tot['.text'] + tot['.rodata'] + tot['.data']}** | **{tot['.data'] + tot['.bss']}** |")
top = sorted(others.items(), key=lambda kv: -kv[1])[:8]
if top:
    print()
    print("\"other\", largest first: " + ", ".join(f"{k} {v}" for k, v in top) + ".")
mode = "the innermost inlined frame of each instruction (llvm-symbolizer)" if os.environ.get("SYMBOLIZER") else "the enclosing symbol (llvm-symbolizer not installed)"
print()
print(f"_.text is charged by {mode}; .text includes the vector table; .bss includes .uninit._")
PY
}

# Figures from the bench's lines.
b() { awk -v n="$1" -v k="${2:-insns}" '$1=="bench" && $2==n { for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]==k) print kv[2] } }' "$3"; }
avg() { b "$1" "${2:-insns}" "$3" | awk '{s+=$1; n++} END {if (n) printf "%d", s/n}'; }
mx() { b "$1" "${2:-insns}" "$3" | sort -n | tail -n 1; }

bench_table() { # bench lines file -> Markdown
  local f="$1"
  local v s sha sha_kb cs cr rc au hp tot
  v=$(b verify_manifest insns "$f"); s=$(b verify_manifest stack "$f")
  sha=$(b sha256 insns "$f"); sha_kb=$((sha / 16))
  cs=$(b checkin_send insns "$f"); cr=$(b checkin_reply insns "$f")
  rc=$(avg chunk_receive insns "$f"); au=$(avg chunk_authenticate insns "$f"); hp=$(avg chunk_hash_program insns "$f")
  tot=$((rc + au + hp))
  echo "| what | instructions | per KiB | peak stack (B) | at 120 MHz, at least |"
  echo "|---|---:|---:|---:|---:|"
  us() { awk -v n="$1" 'BEGIN {printf "%.2f ms", n / 120000}'; }
  echo "| Ed25519 manifest verification (\`ota_core::verify\`, $(b verify_manifest manifest_bytes "$f")-byte manifest of a 96 KiB image) | $v | | $s | $(us "$v") |"
  echo "| SHA-256 (\`Sha256Digest::of\`, 16 KiB) | $sha | $sha_kb | $(b sha256 stack "$f") | $(us "$sha_kb") per KiB |"
  echo "| check-in: build and seal the frame (\`DeviceEndpoint::send\`, $(b checkin_send frame_bytes "$f") B) | $cs | | $(b checkin_send stack "$f") | $(us "$cs") |"
  echo "| check-in: authenticate and decode the reply (\`handle_datagram\`, $(b checkin_reply frame_bytes "$f") B) | $cr | | $(b checkin_reply stack "$f") | $(us "$cr") |"
  echo "| **authentication per check-in** (both) | **$((cs + cr))** | | $(printf '%s\n%s\n' "$(b checkin_send stack "$f")" "$(b checkin_reply stack "$f")" | sort -n | tail -1) | $(us $((cs + cr))) |"
  echo "| chunk request: build and seal (8 chunks) | $(b chunk_request_send insns "$f") | | $(b chunk_request_send stack "$f") | |"
  echo "| modem: send the request (\`send_to\`, AT+USOST) | $(b modem_send_request insns "$f") | | $(b modem_send_request stack "$f") | |"
  echo "| chunk: receive (\`wait_readable\` + \`receive_from\`: +UUSORF, AT+USORF, 524 B in $(avg chunk_receive uart_reads "$f") UART reads) | $rc | $((rc * 2)) | $(mx chunk_receive stack "$f") | |"
  echo "| chunk: authenticate (\`DeviceEndpoint::handle_datagram\`) | $au | $((au * 2)) | $(mx chunk_authenticate stack "$f") | |"
  echo "| chunk: hash + program (\`Updater::handle_chunk\`, RAM-backed flash) | $hp | $((hp * 2)) | $(mx chunk_hash_program stack "$f") | |"
  echo "| **per 512 B chunk, end to end** (sum) | **$tot** | **$((tot * 2))** | $(printf '%s\n%s\n%s\n' "$(mx chunk_receive stack "$f")" "$(mx chunk_authenticate stack "$f")" "$(mx chunk_hash_program stack "$f")" | sort -n | tail -1) | $(us $((tot * 2))) per KiB |"
}

read -r fw_flash fw_ram fw_text fw_ro fw_data fw_bss < <(sections "$elf")
read -r bl_flash bl_ram _ < <(sections "$work/bootloader")
stack="not measured in this run"
if [ -n "$qlog" ]; then
  n=$(tr -d '\r' <"$qlog" | sed -n 's/.*stack peak: \([0-9]*\) B.*/\1/p' | sort -n | tail -n 1)
  [ -n "$n" ] && stack="$n B (from $(basename "$qlog"))" || stack="not in the log given ($(basename "$qlog"))"
fi
kib() { awk -v n="$1" 'BEGIN {printf "%.1f KiB", n / 1024}'; }
status=0
verdict() { # value limit aim name
  if [ "$1" -ge "$2" ]; then echo "**over the limit**"; else
    if [ -n "${3:-}" ] && [ "$1" -gt "$3" ]; then echo "under the limit, over the aim"; else echo "within"; fi
  fi
}
[ "$fw_flash" -ge "$FLASH_LIMIT" ] && status=1
[ "$fw_ram" -ge "$RAM_LIMIT" ] && status=1

report() {
  cat <<EOF
# Footprint of the Electron firmware

Regenerated by \`bash scripts/footprint.sh\` (all figures below; \`--check\` is the CI form,
which fails if the firmware exceeds a hard limit). Toolchain: $(rustc --version | cut -d' ' -f1-2);
release profile of \`examples/electron/device\`: opt-level "z", fat LTO, one codegen unit,
\`panic = "abort"\`, plus the per-crate overrides in its \`Cargo.toml\` (below).

## Targets

| | measured | limit | aim | |
|---|---:|---:|---:|---|
| firmware flash (.vector_table + .text + .rodata + .data) | $fw_flash B ($(kib "$fw_flash")) | 128 KiB | 96 KiB | $(verdict "$fw_flash" "$FLASH_LIMIT" "$FLASH_AIM") |
| firmware static RAM (.data + .bss + .uninit) | $fw_ram B ($(kib "$fw_ram")) | 32 KiB | | $(verdict "$fw_ram" "$RAM_LIMIT") |
| firmware peak stack | $stack | | | |
| bootloader flash | $bl_flash B ($(kib "$bl_flash")), static RAM $bl_ram B | 16 KiB (sector 0) | | $( [ "$bl_flash" -le 16384 ] && echo "fits sector 0" || echo "needs more than sector 0") |
EOF
  if [ -n "$boot_sig" ]; then
    read -r bs_flash bs_ram _ < <(sections "$boot_sig")
    echo "| bootloader with \`verify-signature\` | $bs_flash B ($(kib "$bs_flash")), static RAM $bs_ram B | 16 KiB (sector 0) | | $( [ "$bs_flash" -le 16384 ] && echo "fits sector 0" || echo "needs more than sector 0") |"
  else
    echo "| bootloader with \`verify-signature\` | the bootloader has no such feature in this build | | | |"
  fi
  cat <<EOF

The firmware ELF measured: \`${elf#"$root/"}\`. The peak stack of the firmware comes from its
own QEMU run (\`scripts/electron-qemu.sh\`, console line \`stack peak: N B\`), passed with
\`--qemu-log\`.

## Instructions (Cortex-M3, QEMU netduino2, \`-icount shift=0\`)

$(if [ "$have_qemu" = 1 ]; then bench_table "$work/bench.txt"; else echo "Not measured in this run (qemu-system-arm not installed)."; fi)

How these are counted (\`examples/electron/device/bench\`, \`electron-bench\`):

* Under \`-icount shift=0\` QEMU's virtual clock advances 1 ns per executed instruction, and
  QEMU 7.2's STM32F2 timers count that clock at the 1 GHz \`clock-frequency\` its STM32F205 SoC
  gives them (\`hw/arm/stm32f205_soc.c\`; \`hw/timer/stm32f2xx_timer.c\`: ticks = ns × freq / 1e9
  / (PSC + 1)). TIM2, 32 bits with PSC = 0, therefore counts exactly one per instruction;
  the bench checks it (\`call_nop2000\` − \`call_nop1000\` must be 1,000:
  $(b calibration call_nop1000 "$work/bench.txt") and $(b calibration call_nop2000 "$work/bench.txt") here) and subtracts the
  fixed cost of a measurement ($(b calibration overhead "$work/bench.txt") instructions: the counter read and the call). SysTick would count the 120 MHz
  \`sysclk\` of \`hw/arm/netduino2.c\` (one tick per 8⅓ instructions, or per 66⅔ on its /8
  reference clock): not used.
* Instructions are not cycles: at 120 MHz with 3 flash wait states most Thumb-2 instructions
  take one cycle (the F2's ART accelerator, prefetch and instruction cache, hides most flash
  wait states), loads, taken branches and multiplies more; the time column is the lower
  bound, instructions / 120 MHz.
* Inputs are made on the host at build time with the same crates (\`bench/build.rs\`): the
  manifest is signed with ota-core's \`build_signed\` (Ed25519), the cloud's answers come
  from cloud-proto's server side (\`handle_datagram\`, \`respond\`, \`serve_chunks\`), and the
  modem's bytes are recorded from \`modem-ublox-emu\` (SARA-U260) while the host build of
  \`modem-ublox\` talks to it through a loopback UDP "cloud". The bench replays them strictly
  (a write that differs from the recorded one fails), checks every result against the host's
  (the frame, the digest, each chunk accepted) and exits non-zero otherwise.
* **Chunk size.** The Electron fetches 512-byte chunks: a 1,024-byte chunk frame (4 + 1,024 +
  8 bytes) does not fit one SARA UDP datagram (\`AT+USORF\` reads at most 1,024 bytes). The
  chunk rows are the mean over $(b chunk_receive insns "$work/bench.txt" | wc -l) chunks of 512 B; "per KiB" is twice that.
* **What "receive" is.** The driver's work for one datagram with its bytes already in the
  UART (the \`+UUSORF\` URC, \`AT+USORF=0,1024\`, parsing the 524 binary bytes), through an
  in-memory \`embedded-io\` UART: the wait for the bytes at the baud rate is not in it, nor is
  a real USART driver's per-byte register access.
* **What "program" is.** ota-core's \`handle_chunk\` (digest check against the manifest, slot
  check, write, marker) against a RAM-backed \`NorFlash\` with the STM32F205's sector map
  (QEMU's flash is read-only): the flash controller's program time is not in it, only the
  CPU's work (on the board the driver waits for each word's programming to end).
* Peak stack: the free stack is painted before each piece and the deepest overwritten word
  read after it: the piece's own frames, not its caller's.

## Flash and static RAM per crate

Attribution: each instruction (and literal-pool word) of .text is charged to the crate of the
innermost function it was inlined from (after LTO most of a crate's code is inlined into its
callers; the innermost frame is the code's author); functions that belong to a generic
crate's code instantiated for another crate's type count as the generic's crate (\`heapless\`
code stays \`heapless\`); read-only data to the crate named by its symbol or, for unnamed
constants, by the code or data that points at it. "unattributed" is what neither names
(alignment padding, data nothing points at directly). The .rodata split is approximate: an
unnamed constant is taken to run up to the next address anything points at, so a blob no
code names directly (an \`include_bytes!\` input of the bench, say) is charged to the constant
before it. .text is charged instruction by instruction, .data and .bss symbol by symbol.

### The firmware (\`${elf#"$root/"}\`)

$(fw_table="$(crate_table "$elf")"; echo "$fw_table"
  if echo "$fw_table" | grep -q '^| ota_core | 0 | 0 | 0 | 0 |'; then
    echo
    echo "**This firmware ELF links no code of ota-core: it is not the Electron firmware yet (the"
    echo "workspace skeleton?), so its figures and the target check above say nothing about it.**"
  fi)

### For reference: electron-bench (the same SDK crates, plus its inputs and the bench)

$(crate_table "$T/electron-bench")
EOF
  if [ -s "$work/sweep.md" ]; then
    echo
    cat "$work/sweep.md"
  fi
  echo
  echo "## Per-crate opt-level overrides in effect"
  echo
  echo "From \`examples/electron/device/Cargo.toml\` (the trade each one makes is in its comment):"
  echo
  echo '```toml'
  awk '/^# Per-crate opt-level overrides/,0' "$dev/Cargo.toml"
  echo '```'
}

# The per-crate opt-level sweep: the bench built with one crate at another opt-level.
if [ "$sweep" = 1 ]; then
  echo "==> opt-level sweep (z / s / 2 per crate; a bench build each)" >&2
  export CARGO_TARGET_DIR="$dev/target/footprint-sweep"
  ST="$CARGO_TARGET_DIR/thumbv7m-none-eabi/release/electron-bench"
  {
    echo "## Per-crate opt-level (measured)"
    echo
    echo "The bench rebuilt with one crate at another opt-level, the rest at \"z\" (with the"
    echo "overrides in \`examples/electron/device/Cargo.toml\` removed for the run): flash of the"
    echo "whole bench binary, and the instructions of the pieces that crate dominates."
    echo
    echo "| crate | opt-level | bench flash (B) | Δ flash | verify | SHA-256 per KiB | check-in auth | chunk receive | chunk auth | chunk hash+program |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  } >"$work/sweep.md"
  base_flash=""
  for spec in "- z" sha2:s sha2:2 ed25519-compact:s ed25519-compact:2 ota-core:s ota-core:2 \
      cloud-proto:s cloud-proto:2 modem-ublox:s modem-ublox:2 hmac:s hmac:2; do
    pkg="${spec%%[: ]*}" lvl="${spec##*[: ]}"
    args=()
    # The committed overrides off: every crate at "z" unless this run changes it.
    for p in sha2 ed25519-compact ota-core cloud-proto modem-ublox hmac; do
      l='"z"'; [ "$p" = "$pkg" ] && l="$lvl"
      case "$l" in s | z) l="\"$l\"" ;; esac # TOML: "s" and "z" are strings, 2 a number
      args+=(--config "profile.release.package.$p.opt-level=$l")
    done
    cargo build -q --release -p electron-bench "${args[@]}"
    run_bench "$ST" "$work/sweep-bench.txt"
    read -r f _ < <(sections "$ST")
    [ -z "$base_flash" ] && base_flash=$f
    s="$work/sweep-bench.txt"
    printf '| %s | %s | %d | %+d | %d | %d | %d | %d | %d | %d |\n' "$pkg" "$lvl" "$f" $((f - base_flash)) \
      "$(b verify_manifest insns "$s")" $(($(b sha256 insns "$s") / 16)) \
      $(($(b checkin_send insns "$s") + $(b checkin_reply insns "$s"))) \
      "$(avg chunk_receive insns "$s")" "$(avg chunk_authenticate insns "$s")" "$(avg chunk_hash_program insns "$s")" \
      >>"$work/sweep.md"
    echo "    $spec: $f B" >&2
  done
  sed -i 's/^| - | z |/| (all at z) | z |/' "$work/sweep.md"
  unset CARGO_TARGET_DIR
fi

if [ "$check" = 1 ]; then
  report
else
  report >"$root/docs/footprint.md"
  echo "wrote docs/footprint.md" >&2
fi
echo "firmware: flash $fw_flash B (limit $FLASH_LIMIT), static RAM $fw_ram B (limit $RAM_LIMIT)" >&2
if [ "$status" != 0 ]; then
  echo "FAILED: the firmware exceeds a hard limit (flash < 128 KiB, static RAM < 32 KiB)" >&2
fi
exit "$status"
