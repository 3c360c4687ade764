#!/usr/bin/env python3
"""Test oracle: the Python `safetensors` package must load FILE and find the same tensors as ORIGINAL.

Usage: check_safetensors.py ORIGINAL FILE
Compares every tensor's name, dtype, shape and bytes (via safetensors.deserialize, which handles
every dtype including BF16) and loads FILE with safe_open(framework="numpy") for the dtypes numpy
has. Exit 0 when all match; 1 with one line naming the first difference.
"""
import sys

from safetensors import deserialize, safe_open


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    original, got = sys.argv[1], sys.argv[2]
    with open(original, "rb") as f:
        want = dict(deserialize(f.read()))
    with open(got, "rb") as f:
        have = dict(deserialize(f.read()))
    if sorted(want) != sorted(have):
        print(f"tensor names differ: {sorted(set(want) ^ set(have))}")
        return 1
    for name, spec in want.items():
        other = have[name]
        for key in ("dtype", "shape", "data"):
            if spec[key] != other[key]:
                print(f"tensor {name}: {key} differs")
                return 1
    numpy_dtypes = {"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL"}
    with safe_open(got, framework="numpy") as f:
        for name in f.keys():
            if want[name]["dtype"] in numpy_dtypes:
                array = f.get_tensor(name)
                if list(array.shape) != list(want[name]["shape"]):
                    print(f"tensor {name}: numpy shape {array.shape} differs")
                    return 1
    print(f"ok: {len(want)} tensors match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
