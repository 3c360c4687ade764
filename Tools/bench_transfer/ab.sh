#!/usr/bin/env bash
# Two builds of tpstore compared on pull and push speed, runs alternating so that drifts of a shared
# machine's load fall on both alike (what `speed.sh` cannot do with one build at a time). Each build
# stores the pair itself, so a change of encoding is measured too:
#   pull  the fine-tune into a fresh copy of a store holding the base, from a server of that build
#   push  the fine-tune to a server of the same build as the client, holding the base (fresh copy)
# for the corpus F32 pair and its BF16 cast. Prints each build's `seconds` (from --json, process
# start excluded), the median and the best in MB/s of logical bytes.
#
# Usage: Tools/bench_transfer/ab.sh TPSTORE_A TPSTORE_B WORKDIR PAIRS_DIR [RUNS]
#   PAIRS_DIR holds f32/{base,ft}/model.safetensors and bf16/{base,ft}/model.safetensors. RUNS
#   (per build and transfer) defaults to 8.
set -euo pipefail
a=$1 b=$2 work=$3 pairs=$4 runs=${5:-8}
mkdir -p "$work"
pids=()
cleanup() { for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done; pids=(); }
trap cleanup EXIT
binary() { if [ "$1" = B ]; then echo "$b"; else echo "$a"; fi; }  # BUILD (A or B) -> its tpstore
serve() { # TPSTORE STORE -> url
  local out=$work/serve.out
  rm -f "$out"
  "$1" serve --store "$2" --listen 127.0.0.1:0 --allow-uploads >"$out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 600); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
  url=$(awk '{print $NF}' "$out")
}
seconds() { python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'; }
report() { # NAME LOGICAL FILE
  python3 - "$@" <<'PY'
import statistics, sys
name, logical, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = {}
for line in open(path):
    build, s = line.split()
    runs.setdefault(build, []).append(float(s))
for build in ("A", "B"):
    s = runs.get(build, [])
    if s:
        print(f"{name:9} {build}  runs {len(s)}  median {logical / statistics.median(s) / 1e6:.0f} MB/s"
              f"  best {logical / min(s) / 1e6:.0f} MB/s  s: {' '.join(f'{x:.3f}' for x in s)}")
PY
}
for pair in f32 bf16; do
  d=$work/$pair; rm -rf "$d"; mkdir -p "$d"
  logical=$(stat -c %s "$pairs/$pair/ft/model.safetensors")
  declare -A urls=()
  for build in A B; do
    tp=$(binary "$build")
    "$tp" put --store "$d/$build-server" org/base@main "$pairs/$pair/base" >/dev/null
    cp -a "$d/$build-server" "$d/$build-base-only"
    "$tp" put --store "$d/$build-server" --base org/base@main org/ft@main "$pairs/$pair/ft" >/dev/null
    serve "$tp" "$d/$build-server"
    urls[$build]=$url
  done
  : >"$d/pull.txt"
  for _ in $(seq "$runs"); do
    for build in A B; do
      tp=$(binary "$build")
      rm -rf "$d/$build-client"; cp -a "$d/$build-base-only" "$d/$build-client"
      echo "$build $("$tp" pull --store "$d/$build-client" "${urls[$build]}" org/ft --json | seconds)" >>"$d/pull.txt"
    done
  done
  cleanup
  for build in A B; do  # each build's last pull, rebuilt by that build, must be the fine-tune
    tp=$(binary "$build")
    rm -rf "$d/got"
    "$tp" get --store "$d/$build-client" org/ft@main "$d/got" >/dev/null
    cmp "$d/got/model.safetensors" "$pairs/$pair/ft/model.safetensors"
  done
  report "$pair pull" "$logical" "$d/pull.txt"
  : >"$d/push.txt"
  for _ in $(seq "$runs"); do
    for build in A B; do
      tp=$(binary "$build")
      rm -rf "$d/$build-pushsrv"; cp -a "$d/$build-base-only" "$d/$build-pushsrv"
      serve "$tp" "$d/$build-pushsrv"
      echo "$build $("$tp" push --store "$d/$build-server" "$url" org/ft --json | seconds)" >>"$d/push.txt"
      cleanup
    done
  done
  for build in A B; do  # each build's last push server holds the fine-tune, undamaged
    tp=$(binary "$build")
    "$tp" fsck --store "$d/$build-pushsrv" --read-data >/dev/null
    rm -rf "$d/got"
    "$tp" get --store "$d/$build-pushsrv" org/ft@main "$d/got" >/dev/null
    cmp "$d/got/model.safetensors" "$pairs/$pair/ft/model.safetensors"
  done
  report "$pair push" "$logical" "$d/push.txt"
done
