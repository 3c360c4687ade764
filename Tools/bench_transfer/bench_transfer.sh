#!/usr/bin/env bash
# Transfer benchmark (issue 16): bytes on the wire, measured outside the client by a counting
# proxy (HTTP headers included), and wall time, to fetch a base and then its fine-tune from one
# `tpstore serve`, by four clients:
#   pull       `tpstore pull` into a local store (the base first, so the fine-tune moves its delta)
#   hf         huggingface_hub's hf_hub_download (plain HTTP, whole files)
#   lfs-agent  `git clone` with `tpstore lfs-agent --remote` (one cache store for both clones)
#   git-lfs    `git clone` with plain git-lfs through the server's LFS endpoint (whole objects)
# then `tpstore push` of the fine-tune to a server holding the base. For the corpus's F32 pair
# (minilm-base and minilm-ft105 from `Tools/fetch_or_make_corpus.sh`) and its BF16 cast.
#
# Usage: Tools/bench_transfer/bench_transfer.sh [WORKDIR] [CORPUS_DIR]
#   CORPUS_DIR defaults to ./.corpus (made by Tools/fetch_or_make_corpus.sh if missing).
#   tpstore is built in release mode if TPSTORE is unset.
# Prints one table; asserts nothing but bit-exact results (the targets are ≤ 1.10× the stored delta
# on the wire, and ≥ 200 MB/s of logical bytes on loopback).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/bench-transfer.XXXXXX)}
corpus=${2:-$here/.corpus}
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [[ ! -f "$corpus/minilm-ft105/model.safetensors" ]]; then bash "$here/Tools/fetch_or_make_corpus.sh" "$corpus" >&2; fi
if [[ -z "${TPSTORE:-}" ]]; then
  (cd "$here" && swift build -c release --product tpstore >&2)
  TPSTORE=$here/.build/release/tpstore
fi
tp() { "$TPSTORE" "$@"; }
token=bench_write_0123456789
echo "{\"tokens\": [{\"token\": \"$token\", \"name\": \"bench\", \"read\": [\"**\"], \"write\": [\"**\"]}]}" > "$work/auth.json"
export TPSTORE_TOKEN=$token HF_TOKEN=$token HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_PROGRESS_BARS=1
# git isolated from the machine's configuration.
export HOME=$work/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"
git config --global user.name bench && git config --global user.email bench@tenpak.invalid
git config --global init.defaultBranch main && git lfs install --skip-repo >/dev/null

# The pairs: the corpus's F32 pair and their BF16 casts.
if [[ ! -f "$work/bf16/ft/model.safetensors" ]]; then
  mkdir -p "$work/f32/base" "$work/f32/ft" "$work/bf16/base" "$work/bf16/ft"
  cp "$corpus/minilm-base/model.safetensors" "$work/f32/base/model.safetensors"
  cp "$corpus/minilm-ft105/model.safetensors" "$work/f32/ft/model.safetensors"
  python3 "$here/Tools/cast_safetensors.py" "$work/f32/base/model.safetensors" "$work/bf16/base/model.safetensors" --dtype bf16 >&2
  python3 "$here/Tools/cast_safetensors.py" "$work/f32/ft/model.safetensors" "$work/bf16/ft/model.safetensors" --dtype bf16 >&2
fi

