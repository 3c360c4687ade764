#!/usr/bin/env bash
# put and get throughput and peak RSS of the release tpstore: on the corpus pair, and on a generated
# multi-GB safetensors file (fine-tune of it too: a second file nudged from the first is not made,
# the point here is streaming: peak RSS must not grow with the file).
# Usage: Tools/bench_store.sh [SIZE_GIB]   (default 2; needs ~3x that in free disk under ./bench-out)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-2}
swift build -c release --product tpstore 2>&1 | tail -n 1
tp=.build/release/tpstore
bash Tools/fetch_or_make_corpus.sh .corpus >/dev/null
out=bench-out/store; rm -rf "$out"; mkdir -p "$out"
measure() {  # measure LABEL BYTES CMD...: prints MB/s and peak RSS
  local label=$1 bytes=$2; shift 2
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$out/rss" "$@" >/dev/null
  t1=$(date +%s.%N)
  rss=$(cat "$out/rss")
  awk -v l="$label" -v b="$bytes" -v a="$t0" -v z="$t1" -v r="$rss" \
    'BEGIN { printf "%-34s %10.1f MB/s  %8.1f MiB peak RSS  (%.2f s)\n", l, b / (z - a) / 1e6, r / 1024, z - a }'
}
base_bytes=$(stat -c %s .corpus/minilm-base/model.safetensors)
ft_bytes=$(stat -c %s .corpus/minilm-ft105/model.safetensors)
measure "put minilm-base (no base)" "$base_bytes" $tp put --store "$out/s" base@1 .corpus/minilm-base/model.safetensors
measure "put minilm-ft105 (delta)" "$ft_bytes" $tp put --store "$out/s" ft@1 .corpus/minilm-ft105/model.safetensors --base base@1
measure "get minilm-base" "$base_bytes" $tp get --store "$out/s" base@1 "$out/g1"
measure "get minilm-ft105" "$ft_bytes" $tp get --store "$out/s" ft@1 "$out/g2"
python3 Tools/make_big_safetensors.py "$out/big.safetensors" "$size"
big_bytes=$(stat -c %s "$out/big.safetensors")
measure "put ${size} GiB safetensors" "$big_bytes" $tp put --store "$out/s" big@1 "$out/big.safetensors" --no-base
measure "get ${size} GiB safetensors" "$big_bytes" $tp get --store "$out/s" big@1 "$out/g3"
cmp "$out/big.safetensors" "$out/g3/big.safetensors" && echo "big file: bit-identical after get"
rm -rf "$out"
