#!/usr/bin/env bash
# Whole-process put/get speed of the release tpstore on the corpus pair (F32, and both cast to BF16),
# as issue 17 asks for it: medians of RUNS runs in one go, beside `openssl dgst -sha256` of the same
# file. Per operation: wall MB/s, "cpu MB/s" = bytes / ((user + sys) / 2) (what two otherwise idle
# cores would give if the work parallelized perfectly: steadier than wall time on a shared machine)
# and peak RSS. Every get is compared with its original. MB = 1e6 bytes.
# Usage: Tools/bench_speed.sh [RUNS] [TPSTORE]   (defaults 5, .build/release/tpstore, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
tp=${2:-.build/release/tpstore}
[[ -x $tp ]] || swift build -c release --product tpstore 2>&1 | tail -n 1
bash Tools/fetch_or_make_corpus.sh .corpus >/dev/null
work=bench-out/speed; rm -rf "$work"; mkdir -p "$work/in/base" "$work/in/ft"
cp "$tp" "$work/tpstore"; tp=$work/tpstore   # a concurrent rebuild must not change it mid-run
declare -A base=([f32]=.corpus/minilm-base/model.safetensors [bf16]=$work/in/base/model.safetensors)
declare -A ft=([f32]=.corpus/minilm-ft105/model.safetensors [bf16]=$work/in/ft/model.safetensors)
python3 Tools/cast_safetensors.py "${base[f32]}" "${base[bf16]}" --dtype bf16 >/dev/null
python3 Tools/cast_safetensors.py "${ft[f32]}" "${ft[bf16]}" --dtype bf16 >/dev/null
declare -A results
timed() {  # timed KEY BYTES CMD...: appends "wall/cpu/peakMiB" to results[KEY]
  # Wall time from the nanosecond clock: GNU time's %e counts in 10 ms steps, a seventh of a 70 ms
  # openssl run. (user + sys still come from time, in 10 ms steps, summed over both cores.)
  local key=$1 bytes=$2 e u sy m t0 t1; shift 2
  t0=$(date +%s%N)
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  t1=$(date +%s%N)
  read -r e u sy m < "$work/time"
  e=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }')
  results[$key]+="$(awk -v b="$bytes" -v e="$e" -v u="$u" -v s="$sy" -v m="$m" \
    'BEGIN { printf "%.0f/%.0f/%.0f", b / e / 1e6, b / ((u + s) / 2) / 1e6, m / 1024 }') "
}
median() {  # median FIELD VALUES...
  local f=$1; shift
  printf '%s\n' "$@" | cut -d/ -f"$f" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
for dt in f32 bf16; do
  fb=$(stat -c %s "${ft[$dt]}"); bb=$(stat -c %s "${base[$dt]}")
  cat "${base[$dt]}" "${ft[$dt]}" >/dev/null   # page-cached input
  results=()
  for _ in $(seq "$runs"); do
    s=$work/store; rm -rf "$s" "$work/out"
    "$tp" init --store "$s" >/dev/null
    timed "put no-base (base)" "$bb" "$tp" put --store "$s" base@1 "${base[$dt]}" --no-base
    timed "put delta (fine-tune)" "$fb" "$tp" put --store "$s" ft@1 "${ft[$dt]}" --base base@1
    timed "get delta (fine-tune)" "$fb" "$tp" get --store "$s" ft@1 "$work/out/ft"
    timed "get no-base (base)" "$bb" "$tp" get --store "$s" base@1 "$work/out/base"
    timed "openssl dgst -sha256 (fine-tune)" "$fb" openssl dgst -sha256 "${ft[$dt]}"
    cmp -s "$work/out/ft/model.safetensors" "${ft[$dt]}" || { echo "bench_speed: $dt fine-tune differs after get" >&2; exit 1; }
    cmp -s "$work/out/base/model.safetensors" "${base[$dt]}" || { echo "bench_speed: $dt base differs after get" >&2; exit 1; }
  done
  for key in "put delta (fine-tune)" "get delta (fine-tune)" "get no-base (base)" "put no-base (base)" "openssl dgst -sha256 (fine-tune)"; do
    # shellcheck disable=SC2086
    printf '%-5s %-34s wall %6s MB/s  cpu %6s MB/s  peak %5s MiB   (runs wall/cpu/MiB: %s)\n' "$dt" "$key" \
      "$(median 1 ${results[$key]})" "$(median 2 ${results[$key]})" "$(median 3 ${results[$key]})" "${results[$key]}"
  done
done
rm -rf "$work"
