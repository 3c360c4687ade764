#!/usr/bin/env bash
# The issue-14 put-latency ratio, two builds compared: `bench-scale probe` (20 probe puts in one
# process, each removed again) on fresh copies of a one-revision store and a large store. Runs
# alternate between the stores, and between the builds in the order A B, then B A, so that drifts
# of a shared machine fall on both builds alike. Prints each run, then per build the median over
# runs of the runs' medians (wall and CPU) and the large store's over the small one's. A build
# compared with itself gives the noise.
#
# Usage: Tools/bench_scale/probe_ab.sh BENCH_A BENCH_B SMALL_DIR LARGE_DIR WORKDIR [RUNS]
#   BENCH_A/B: bench-scale binaries. Both builds write .build/release/bench-scale, so copy the
#   first one elsewhere before building the second (`swift build -c release --product bench-scale`).
#   SMALL_DIR, LARGE_DIR: directories that `bench-scale scale --revisions 1 --store DIR` and
#   `bench-scale scale --store DIR` (10^4 revisions) left (each holds store/); each run copies one
#   to WORKDIR/copy first. RUNS per build and store: at least 1, default 6.
set -euo pipefail
usage() { sed -n '9,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 5 ] && [ $# -le 6 ] || usage
a=$1 b=$2 small=$3 large=$4 work=$5 runs=${6:-6}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || usage
for dir in "$small" "$large"; do
  [ -f "$dir/store/catalog.db" ] || { echo "probe_ab: $dir/store/catalog.db not found (give the directory a scale run left)" >&2; usage; }
done
out=$(mktemp)
trap 'rm -rf "$out" "$work/copy"' EXIT
mkdir -p "$work"
for run in $(seq "$runs"); do
  order="A B"; [ $((run % 2)) -eq 0 ] && order="B A"
  for store in small large; do
    for build in $order; do
      if [ "$build" = A ]; then bench=$a; else bench=$b; fi
      if [ "$store" = small ]; then source=$small; else source=$large; fi
      rm -rf "$work/copy"; cp -r "$source" "$work/copy"; sync
      line=$("$bench" probe --at "$work/copy/store" --repeat 20 | grep '^probe:')
      echo "$build $store $line" | tee -a "$out"
    done
  done
done
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    build, store = line.split()[:2]
    wall = float(re.search(r"wall median ([\d.]+)", line).group(1))
    cpu = float(re.search(r"CPU median ([\d.]+)", line).group(1))
    runs.setdefault((build, store), []).append((wall, cpu))
for build in ("A", "B"):
    small, large = runs[(build, "small")], runs[(build, "large")]
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    print(f"{build}: small wall {med(small, 0):.1f} ms (CPU {med(small, 1):.1f}), large wall {med(large, 0):.1f} ms "
          f"(CPU {med(large, 1):.1f}), large/small wall {med(large, 0) / med(small, 0):.2f}x, CPU {med(large, 1) / med(small, 1):.2f}x")
PY
