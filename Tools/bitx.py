#!/usr/bin/env python3
"""Reference implementation of BitX (ZipLLM's base-relative compression) for measuring sizes.

Usage: Tools/bitx.py BASE.safetensors FINETUNE.safetensors

For each tensor of FINETUNE present in BASE by name with the same dtype and shape: XOR the two
bit patterns element by element, split the XOR into byte planes (plane k = byte k of every
element, little-endian), compress each plane with zstd level 3 and add up the compressed sizes.
Every other tensor of FINETUNE, and its header (8-byte length + JSON), is compressed with zstd
level 3 on its own. Prints one JSON line:
  {"raw_bytes": size of FINETUNE, "bitx_bytes": total compressed, "ratio": bitx/raw,
   "xor_tensors": N, "alone_tensors": M}
Deterministic; needs numpy and zstandard.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stlib  # noqa: E402

try:
    import zstandard
except ImportError:
    stlib.die("needs the zstandard package (Tools/setup.sh installs it)")

LEVEL = 3


def zsize(cctx, data):
    return len(cctx.compress(data)) if data else 0


def planes(xor_bytes, itemsize):
    """Byte planes of a little-endian element array: plane k holds byte k of each element."""
    b = np.frombuffer(xor_bytes, dtype=np.uint8).reshape(-1, itemsize)
    return [np.ascontiguousarray(b[:, k]).tobytes() for k in range(itemsize)]


def bitx(base_path, ft_path):
    _, base = stlib.read(base_path)
    _, ft = stlib.read(ft_path)
    _, _, prefix = stlib.read_header(ft_path)
    by_name = {t.name: t for t in base}
    cctx = zstandard.ZstdCompressor(level=LEVEL)
    total = zsize(cctx, prefix)
    n_xor = n_alone = 0
    for t in ft:
        b = by_name.get(t.name)
        if b is not None and b.dtype == t.dtype and b.shape == t.shape and t.data:
            size = np.dtype(stlib.NP_DTYPES[t.dtype]).itemsize
            x = np.bitwise_xor(np.frombuffer(t.data, np.uint8), np.frombuffer(b.data, np.uint8)).tobytes()
            total += sum(zsize(cctx, p) for p in planes(x, size))
            n_xor += 1
        else:
            total += zsize(cctx, t.data)
            n_alone += 1
    raw = os.path.getsize(ft_path)
    return {"raw_bytes": raw, "bitx_bytes": total, "ratio": round(total / raw, 4),
            "xor_tensors": n_xor, "alone_tensors": n_alone}


def main():
    if len(sys.argv) != 3:
        stlib.die("usage: bitx.py BASE.safetensors FINETUNE.safetensors")
    for p in sys.argv[1:]:
        if not os.path.isfile(p):
            stlib.die(f"{p}: no such file")
    try:
        result = bitx(sys.argv[1], sys.argv[2])
    except stlib.FormatError as e:
        stlib.die(str(e))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
