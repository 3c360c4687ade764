#!/usr/bin/env python3
"""Benchmark of TenPak's virtual reads on the delta-stored corpus fine-tune.

  Tools/bench_read.py [--corpus .corpus] [--out bench-out/read] [--requests 200] [--no-build]

Builds tpstore (release), stores minilm-base then minilm-ft105 (a fine-tune, stored as deltas
against the base) into OUT/store unless already there, then measures against `tpstore serve`:

  - latency (p50/p99, one keep-alive HTTP client) of random 4 KiB, random 1 MiB and whole-tensor
    Range requests on minilm-ft105's model.safetensors, cold (a server with --cache-mib 0: every
    chunk is decoded from its pack, through its base chunk, on every request; packs are in the OS
    page cache) and warm (256 MiB cache, after one full read);
  - sequential throughput: `tpstore cat` of the whole file to /dev/null (best of 3), and one HTTP GET
    of the whole file from a fresh server;
  - peak RSS (VmHWM) of the servers and of `tpstore cat`.

Prints a table and writes OUT/bench_read.json. Needs only the Python standard library.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL, BASE, PATH = "minilm-ft105", "minilm-base", "model.safetensors"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


class Server:
    def __init__(self, tpstore, store, cache_mib):
        self.proc = subprocess.Popen([tpstore, "serve", "--store", store, "--listen", "127.0.0.1:0",
                                      "--cache-mib", str(cache_mib)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on http://"):
            self.proc.kill()
            sys.exit(f"serve did not start: {line!r}")
        host, port = line.split("//")[1].strip().rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.url = f"/{MODEL}/resolve/main/{PATH}"

    def get(self, first=None, last=None):
        headers = {} if first is None else {"Range": f"bytes={first}-{last}"}
        self.conn.request("GET", self.url, headers=headers)
        r = self.conn.getresponse()
        body = r.read()
        if r.status not in (200, 206):
            sys.exit(f"HTTP {r.status}: {body[:200]!r}")
        return body

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def percentiles(samples):
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    return {"p50_ms": round(pick(0.50) * 1e3, 3), "p99_ms": round(pick(0.99) * 1e3, 3), "n": len(s)}


def latencies(server, size, tensors, requests, rng):
    out = {}
    for label, length in (("random 4 KiB", 4096), ("random 1 MiB", 1 << 20)):
        samples = []
        for _ in range(requests):
            a = rng.randrange(0, size - length)
            t = time.perf_counter()
            body = server.get(a, a + length - 1)
            samples.append(time.perf_counter() - t)
            assert len(body) == length
        out[label] = percentiles(samples)
    samples = []
    for _ in range(requests):
        begin, end = rng.choice(tensors)
        t = time.perf_counter()
        body = server.get(begin, end - 1)
        samples.append(time.perf_counter() - t)
        assert len(body) == end - begin
    out["whole tensor"] = percentiles(samples)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(ROOT, ".corpus"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "read"))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    if not args.no_build:
        run(["swift", "build", "-c", "release", "--product", "tpstore"], cwd=ROOT, stdout=subprocess.DEVNULL)
    tpstore = os.path.join(ROOT, ".build", "release", "tpstore")
    store = os.path.join(args.out, "store")
    os.makedirs(args.out, exist_ok=True)
    listed = subprocess.run([tpstore, "ls", "--store", store, "--json"], capture_output=True, text=True)
    if listed.returncode != 0 or MODEL not in listed.stdout:
        shutil.rmtree(store, ignore_errors=True)
        run([tpstore, "put", "--store", store, f"{BASE}@v1", os.path.join(args.corpus, BASE)], stdout=subprocess.DEVNULL)
        run([tpstore, "put", "--store", store, f"{MODEL}@v1", os.path.join(args.corpus, MODEL)], stdout=subprocess.DEVNULL)
    show = json.loads(subprocess.run([tpstore, "show", "--store", store, MODEL, "--json"], capture_output=True, text=True, check=True).stdout)
    weights = next(f for f in show["files"] if f["path"] == PATH)
    size = weights["size"]

    original = open(os.path.join(args.corpus, MODEL, PATH), "rb").read()
    n = int.from_bytes(original[:8], "little")
    header = json.loads(original[8:8 + n])
    header.pop("__metadata__", None)
    tensors = [(8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1]) for v in header.values()]
    rng = random.Random(1)
    results = {"file": f"{MODEL}/{PATH}", "size": size, "delta_chunks": weights["deltaChunks"],
               "stored_bytes": weights["storedBytes"], "tensors": len(tensors)}

    # Cold: no cache at all.
    server = Server(tpstore, store, 0)
    try:
        results["cold"] = latencies(server, size, tensors, args.requests, rng)
        results["cold_server_peak_rss_mib"] = round(server.peak_rss_mib(), 1)
    finally:
        server.stop()

    # Warm: 256 MiB cache after one full read (also timed: HTTP sequential from an empty cache).
    server = Server(tpstore, store, 256)
    try:
        t = time.perf_counter()
        body = server.get()
        seconds = time.perf_counter() - t
        assert body == original, "HTTP full GET differs from the original"
        results["http_sequential_gb_s"] = round(size / seconds / 1e9, 3)
        results["warm"] = latencies(server, size, tensors, args.requests, rng)
        results["warm_server_peak_rss_mib"] = round(server.peak_rss_mib(), 1)
    finally:
        server.stop()

    # Sequential: tpstore cat to /dev/null, best of 3, with its peak RSS.
    best, rss = float("inf"), 0
    for _ in range(3):
        with open(os.devnull, "wb") as devnull:
            t = time.perf_counter()
            p = subprocess.Popen([tpstore, "cat", "--store", store, MODEL, PATH], stdout=devnull)
            _, status, usage = os.wait4(p.pid, 0)
            best = min(best, time.perf_counter() - t)
            rss = max(rss, usage.ru_maxrss / 1024)
            if status != 0:
                sys.exit("tpstore cat failed")
    results["cat_sequential_gb_s"] = round(size / best / 1e9, 3)
    results["cat_peak_rss_mib"] = round(rss, 1)
    check = subprocess.run([tpstore, "cat", "--store", store, MODEL, PATH], capture_output=True, check=True).stdout
    assert check == original, "tpstore cat differs from the original"

    print(f"{results['file']}: {size / 1e6:.1f} MB, {results['delta_chunks']} delta chunks, stored {results['stored_bytes'] / 1e6:.1f} MB")
    print(f"{'read':<16}{'cold p50':>10}{'cold p99':>10}{'warm p50':>10}{'warm p99':>10}   (ms, {args.requests} requests each)")
    for label in ("random 4 KiB", "random 1 MiB", "whole tensor"):
        c, w = results["cold"][label], results["warm"][label]
        print(f"{label:<16}{c['p50_ms']:>10.2f}{c['p99_ms']:>10.2f}{w['p50_ms']:>10.2f}{w['p99_ms']:>10.2f}")
    print(f"sequential: tpstore cat {results['cat_sequential_gb_s']:.2f} GB/s (peak RSS {results['cat_peak_rss_mib']:.0f} MiB, cache 256 MiB); "
          f"HTTP GET from an empty cache {results['http_sequential_gb_s']:.2f} GB/s")
    print(f"server peak RSS: cold (no cache) {results['cold_server_peak_rss_mib']:.0f} MiB, warm (256 MiB cache) {results['warm_server_peak_rss_mib']:.0f} MiB")
    with open(os.path.join(args.out, "bench_read.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
