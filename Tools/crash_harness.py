#!/usr/bin/env python3
"""Crash harness: SIGKILL `tpstore put` and `tpstore gc` at random moments and check the store after each.

Usage: crash_harness.py [--tpstore PATH] [--kills N] [--seed S] [--store DIR] SOURCE_DIR...

Each round starts a put of one of the SOURCE_DIRs (as a new revision) or a gc, kills it after a
random delay, then requires:
  * `tpstore fsck --read-data` reports no damage (leftovers from the kill are notices, not damage);
  * every revision `tpstore ls` lists reads back bit-exact (compared with the directory it was put from).
Every few rounds a put or gc runs to completion, so gc has garbage and removed revisions to collect.
Prints one line per round and a final "N passed, N failed" line; exits 1 on the first failure.
"""
import argparse
import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def run(tp, *args, check=True):
    r = subprocess.run([tp, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"tpstore {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tpstore", default=os.path.join(here, "..", ".build", "release", "tpstore"))
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--store")
    ap.add_argument("sources", nargs="+")
    a = ap.parse_args()
    for s in a.sources:
        if not os.path.isdir(s):
            print(f"crash_harness: {s} is not a directory", file=sys.stderr)
            return 2
    if not os.access(a.tpstore, os.X_OK):
        print(f"crash_harness: no tpstore binary at {a.tpstore} (build it first)", file=sys.stderr)
        return 2
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="tenpak-crash-")
    store = a.store or os.path.join(work, "store")
    run(a.tpstore, "init", "--store", store)
    origin = {}  # model@rev -> source dir
    passed = failed = 0
    # Calibrate: how long does an undisturbed put take?
    t0 = time.time()
    run(a.tpstore, "put", "--store", store, "m0@r0", a.sources[0])
    origin["m0@r0"] = a.sources[0]
    full = max(time.time() - t0, 0.05)
    try:
        for i in range(1, a.kills + 1):
            source = rng.choice(a.sources)
            model = f"m{rng.randrange(3)}"
            rev = f"r{i}"
            if rng.random() < 0.2:
                if origin and rng.random() < 0.5:
                    victim = rng.choice(sorted(origin))
                    run(a.tpstore, "rm", "--store", store, victim)
                    del origin[victim]
                cmd = [a.tpstore, "gc", "--store", store]
                what = "gc"
            else:
                cmd = [a.tpstore, "put", "--store", store, f"{model}@{rev}", source]
                what = f"put {model}@{rev}"
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            finish = i % 10 == 0
            delay = full * 2 if finish else rng.uniform(0, full * 1.1)
            time.sleep(delay)
            killed = p.poll() is None and not finish
            if killed:
                p.send_signal(signal.SIGKILL)
            p.wait()
            if what.startswith("put") and p.returncode == 0:
                origin[f"{model}@{rev}"] = source
            elif what.startswith("put") and killed:
                # The put may have committed just before the kill.
                listed = json.loads(run(a.tpstore, "ls", "--store", store, "--json").stdout)
                if any(r["model"] == model and r["revision"] == rev for r in listed):
                    origin[f"{model}@{rev}"] = source
            # Checks.
            fsck = run(a.tpstore, "fsck", "--store", store, "--read-data", "--json", check=False)
            report = json.loads(fsck.stdout) if fsck.stdout.strip().startswith("{") else {"healthy": False, "damage": [fsck.stderr]}
            ok = fsck.returncode == 0 and report["healthy"]
            listed = {f"{r['model']}@{r['revision']}" for r in json.loads(run(a.tpstore, "ls", "--store", store, "--json").stdout)}
            if listed != set(origin):
                ok = False
                report.setdefault("damage", []).append(f"revisions differ: store {sorted(listed)} vs expected {sorted(origin)}")
            for ref, src in origin.items():
                out = os.path.join(work, "out")
                shutil.rmtree(out, ignore_errors=True)
                r = run(a.tpstore, "get", "--store", store, ref, out, check=False)
                if r.returncode != 0 or not same_tree(src, out):
                    ok = False
                    report.setdefault("damage", []).append(f"{ref} does not read back bit-exact: {r.stderr.strip()}")
            state = "killed" if killed else f"exit {p.returncode}"
            print(f"round {i}: {what} {state} after {delay:.3f}s: {'ok' if ok else 'FAILED'}", flush=True)
            if ok:
                passed += 1
            else:
                failed += 1
                for line in report.get("damage", []):
                    print(f"  {line}")
                break
    finally:
        print(f"{passed} passed, {failed} failed")
        if failed == 0 and not a.store:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