pack_bytes() { tp stats --store "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["packBytes"])'; }
wire() { sleep 0.3; python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["up"]+d["down"])' "$work/proxy.json"; }
now() { date +%s.%N; }
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

# A bare git repository whose one commit holds model.safetensors as an LFS pointer (the object
# itself is on the server only: pushed with --no-verify, so git-lfs uploads nothing).
git_repo() { # NAME MODEL_DIR
  local w=$work/$pair/git-$1
  rm -rf "$w" "$w.git"; git init -q --bare "$w.git"; git init -q "$w"
  (cd "$w" && git lfs track '*.safetensors' >/dev/null && cp "$2/model.safetensors" . && git add -A && git commit -qm "$1" \
    && git remote add origin "file://$w.git" && git push -q --no-verify origin main)
}

# row PAIR STEP LOGICAL WIRE DELTA SECONDS
row() {
  local ratio=- rate=-
  [[ $5 != - ]] && ratio=$(python3 -c "print(f'{$4/$5:.3f}')")
  [[ $6 != - ]] && rate=$(python3 -c "print(f'{$3/$6/1e6:.0f}')")
  printf "%-5s %-40s %11s %11s %11s %7s %7s %6s\n" "$1" "$2" "$3" "$4" "$5" "$ratio" "$6" "$rate"
}
# timed STEP-NAME LOGICAL DELTA COMMAND...: runs COMMAND, prints its row.
timed() {
  local name=$1 logical=$2 delta=$3; shift 3
  local w0 t0 t1 w1; w0=$(wire); t0=$(now); "$@" >/dev/null; t1=$(now); w1=$(wire)
  row "$pair" "$name" "$logical" $((w1 - w0)) "$delta" "$(python3 -c "print(f'{$t1-$t0:.2f}')")"
}
hf_get() { # REPO DIR
  python3 -c 'import sys; from huggingface_hub import hf_hub_download as d; d(sys.argv[1], "model.safetensors", endpoint=sys.argv[3], cache_dir=sys.argv[2])' "$1" "$2" "$purl"
}
agent_clone() { # REPO BARE DEST CACHE
  git clone -q -c lfs.standalonetransferagent=tpstore -c "lfs.customtransfer.tpstore.path=$TPSTORE" \
    -c "lfs.customtransfer.tpstore.args=lfs-agent --remote $purl/$1 --cache $4" -c lfs.customtransfer.tpstore.concurrent=false "file://$2" "$3"
}
lfs_clone() { # REPO BARE DEST
  git -c "lfs.url=http://bench:$token@${purl#http://}/$1.git/info/lfs" clone -q "file://$2" "$3"
}

printf "%-5s %-40s %11s %11s %11s %7s %7s %6s\n" pair step logical wire "stored Δ" "wire/Δ" seconds "MB/s"
for pair in f32 bf16; do
  d=$work/$pair; rm -rf "$d"/server "$d"/client* "$d"/pushsrv "$d"/got "$d"/hf* "$d"/cache "$d"/clone-* "$d"/git-*
  tp put --store "$d/server" org/base@main "$d/base" >/dev/null
  before=$(pack_bytes "$d/server")
  tp put --store "$d/server" --base org/base@main org/ft@main "$d/ft" >/dev/null
  delta=$(( $(pack_bytes "$d/server") - before ))
  lb=$(stat -c %s "$d/base/model.safetensors"); lf=$(stat -c %s "$d/ft/model.safetensors")
  git_repo base "$d/base"; git_repo ft "$d/ft"
  start_server "$d/server"

  timed "pull base (empty store)" "$lb" - tp pull --store "$d/client" "$purl" org/base --json
  timed "pull ft, base local" "$lf" "$delta" tp pull --store "$d/client" "$purl" org/ft --json
  tp get --store "$d/client" org/ft@main "$d/got" >/dev/null && cmp "$d/got/model.safetensors" "$d/ft/model.safetensors"
  timed "hf_hub_download base" "$lb" - hf_get org/base "$d/hf"
  timed "hf_hub_download ft" "$lf" "$delta" hf_get org/ft "$d/hf"
  timed "lfs-agent --remote: clone base" "$lb" - agent_clone org/base "$d/git-base.git" "$d/clone-agent-base" "$d/cache"
  timed "lfs-agent --remote: clone ft, base cached" "$lf" "$delta" agent_clone org/ft "$d/git-ft.git" "$d/clone-agent-ft" "$d/cache"
  cmp "$d/clone-agent-ft/model.safetensors" "$d/ft/model.safetensors"
  timed "plain git-lfs: clone base" "$lb" - lfs_clone org/base "$d/git-base.git" "$d/clone-lfs-base"
  timed "plain git-lfs: clone ft" "$lf" "$delta" lfs_clone org/ft "$d/git-ft.git" "$d/clone-lfs-ft"
  cmp "$d/clone-lfs-ft/model.safetensors" "$d/ft/model.safetensors"
  cleanup; pids=()

  # Push: a server with the base only; the client has base and fine-tune.
  tp put --store "$d/pushsrv" org/base@main "$d/base" >/dev/null
  tp put --store "$d/client-push" org/base@main "$d/base" >/dev/null
  cb=$(pack_bytes "$d/client-push")
  tp put --store "$d/client-push" --base org/base@main org/ft@main "$d/ft" >/dev/null
  pdelta=$(( $(pack_bytes "$d/client-push") - cb ))
  start_server "$d/pushsrv"
  timed "push ft, base on server" "$lf" "$pdelta" tp push --store "$d/client-push" "$purl" org/ft --json
  tp fsck --store "$d/client" --read-data >/dev/null && tp fsck --store "$d/pushsrv" --read-data >/dev/null
  tp fsck --store "$d/cache" --read-data >/dev/null
  cleanup; pids=()
done
