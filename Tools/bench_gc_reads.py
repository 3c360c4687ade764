#!/usr/bin/env python3
"""HTTP range reads through `tpstore serve` while `tpstore gc` repacks gigabytes beside it.

Makes a local store holding:
  - `bench/big@v1`: one safetensors file whose tensors alternate between ones `bench/keep@v1` also holds and
    larger ones nobody else holds (so after `rm big/v1` every pack is under half live and gc
    repacks all of them: it copies the live frames and deletes the old packs);
  - `bench/keep@v1`: the shared tensors;
  - `bench/small@v1`: another model, the one the readers read.
Then starts one `serve` (decoded-chunk cache off, so every read decodes from packs), removes
`bench/big@v1`, starts gc, and reads random ranges of `bench/small@v1` over HTTP from several threads until
gc has finished. Every answer is compared with the expected bytes. Prints the gc's figures and the
read latencies (idle, and during gc): count, failures, median, 99th percentile, maximum.

Usage: Tools/bench_gc_reads.py --tpstore .build/release/tpstore [--gib 3] [--threads 4] [--keep]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def safetensors(tensors):
    """tensors: list of (name, float32 array) -> bytes of a safetensors file."""
    header, offset = {}, 0
    for name, array in tensors:
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(a.tobytes() for _, a in tensors)


def write_model(directory, tensors):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(safetensors(tensors))


def run(tpstore, store, *args):
    started = time.monotonic()
    result = subprocess.run([tpstore, args[0], "--store", store, *args[1:]], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"tpstore {' '.join(args)} failed: {result.stderr.strip()}")
    return time.monotonic() - started


def start_server(tpstore, store):
    server = subprocess.Popen([tpstore, "serve", "--store", store, "--listen", "127.0.0.1:0", "--cache-mib", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    line = server.stdout.readline()
    if not line.startswith("listening on http://"):
        server.kill()
        sys.exit(f"serve did not start: {line!r}")
    host, port = line.strip().rsplit("/", 1)[-1].rsplit(":", 1)
    return server, host, int(port)


class Readers:
    """Threads reading random ranges of one file until stopped; latencies and failures per phase."""

    def __init__(self, host, port, path, expected, threads, seed):
        self.host, self.port, self.path, self.expected = host, port, path, expected
        self.lock = threading.Lock()
        self.latencies, self.failures = [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(seed + i,), daemon=True) for i in range(threads)]

    def loop(self, seed):
        rng = random.Random(seed)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        while not self.stop.is_set():
            start = rng.randrange(len(self.expected))
            end = min(len(self.expected), start + rng.randrange(1, 1 << 20)) - 1
            began = time.monotonic()
            try:
                connection.request("GET", self.path, headers={"Range": f"bytes={start}-{end}"})
                response = connection.getresponse()
                body = response.read()
                elapsed = time.monotonic() - began
                ok = response.status == 206 and body == self.expected[start:end + 1]
                with self.lock:
                    if ok:
                        self.latencies.append(elapsed)
                    else:
                        self.failures.append(f"status {response.status}, {len(body)} bytes for {start}-{end}")
            except Exception as error:  # a cut connection is a failure, then a new connection
                with self.lock:
                    self.failures.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def run_for(self, condition):
        for t in self.threads:
            t.start()
        condition()
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.latencies, self.failures


def summary(label, latencies, failures):
    if not latencies:
        return f"{label}: 0 reads, {len(failures)} failures"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{label}: {len(latencies)} reads, {len(failures)} failures, median {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tpstore", required=True)
    parser.add_argument("--gib", type=float, default=3.0, help="size of the model gc repacks (GiB)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    tpstore = os.path.abspath(args.tpstore)
    rng = np.random.default_rng(args.seed)
    scratch = tempfile.mkdtemp(prefix="tenpak-gc-reads-")
    server = None
    try:
        store = os.path.join(scratch, "store")
        run(tpstore, store, "init")
        # Tensors of 16 MiB (shared) and 24 MiB (not): after rm big, each pack is ~40% live.
        shared_elems, dropped_elems = 4 << 20, 6 << 20
        pairs = max(1, int(args.gib * (1 << 30) / ((shared_elems + dropped_elems) * 4)))
        shared = [(f"shared.{i}", rng.standard_normal(shared_elems, dtype=np.float32)) for i in range(pairs)]
        big = []
        for i, (name, array) in enumerate(shared):
            big += [(name, array), (f"dropped.{i}", rng.standard_normal(dropped_elems, dtype=np.float32))]
        write_model(os.path.join(scratch, "big"), big)
        del big
        write_model(os.path.join(scratch, "keep"), shared)
        del shared
        small = [(f"layer.{i}", rng.standard_normal(1 << 20, dtype=np.float32)) for i in range(12)]
        write_model(os.path.join(scratch, "small"), small)
        expected = open(os.path.join(scratch, "small", "model.safetensors"), "rb").read()
        big_bytes = os.path.getsize(os.path.join(scratch, "big", "model.safetensors"))
        put_seconds = run(tpstore, store, "put", "--no-base", "bench/big@v1", os.path.join(scratch, "big"))
        run(tpstore, store, "put", "--no-base", "bench/keep@v1", os.path.join(scratch, "keep"))
        run(tpstore, store, "put", "--no-base", "bench/small@v1", os.path.join(scratch, "small"))
        shutil.rmtree(os.path.join(scratch, "big"))
        shutil.rmtree(os.path.join(scratch, "keep"))
        print(f"store: big/v1 {big_bytes / 1e9:.2f} GB (put in {put_seconds:.1f} s), keep/v1 shares {pairs} of its tensors, "
              f"small/v1 {len(expected) / 1e6:.1f} MB")

        server, host, port = start_server(tpstore, store)
        path = "/bench/small/resolve/v1/model.safetensors"
        idle = Readers(host, port, path, expected, args.threads, args.seed)
        print(summary("reads, idle", *idle.run_for(lambda: time.sleep(5))))

        run(tpstore, store, "rm", "bench/big@v1")
        gc_report = {}

        def collect():
            started = time.monotonic()
            result = subprocess.run([tpstore, "gc", "--store", store], capture_output=True, text=True)
            gc_report["seconds"] = time.monotonic() - started
            gc_report["status"] = result.returncode
            gc_report["output"] = (result.stdout + result.stderr).strip()

        busy = Readers(host, port, path, expected, args.threads, args.seed + 100)
        latencies, failures = busy.run_for(lambda: collect())
        print(f"gc: exit {gc_report['status']} in {gc_report['seconds']:.1f} s: {gc_report['output'].splitlines()[-1] if gc_report['output'] else ''}")
        print(summary("reads, during gc", latencies, failures))
        for failure in failures[:10]:
            print("  failure:", failure)
        check = subprocess.run([tpstore, "fsck", "--store", store], capture_output=True, text=True)
        print("fsck after:", check.stdout.strip().splitlines()[-1] if check.stdout.strip() else check.stderr.strip())
        return 1 if failures or gc_report["status"] != 0 or check.returncode != 0 else 0
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if args.keep:
            print("scratch kept in", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
