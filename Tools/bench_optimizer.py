#!/usr/bin/env python3
"""Benchmark of the optimizer's annotation pass (`tpstore optimize`).

1. Corpus: puts the corpus model (default .corpus/minilm-base, all-MiniLM-L6-v2) into a fresh
   store, then times `tpstore optimize` without calibration and with a calibration file made by
   Tools/make_calibration.py (real activations from a numpy BERT forward pass). Reports wall time
   and throughput in MB of linear weights (as stored) per second, and the recommendation.
2. Scaling: a synthetic model of square matrices (256 ... 2048) with synthetic calibration
   inputs; reports per-tensor seconds against matrix size (tensors run two at a time, so these are
   per-core times under load).

Usage: Tools/bench_optimizer.py [--tpstore .build/release/tpstore] [--model DIR] [--samples 256]
Build first: swift build -c release --product tpstore
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def optimize(tp, store, target, calibration=None):
    cmd = [tp, "optimize", "--store", store, target, "--json"]
    if calibration:
        cmd += ["--calibration", calibration]
    t0 = time.perf_counter()
    out = run(cmd)
    wall = time.perf_counter() - t0
    return json.loads(out), wall


def report(label, a, wall):
    linear_mb = sum(t["shape"][0] * t["shape"][1] * {"F32": 4, "F16": 2, "BF16": 2}[t["dtype"]] for t in a["tensors"]) / 1e6
    rec = a.get("recommendation") or {}
    print(f"{label}: {a['linearTensors']} linear weights, {linear_mb:.1f} MB; pass {a['seconds']:.2f} s "
          f"(process wall {wall:.2f} s) -> {linear_mb / a['seconds']:.1f} MB/s; error measure: {a['errorMeasure']}")
    for m in a["methods"]:
        out = m.get("relativeOutputError")
        print(f"    {m['method']:15s} {m['bitsPerWeight']:6.3f} bits/w  weight err {m['relativeWeightError']:.5f}  "
              f"output err {'-' if out is None else f'{out:.5f}'}  ${m['gpu']['dollarsPerMonth']:.0f}/month")
    print(f"    recommended: {rec.get('method')} ({rec.get('reason')})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tpstore", default=os.path.join(ROOT, ".build/release/tpstore"))
    ap.add_argument("--model", default=os.path.join(ROOT, ".corpus/minilm-base"))
    ap.add_argument("--samples", type=int, default=256)
    args = ap.parse_args()
    tp = args.tpstore
    work = tempfile.mkdtemp(prefix="tenpak-bench-opt-")
    try:
        store = os.path.join(work, "store")
        print(f"cores: {os.cpu_count()}, tpstore: {tp}")
        run([tp, "put", "--store", store, "corpus@v1", args.model])
        a, wall = optimize(tp, store, "corpus@v1")
        report("corpus, no calibration", a, wall)
        calib = os.path.join(work, "calib.safetensors")
        t0 = time.perf_counter()
        print("   ", run([sys.executable, os.path.join(ROOT, "Tools/make_calibration.py"), args.model, calib,
                          "--samples", str(args.samples)]).strip(), f"({time.perf_counter() - t0:.1f} s)")
        a, wall = optimize(tp, store, "corpus@v1", calib)
        report(f"corpus, calibration ({args.samples} samples: half fit, half held out)", a, wall)
        by_shape = {}
        for t in a["tensors"]:
            by_shape.setdefault(tuple(t["shape"]), []).append(t["seconds"])
        print("    per tensor (calibrated):")
        for shape, secs in sorted(by_shape.items(), key=lambda kv: kv[0][0] * kv[0][1]):
            print(f"      {shape[0]:5d}x{shape[1]:<5d} x{len(secs):2d}: {np.mean(secs):.3f} s each")

        # Scaling with matrix size.
        model = os.path.join(work, "scaling")
        os.makedirs(model)
        rng = np.random.default_rng(0)
        sizes = [256, 512, 1024, 2048]
        save_file({f"layers.{n}.weight": (rng.standard_normal((n, n)) * 0.02).astype(np.float32) for n in sizes},
                  os.path.join(model, "model.safetensors"))
        run([tp, "put", "--store", store, "--no-base", "scaling@v1", model])
        scal = os.path.join(work, "scaling-calib.safetensors")
        run([sys.executable, os.path.join(ROOT, "Tools/make_calibration.py"), model, scal, "--samples", str(args.samples), "--synthetic"])
        for label, c in (("no calibration", None), ("calibration", scal)):
            a, _ = optimize(tp, store, "scaling@v1", c)
            print(f"scaling, {label} (pass {a['seconds']:.2f} s):")
            prev = None
            for t in sorted(a["tensors"], key=lambda t: t["shape"][0]):
                n = t["shape"][0]
                growth = f"  x{t['seconds'] / prev:.1f} for 2x n" if prev else ""
                print(f"      {n:5d}x{n:<5d}: {t['seconds']:.3f} s ({n * n * 4 / 1e6 / t['seconds']:.1f} MB/s){growth}")
                prev = t["seconds"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
