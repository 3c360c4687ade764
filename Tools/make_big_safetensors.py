#!/usr/bin/env python3
"""Writes a large synthetic safetensors file (weight-like F32 tensors) without holding it in memory.

Usage: make_big_safetensors.py OUT SIZE_GIB [--seed N]
Tensors are 64 MiB each (4096 x 4096 F32, normal with std 0.02), generated and written one at a time.
"""
import argparse
import json
import struct
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("size_gib", type=float)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.size_gib <= 0:
        print("make_big_safetensors: SIZE_GIB must be positive", file=sys.stderr)
        return 2
    rows = cols = 4096
    per = rows * cols * 4
    count = max(1, int(a.size_gib * (1 << 30) // per))
    header, offset = {}, 0
    for i in range(count):
        header[f"layers.{i}.weight"] = {"dtype": "F32", "shape": [rows, cols], "data_offsets": [offset, offset + per]}
        offset += per
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    rng = np.random.default_rng(a.seed)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for i in range(count):
            f.write(rng.normal(0, 0.02, size=(rows, cols)).astype("<f4").tobytes())
    print(f"wrote {a.out}: {count} tensors, {8 + len(blob) + offset} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
