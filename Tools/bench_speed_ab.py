#!/usr/bin/env python3
"""Put and get speed of two or more tpstore builds, runs alternating (issue 17's before/after).

A shared VM's speed drifts by a third within minutes, so one build measured after another says
little; this runs the builds in turns (ABBA order), each on a store it made itself (an encoder
change is measured too), and prints medians. Per build and run: a fresh store, the base stored
without a base, then the timed put of the fine-tune against it and the timed get of the fine-tune,
compared with the original byte for byte. cpu MB/s = bytes / ((user + sys) / 2): what two otherwise
idle cores would give if the work parallelized perfectly.

Usage: Tools/bench_speed_ab.py RUNS BASE.safetensors FINETUNE.safetensors TPSTORE [TPSTORE ...]
(copy each build somewhere first: a rebuild during the run would change it).
"""
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__.strip().splitlines()[-2])
    runs, base, ft, builds = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    size = os.path.getsize(ft)
    results = {b: {"put": [], "get": [], "put cpu": [], "get cpu": []} for b in builds}
    work = tempfile.mkdtemp(prefix="tenpak-ab-")
    try:
        for run in range(runs):
            for build in builds if run % 2 == 0 else builds[::-1]:
                store, out = os.path.join(work, "store"), os.path.join(work, "out")
                shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
                quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run([build, "init", "--store", store], **quiet)
                subprocess.run([build, "put", "--store", store, "base@1", base, "--no-base"], **quiet)
                wall, cpu = timed([build, "put", "--store", store, "ft@1", ft, "--base", "base@1"])
                results[build]["put"].append(wall)
                results[build]["put cpu"].append(cpu)
                wall, cpu = timed([build, "get", "--store", store, "ft@1", out])
                results[build]["get"].append(wall)
                results[build]["get cpu"].append(cpu)
                got = os.path.join(out, os.path.basename(ft))
                if subprocess.run(["cmp", "-s", ft, got]).returncode != 0:
                    sys.exit(f"bench_speed_ab: {build}: the fine-tune differs after get")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = statistics.median
    for build in builds:
        r = results[build]
        line = f"{build:30s}"
        for op in ("put", "get"):
            line += (f"  {op} {m(r[op]) * 1000:6.0f} ms ({size / m(r[op]) / 1e6:5.0f} MB/s,"
                     f" cpu {size / (m(r[op + ' cpu']) / 2) / 1e6:5.0f})")
        print(line)


if __name__ == "__main__":
    main()
