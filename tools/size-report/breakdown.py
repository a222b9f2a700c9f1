#!/usr/bin/env python3
"""Per-function flash breakdown of one crate in the size-report probe.

`nm --size-sort` alone is misleading after LTO: most of the driver is inlined into the probe's
`main`, so its biggest "symbol" is the probe. This script reads the disassembly with the
inlining limits from the debug info (`llvm-objdump --debug-inlined-funcs=limits-only`) and
charges every instruction (and literal pool word) to

* its *owner*: the outermost function of the crate in its inline chain (the crate's function
  the probe called, with everything inlined into it), and
* its *leaf*: the innermost function of the crate (the code the bytes were written in),
  summed by module as well;

bytes outside the crate are charged to their symbol (core::fmt, compiler_builtins' u64
division, memcpy …), with a note of which crate function pulled them in where that is known.

Usage: breakdown.py ELF CRATE [TOP]   (llvm-objdump and llvm-nm from PATH or $LLVM_BIN)
"""

import os
import re
import subprocess
import sys
from collections import defaultdict


def tool(name):
    d = os.environ.get("LLVM_BIN")
    return os.path.join(d, name) if d else name


def clean(name):
    """Readable Rust path: demangle the `$LT$`-style escapes, drop the hash."""
    for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$u7b$", "{"),
                 ("$u7d$", "}"), ("$C$", ","), ("$RF$", "&"), ("$u5b$", "["),
                 ("$u5d$", "]"), ("..", "::"), ("$BP$", "*"), ("$u27$", "'")):
        name = name.replace(a, b)
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    # `_<impl modem_ublox::modem::Modem<U,D,…>>::register` -> `Modem::register (network)`
    m = re.match(r"^(\w+)::(\w+)::_?<impl [\w:]*::(\w+)<[^>]*>>::(.*)$", name)
    if m:
        return f"{m.group(1)}::{m.group(2)}::{m.group(3)}::{m.group(4)}"
    m = re.match(r"^(\w+)::(\w+)::(\w+)<[^>]*>::(.*)$", name)
    if m:
        return f"{m.group(1)}::{m.group(2)}::{m.group(3)}::{m.group(4)}"
    return name


def main():
    elf, crate = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    dis = subprocess.run(
        [tool("llvm-objdump"), "-d", "-C", "--no-show-raw-insn",
         "--debug-inlined-funcs=limits-only", elf],
        check=True, capture_output=True, text=True).stdout
    # Symbol ends, for the size of the last instruction of each symbol.
    nm = subprocess.run([tool("llvm-nm"), "-C", "-S", "--size-sort", elf], check=True,
                        capture_output=True, text=True).stdout
    sym_end = {}
    rodata = []
    for line in nm.splitlines():
        p = line.split(None, 3)
        if len(p) == 4:
            addr, size, kind, name = int(p[0], 16), int(p[1], 16), p[2], p[3]
            sym_end[addr] = addr + size
            if kind in "rR" and crate in name:
                rodata.append((size, clean(name)))

    sym_re = re.compile(r"^([0-9a-f]+) <(.*)>:$")
    ins_re = re.compile(r"^\s*([0-9a-f]+):")
    insns = []  # (addr, symbol); symbol None marks a symbol start
    sym = None
    for line in dis.splitlines():
        m = sym_re.match(line)
        if m:
            sym = m.group(2)
            insns.append((int(m.group(1), 16), None))
            continue
        m = ins_re.match(line)
        if m and sym is not None:
            insns.append((int(m.group(1), 16), sym))
    # The inline chain of every instruction, innermost frame first (llvm-objdump's own
    # inlining display skips inlined functions with discontiguous ranges: most of them here).
    addrs = [a for a, s in insns if s is not None]
    out = subprocess.run(
        [os.environ.get("SYMBOLIZER", "llvm-symbolizer"), "--obj=" + elf, "--inlining",
         "--functions=linkage"],
        input="".join(f"0x{a:x}\n" for a in addrs), check=True, capture_output=True,
        text=True).stdout
    chains = []
    for block in out.strip("\n").split("\n\n"):
        lines = block.split("\n")
        chains.append(tuple(reversed(lines[0::2])))  # outermost first
    if len(chains) != len(addrs):
        sys.exit(f"symbolizer gave {len(chains)} answers for {len(addrs)} addresses")
    it = iter(chains)
    insns = [(a, s, next(it) if s is not None else None) for a, s in insns]

    owner = defaultdict(int)
    leaf = defaultdict(int)
    module = defaultdict(int)
    outside = defaultdict(int)
    fmt_bytes = 0
    crate_total = 0
    total = 0
    cur_end = None
    for i, (addr, sym, chain) in enumerate(insns):
        if sym is None:
            cur_end = sym_end.get(addr)
            continue
        nxt = insns[i + 1][0] if i + 1 < len(insns) else None
        if nxt is None or insns[i + 1][1] is None:
            nxt = cur_end if cur_end is not None else addr + 2
        size = max(0, nxt - addr)
        total += size
        chain = tuple(clean(c) for c in chain)
        ours = [c for c in chain if c.startswith(crate + "::") or c.lstrip("_").startswith("<" + crate)]
        if any("core::fmt" in clean(c) or "core..fmt" in c for c in chain):
            fmt_bytes += size
        if ours:
            crate_total += size
            owner[clean(ours[0])] += size
            lf = clean(ours[-1])
            leaf[lf] += size
            mod = lf.split("::")[1] if lf.startswith(crate + "::") else "(trait impls)"
            module[mod] += size
        else:
            s = clean(sym)
            outside[s] += size

    def table(title, d, n):
        print(f"\n{title}")
        for name, size in sorted(d.items(), key=lambda kv: -kv[1])[:n]:
            print(f"  {size:7d}  {name}")

    print(f".text bytes in {crate} code (after inlining): {crate_total}"
          f"  (of {total} in the binary; core::fmt in any inline chain: {fmt_bytes})")
    table("by module (innermost function of the crate)", module, 20)
    table(f"by owner: the outermost {crate} function, with what is inlined into it", owner, top)
    table(f"by leaf: the innermost {crate} function", leaf, top)
    table("outside the crate (symbol), the probe and runtime included", outside, 25)
    if rodata:
        table(f"named read-only data of {crate}", dict((n, s) for s, n in rodata), 20)


if __name__ == "__main__":
    main()
