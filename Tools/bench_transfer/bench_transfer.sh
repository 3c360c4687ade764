#!/usr/bin/env bash
# Transfer benchmark (issue 16): bytes on the wire, measured outside the client by a counting
# proxy (HTTP headers included), and wall time, for `tpstore pull` and `push` of a base and then of
# its fine-tune, against a plain HTTP download of the same file, for an F32 pair and its BF16 cast.
#
# Usage: Tools/bench_transfer/bench_transfer.sh [WORKDIR] [BASE.safetensors]
#   BASE defaults to the real fine-tune in ../shared/corpus (90.9 MB F32, MiniLM), used here as the
#   base; the fine-tune is Tools/make_finetunes.py's small_update of it (every float moved by an
#   AdamW-like step, relative L2 change 1e-3). tpstore is built in release mode if TPSTORE is unset.
# Prints one table; asserts nothing (the targets are ≤ 1.10× the stored delta on the wire, and
# ≥ 200 MB/s of logical bytes on loopback).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/bench-transfer.XXXXXX)}
base_src=${2:-$here/../shared/corpus/minilm_simcse_step105.safetensors}
mkdir -p "$work"
if [[ -z "${TPSTORE:-}" ]]; then
  (cd "$here" && swift build -c release --product tpstore >&2)
  TPSTORE=$here/.build/release/tpstore
fi
tp() { "$TPSTORE" "$@"; }
token=bench_write_0123456789
echo "{\"tokens\": [{\"token\": \"$token\", \"name\": \"bench\", \"read\": [\"**\"], \"write\": [\"**\"]}]}" > "$work/auth.json"
export TPSTORE_TOKEN=$token

# The pairs: F32 (base, small_update) and their BF16 casts.
if [[ ! -f "$work/f32/ft/model.safetensors" ]]; then
  mkdir -p "$work/f32/base" "$work/f32/ft" "$work/bf16/base" "$work/bf16/ft" "$work/gen"
  cp "$base_src" "$work/f32/base/model.safetensors"
  python3 "$here/Tools/make_finetunes.py" "$work/f32/base/model.safetensors" "$work/gen" --only small_update >&2
  mv "$work/gen/small_update.safetensors" "$work/f32/ft/model.safetensors"
  python3 "$here/Tools/cast_safetensors.py" "$work/f32/base/model.safetensors" "$work/bf16/base/model.safetensors" --dtype bf16 >&2
  python3 "$here/Tools/cast_safetensors.py" "$work/f32/ft/model.safetensors" "$work/bf16/ft/model.safetensors" --dtype bf16 >&2
fi

pack_bytes() { tp stats --store "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["packBytes"])'; }
wire() { sleep 0.3; python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["up"]+d["down"])' "$work/proxy.json"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_server() { # STORE -> sets url (direct) and purl (through the counting proxy)
  local out=$work/serve.$RANDOM.out
  "$TPSTORE" serve --store "$1" --listen 127.0.0.1:0 --auth "$work/auth.json" >"$out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
  url=$(awk '{print $NF}' "$out")
  local pport=$((20000 + RANDOM % 20000))
  python3 "$here/Tools/bench_transfer/count_proxy.py" "$pport" "${url#http://}" "$work/proxy.json" >"$work/proxy.out" &
  pids+=($!)
  for _ in $(seq 100); do grep -q ready "$work/proxy.out" 2>/dev/null && break; sleep 0.1; done
  purl=http://127.0.0.1:$pport
}

printf "%-6s %-34s %12s %12s %12s %8s %9s\n" pair step logical wire "stored delta" "wire/Δ" "MB/s"
for pair in f32 bf16; do
  d=$work/$pair; rm -rf "$d"/server "$d"/client* "$d"/pushsrv "$d"/got
  tp put --store "$d/server" org/m@base "$d/base" >/dev/null
  before=$(pack_bytes "$d/server")
  tp put --store "$d/server" --base org/m@base org/m@ft "$d/ft" >/dev/null
  delta=$(( $(pack_bytes "$d/server") - before ))
  logical=$(stat -c %s "$d/ft/model.safetensors")
  start_server "$d/server"

  # Speed, direct (no proxy): base into an empty store, then the fine-tune.
  s=$(tp pull --store "$d/client-direct" "$url" org/m@base --json); printf "%-6s %-34s %12s %12s %12s %8s %9.0f\n" $pair "pull base (direct)" "$(echo "$s" | field logicalBytes)" - - - "$(echo "$s" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["logicalBytes"]/d["seconds"]/1e6)')"
  s=$(tp pull --store "$d/client-direct" "$url" org/m@ft --json); printf "%-6s %-34s %12s %12s %12s %8s %9.0f\n" $pair "pull ft, base local (direct)" "$(echo "$s" | field logicalBytes)" - - - "$(echo "$s" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["logicalBytes"]/d["seconds"]/1e6)')"

  # Bytes, through the proxy.
  w0=$(wire); tp pull --store "$d/client" "$purl" org/m@base --json >/dev/null; w1=$(wire)
  printf "%-6s %-34s %12s %12s %12s %8s %9s\n" $pair "pull base (empty store)" "$logical" $((w1 - w0)) - - -
  w0=$(wire); tp pull --store "$d/client" "$purl" org/m@ft --json >/dev/null; w1=$(wire)
  printf "%-6s %-34s %12s %12s %12s %8.3f %9s\n" $pair "pull ft, base local" "$logical" $((w1 - w0)) "$delta" "$(python3 -c "print(($w1-$w0)/$delta)")" -
  w0=$(wire); curl -s -o /dev/null -H "Authorization: Bearer $token" "$purl/org/m/resolve/ft/model.safetensors"; w1=$(wire)
  printf "%-6s %-34s %12s %12s %12s %8.3f %9s\n" $pair "plain HTTP download of ft" "$logical" $((w1 - w0)) "$delta" "$(python3 -c "print(($w1-$w0)/$delta)")" -
  tp get --store "$d/client" org/m@ft "$d/got" >/dev/null && cmp "$d/got/model.safetensors" "$d/ft/model.safetensors"

  # Push: a server with the base only; the client has base and fine-tune.
  tp put --store "$d/pushsrv" org/m@base "$d/base" >/dev/null
  tp put --store "$d/client-push" org/m@base "$d/base" >/dev/null
  cb=$(pack_bytes "$d/client-push")
  tp put --store "$d/client-push" --base org/m@base org/m@ft "$d/ft" >/dev/null
  pdelta=$(( $(pack_bytes "$d/client-push") - cb ))
  start_server "$d/pushsrv"
  w0=$(wire); s=$(tp push --store "$d/client-push" "$purl" org/m@ft --json); w1=$(wire)
  printf "%-6s %-34s %12s %12s %12s %8.3f %9.0f\n" $pair "push ft, base on server" "$logical" $((w1 - w0)) "$pdelta" "$(python3 -c "print(($w1-$w0)/$pdelta)")" "$(echo "$s" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["logicalBytes"]/d["seconds"]/1e6)')"
  tp fsck --store "$d/client" --read-data >/dev/null && tp fsck --store "$d/pushsrv" --read-data >/dev/null
  cleanup; pids=()
done
