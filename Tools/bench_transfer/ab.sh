#!/usr/bin/env bash
# Two tpstore builds compared on pull and push of the fine-tune, alternating run by run (which goes
# first alternates too), so that the load of a shared machine falls on both alike: per round and
# build, a fresh server on the pair's store, `pull` into a copy of the base-only store; then a fresh
# server on a copy of the base-only store, `push` of the fine-tune. Prints each run's `seconds` (from
# --json) and the medians in MB/s of logical bytes.
#
# Usage: Tools/bench_transfer/ab.sh OLD_TPSTORE NEW_TPSTORE WORKDIR [ROUNDS]
#   WORKDIR is one made by speed.sh (it holds {f32,bf16}/server and {f32,bf16}/base-only). ROUNDS: 6.
set -euo pipefail
old=$1 new=$2 work=$3 rounds=${4:-6}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); }
trap cleanup EXIT
serve() { # TPSTORE STORE -> url
  rm -f "$work/ab-serve.out"
  "$1" serve --store "$2" --listen 127.0.0.1:0 --allow-uploads >"$work/ab-serve.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 600); do grep -q listening "$work/ab-serve.out" 2>/dev/null && break; sleep 0.1; done
  url=$(awk '{print $NF}' "$work/ab-serve.out")
}
seconds() { python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'; }
for pair in f32 bf16; do
  d=$work/$pair
  logical=$("$new" show --store "$d/server" org/ft@main --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(f["size"] for f in d["files"]))')
  : > "$work/ab-$pair.txt"
  for i in $(seq "$rounds"); do
    if (( i % 2 )); then order="old new"; else order="new old"; fi
    for v in $order; do
      bin=${!v}
      serve "$bin" "$d/server"
      rm -rf "$d/ab-client"; cp -a "$d/base-only" "$d/ab-client"
      p=$("$bin" pull --store "$d/ab-client" "$url" org/ft --json | seconds)
      cleanup
      rm -rf "$d/ab-server"; cp -a "$d/base-only" "$d/ab-server"
      serve "$bin" "$d/ab-server"
      q=$("$bin" push --store "$d/server" "$url" org/ft --json | seconds)
      cleanup
      echo "$pair $v pull $p push $q" | tee -a "$work/ab-$pair.txt"
    done
  done
  python3 - "$work/ab-$pair.txt" "$logical" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
logical = int(sys.argv[2])
for v in ("old", "new"):
    pull = [float(r[3]) for r in rows if r[1] == v]
    push = [float(r[5]) for r in rows if r[1] == v]
    print(f"{rows[0][0]} {v}: median pull {logical/statistics.median(pull)/1e6:.0f} MB/s, push {logical/statistics.median(push)/1e6:.0f} MB/s ({len(pull)} runs)")
PY
done
