#!/usr/bin/env python3
"""Casts every F32 tensor of a safetensors file to BF16 or F16; other dtypes are copied as they are.

Usage: Tools/cast_safetensors.py IN.safetensors OUT.safetensors --dtype bf16|f16

Rounding is to nearest, ties to even. BF16 is computed on the uint32 bit patterns (NaN stays a
quiet NaN with its sign; values past the BF16 range become +-inf); F16 uses numpy's astype, which
rounds the same way (overflow to +-inf). Tensor order, names, shapes and __metadata__ are kept;
the header is rewritten with the usual space padding to a multiple of 8. Deterministic.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stlib  # noqa: E402
from stlib import Tensor  # noqa: E402

USAGE = "usage: cast_safetensors.py IN.safetensors OUT.safetensors --dtype bf16|f16"


def cast(tensors, dtype):
    out = []
    for t in tensors:
        if t.dtype != "F32":
            out.append(t)
        elif dtype == "bf16":
            out.append(Tensor.from_array(t.name, "BF16", stlib.f32_to_bf16_bits(t.array())))
        else:
            out.append(Tensor.from_array(t.name, "F16", t.array().astype("<f2")))
    return out


def main():
    args = sys.argv[1:]
    dtype = None
    if "--dtype" in args:
        i = args.index("--dtype")
        if i + 1 >= len(args):
            stlib.die(USAGE)
        dtype = args[i + 1].lower()
        del args[i:i + 2]
    if len(args) != 2 or dtype not in ("bf16", "f16"):
        stlib.die(USAGE)
    src, dst = args
    if not os.path.isfile(src):
        stlib.die(f"{src}: no such file")
    try:
        meta, tensors = stlib.read(src)
    except stlib.FormatError as e:
        stlib.die(str(e))
    out = cast(tensors, dtype)
    stlib.write(dst, out, meta)
    n = sum(1 for t in tensors if t.dtype == "F32")
    print(f"cast_safetensors: {n} of {len(tensors)} tensors F32 -> {dtype.upper()}, wrote {os.path.getsize(dst)} bytes to {dst}")


if __name__ == "__main__":
    main()
