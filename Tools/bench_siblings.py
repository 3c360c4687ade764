#!/usr/bin/env python3
"""Base choice among sibling fine-tunes, on a real base and fine-tune pair (issue 14).

Usage: Tools/bench_siblings.py BASE.safetensors FINETUNE.safetensors [--siblings 0,4,12,16]
                               [--dtype f32|bf16] [--tpstore PATH] [--work DIR]

A hub holds a base and many fine-tunes of it made by other people; a new fine-tune of the same
base arrives and is put with automatic base choice. The siblings here are as large a change as the
real fine-tune and independent of it: per float tensor, sibling k = base + the real fine-tune's
difference (fine-tune − base, in float64) with its elements shuffled by seed k. So each sibling
is exactly as far from the base as the real fine-tune is, but shares none of its update: the true
base is the right choice, a sibling costs about half a bit more per element.

For every N: a store gets the base (no base), then N siblings put automatically (as a hub would),
then the real fine-tune put automatically. Printed: the base that was chosen, the fine-tune's
stored bytes, and their ratio to the bytes of the same put against the true base (measured in a
store holding only the base). `--dtype bf16` casts base and fine-tune to BF16 first (round to
nearest even). Prints a table; asserts nothing.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stlib  # noqa: E402
from stlib import Tensor  # noqa: E402

FLOATS = ("F32", "F16", "BF16")


def as_f64(t):
    a = t.array()
    return (stlib.bf16_bits_to_f32(a) if t.dtype == "BF16" else a).astype(np.float64)


def from_f64(t, a):
    a32 = a.astype("<f4")
    if t.dtype == "BF16":
        return Tensor.from_array(t.name, "BF16", stlib.f32_to_bf16_bits(a32))
    return Tensor.from_array(t.name, t.dtype, a32.astype(stlib.NP_DTYPES[t.dtype]))


def cast(tensors, dtype):
    if dtype == "f32":
        return tensors
    return [Tensor.from_array(t.name, "BF16", stlib.f32_to_bf16_bits(t.array().astype("<f4"))) if t.dtype == "F32" else t
            for t in tensors]


def sibling(base, ft, seed):
    rng = np.random.default_rng(seed)
    out = []
    for b, f in zip(base, ft):
        if b.dtype not in FLOATS or b.numel == 0 or b.shape != f.shape:
            out.append(b)
            continue
        d = (as_f64(f) - as_f64(b)).reshape(-1)
        out.append(from_f64(b, as_f64(b).reshape(-1) + d[rng.permutation(d.size)]))
    return out


def run(tp, *args):
    r = subprocess.run([tp, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"tpstore {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def put(tp, store, name, path, *extra):
    return json.loads(run(tp, "put", "--store", store, name, path, "--json", *extra))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("base")
    p.add_argument("finetune")
    p.add_argument("--siblings", default="0,4,12,16")
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    p.add_argument("--tpstore", default=".build/release/tpstore")
    p.add_argument("--work", default="bench-out/siblings")
    a = p.parse_args()
    counts = [int(x) for x in a.siblings.split(",")]
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    meta_b, base = stlib.read(a.base)
    meta_f, ft = stlib.read(a.finetune)
    if [(t.name, t.dtype, t.shape) for t in base] != [(t.name, t.dtype, t.shape) for t in ft]:
        sys.exit("base and fine-tune must have the same tensors (names, dtypes, shapes) in the same order")
    base, ft = cast(base, a.dtype), cast(ft, a.dtype)
    paths = {"base": f"{a.work}/base.safetensors", "ft": f"{a.work}/ft.safetensors"}
    stlib.write(paths["base"], base, meta_b)
    stlib.write(paths["ft"], ft, meta_f)
    for k in range(max(counts)):
        paths[f"sib{k}"] = f"{a.work}/sib{k}.safetensors"
        stlib.write(paths[f"sib{k}"], sibling(base, ft, 1000 + k), meta_f)

    ref = f"{a.work}/ref"
    run(a.tpstore, "init", "--store", ref)
    put(a.tpstore, ref, "base@1", paths["base"], "--no-base")
    true_bytes = put(a.tpstore, ref, "ft@1", paths["ft"], "--base", "base@1")["storedBytes"]
    raw = os.path.getsize(paths["ft"])
    line = f"{a.dtype.upper()} fine-tune {raw:,} bytes; against the true base {true_bytes:,} stored bytes"
    if max(counts) > 0:  # what the wrong choice would cost: the same put against one sibling
        wrong_store = f"{a.work}/ref-sibling"
        run(a.tpstore, "init", "--store", wrong_store)
        put(a.tpstore, wrong_store, "sib0@1", paths["sib0"], "--no-base")
        wrong = put(a.tpstore, wrong_store, "ft@1", paths["ft"], "--base", "sib0@1")["storedBytes"]
        line += f", against a sibling {wrong:,} ({wrong / true_bytes:.3f}x)"
    print(line)
    print(f"| siblings | chosen base | stored bytes | / true base |")
    print(f"|---|---|---|---|")
    for n in counts:
        store = f"{a.work}/store{n}"
        run(a.tpstore, "init", "--store", store)
        put(a.tpstore, store, "base@1", paths["base"], "--no-base")
        for k in range(n):
            put(a.tpstore, store, f"sib{k}@1", paths[f"sib{k}"])
        r = put(a.tpstore, store, "ft@1", paths["ft"])
        chosen = (r.get("base") or "none").split("@")[0]
        print(f"| {n} | {chosen} | {r['storedBytes']:,} | {r['storedBytes'] / true_bytes:.3f} |", flush=True)
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
