#!/usr/bin/env python3
"""Counts guest instructions executed between two marker functions in a QEMU log written with
`-d in_asm,exec,nochain`: every executed translation block adds the number of instructions
QEMU translated for it. Usage: count-insns.py LOG START_ADDR END_ADDR (hex)."""
import re
import sys

log, start, end = sys.argv[1], int(sys.argv[2], 16) & ~1, int(sys.argv[3], 16) & ~1
sizes = {}          # TB start pc -> instruction count (latest translation)
cur = None
counting = False
total = 0
with open(log, errors="replace") as f:
    for line in f:
        if line.startswith("IN:"):
            cur = None
            continue
        m = re.match(r"^0x([0-9a-f]{8}):\s", line)
        if m:
            pc = int(m.group(1), 16)
            if cur is None:
                cur = pc
                sizes[cur] = 0
            sizes[cur] += 1
            continue
        m = re.match(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/", line)
        if m:
            cur = None
            pc = int(m.group(1), 16)
            if pc == start:
                counting, total = True, 0
                continue
            if pc == end and counting:
                print(total)
                sys.exit(0)
            if counting:
                total += sizes.get(pc, 0)
sys.exit("markers not found")
