#!/usr/bin/env bash
# Pull and push speed on loopback (issue 16's target: >= 200 MB/s of logical bytes), without the
# counting proxy of bench_transfer.sh: N runs each of
#   pull  the fine-tune into a store holding the base (a fresh copy of it each run)
#   push  the fine-tune to a server holding the base (a fresh copy of its store each run)
# for the corpus F32 pair and its BF16 cast; prints each run's seconds (the client's own, from
# --json: process start excluded), the median and the best in MB/s of logical bytes, and the
# bytes moved (request and response bodies) against the fine-tune's stored delta, and the CPU
# seconds (user + system) of client and server per run, medians: on a shared machine wall time is
# noisy, CPU time much less so (client and server share the cores on loopback).
#
# Usage: Tools/bench_transfer/speed.sh WORKDIR PAIRS_DIR [RUNS]
#   PAIRS_DIR holds f32/{base,ft}/model.safetensors and bf16/{base,ft}/model.safetensors (as laid out
#   by bench_transfer.sh in its WORKDIR). RUNS defaults to 7. TPSTORE defaults to the release build.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$1 pairs=$2 runs=${3:-7}
TPSTORE=${TPSTORE:-$here/.build/release/tpstore}
tp() { "$TPSTORE" "$@"; }
mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); }
trap cleanup EXIT
serve() { # STORE -> url
  local out=$work/serve.out
  rm -f "$out" # else the loop below may read the last server's line before this one truncates it
  "$TPSTORE" serve --store "$1" --listen 127.0.0.1:0 --allow-uploads >"$out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 600); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
  url=$(awk '{print $NF}' "$out")
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks of user + system time
ticks=$(getconf CLK_TCK)
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
summary() { # NAME LOGICAL DELTA MOVED "SECONDS..." "CLIENT-CPU..." "SERVER-CPU..."
  python3 - "$@" <<'PY'
import statistics, sys
name, logical, delta, moved = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s, c, v = ([float(x) for x in a.split()] for a in sys.argv[5:8])
med = statistics.median(s)
print(f"{name:9} runs {len(s)}  s: {' '.join(f'{x:.3f}' for x in s)}  median {logical/med/1e6:.0f} MB/s  best {logical/min(s)/1e6:.0f} MB/s"
      f"  cpu s client {statistics.median(c):.2f} server {statistics.median(v):.2f}  moved {moved} = {moved/delta:.3f} x stored delta {delta}")
PY
}
# timed PID-OF-SERVER COMMAND...: runs COMMAND, appends its --json seconds, its CPU and the server's CPU.
timed() {
  local server=$1; shift
  local s0 s1 j; s0=$(cpu "$server")
  j=$( { /usr/bin/time -f "%U %S" -o "$work/time.out" "$@"; } )
  s1=$(cpu "$server")
  secs+=("$(field seconds <<<"$j")"); moved=$(field bytesMoved <<<"$j")
  ccpu+=("$(awk '{print $1 + $2}' "$work/time.out")")
  scpu+=("$(python3 -c "print(($s1 - $s0) / $ticks)")")
}
for pair in f32 bf16; do
  d=$work/$pair; rm -rf "$d"; mkdir -p "$d"
  tp put --store "$d/server" org/base@main "$pairs/$pair/base" >/dev/null
  cp -a "$d/server" "$d/base-only"
  before=$(tp stats --store "$d/server" --json | field packBytes)
  tp put --store "$d/server" --base org/base@main org/ft@main "$pairs/$pair/ft" >/dev/null
  delta=$(( $(tp stats --store "$d/server" --json | field packBytes) - before ))
  logical=$(stat -c %s "$pairs/$pair/ft/model.safetensors")
  serve "$d/server"
  secs=() ccpu=() scpu=() moved=0
  for i in $(seq "$runs"); do
    rm -rf "$d/client"; cp -a "$d/base-only" "$d/client"
    timed "${pids[-1]}" "$TPSTORE" pull --store "$d/client" "$url" org/ft --json
  done
  tp get --store "$d/client" org/ft@main "$d/got" >/dev/null && cmp "$d/got/model.safetensors" "$pairs/$pair/ft/model.safetensors"
  cleanup
  summary "$pair pull" "$logical" "$delta" "$moved" "${secs[*]}" "${ccpu[*]}" "${scpu[*]}"
  secs=() ccpu=() scpu=()
  for i in $(seq "$runs"); do
    rm -rf "$d/pushsrv"; cp -a "$d/base-only" "$d/pushsrv"
    serve "$d/pushsrv"
    timed "${pids[-1]}" "$TPSTORE" push --store "$d/server" "$url" org/ft --json
    cleanup
  done
  tp fsck --store "$d/pushsrv" --read-data >/dev/null
  summary "$pair push" "$logical" "$delta" "$moved" "${secs[*]}" "${ccpu[*]}" "${scpu[*]}"
done
