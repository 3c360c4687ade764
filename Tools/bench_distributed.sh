#!/usr/bin/env bash
# put/get throughput of the distributed store (SeaweedFS S3 + PostgreSQL on loopback) beside the
# local store on the same machine, and the S3 requests and PostgreSQL round trips of one put of the
# corpus fine-tune (counted by tpstore itself: TPSTORE_TRAFFIC=1 prints them to stderr).
# Usage: Tools/bench_distributed.sh [BASE_DIR FT_DIR]   (default: .corpus/minilm-base .corpus/minilm-ft105)
# Uses .build/release/tpstore when it exists (swift build -c release), else the debug build;
# TPSTORE=path overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-.corpus/minilm-base}
ft=${2:-.corpus/minilm-ft105}
tp=${TPSTORE:-}
if [[ -z $tp ]]; then
  if [[ -x .build/release/tpstore ]]; then tp=.build/release/tpstore; else tp=.build/debug/tpstore; fi
fi
[[ -x $tp ]] || { echo "no tpstore binary: swift build -c release --product tpstore" >&2; exit 1; }
config=$(bash Tools/start_test_services.sh | tail -n 1)
work=$(mktemp -d /tmp/tenpak-bench-dist.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A fresh bucket and database for this run.
tag=bench$(date +%s)$$
read -r pgport < <(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['postgres']['port'])" "$config")
/usr/lib/postgresql/15/bin/psql -q -h 127.0.0.1 -p "$pgport" -U tenpak postgres -c "CREATE DATABASE $tag" >/dev/null
python3 - "$config" "$tag" "$work/dist.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["s3"]["bucket"] = sys.argv[2].replace("_", "-"); c["postgres"]["database"] = sys.argv[2]
json.dump(c, open(sys.argv[3], "w"))
PY

mb() { du -sbL "$1" | awk '{print $1 / 1048576}'; }
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.1f}')" "$@"; }
base_mb=$(mb "$base"); ft_mb=$(mb "$ft")

echo "tpstore: $tp; base $base ($base_mb MiB), fine-tune $ft ($ft_mb MiB)"
printf '%-12s %14s %14s %14s\n' store "put base MB/s" "put ft MB/s" "get ft MB/s"
for kind in local distributed; do
  if [[ $kind == local ]]; then store=$work/local; else store=$work/dist.json; fi
  t0=$(now); "$tp" put --store "$store" bench/base@v1 "$base" >/dev/null 2>&1; t1=$(now)
  TPSTORE_TRAFFIC=1 "$tp" put --store "$store" bench/ft@v1 "$ft" >/dev/null 2>"$work/$kind.traffic"; t2=$(now)
  TPSTORE_TRAFFIC=1 "$tp" get --store "$store" bench/ft@v1 "$work/out-$kind" >/dev/null 2>"$work/$kind.get-traffic"; t3=$(now)
  printf '%-12s %14s %14s %14s\n' "$kind" "$(rate "$base_mb" "$t0" "$t1")" "$(rate "$ft_mb" "$t1" "$t2")" "$(rate "$ft_mb" "$t2" "$t3")"
  cmp -s <(cd "$ft" && find . -type f -exec sha256sum {} + | sort -k2) <(cd "$work/out-$kind" && find . -type f -exec sha256sum {} + | sort -k2) \
    || echo "  MISMATCH: $kind get differs from $ft" >&2
done
echo "put of the fine-tune on the distributed store: $(grep -h '^traffic:' "$work/distributed.traffic" || echo 'traffic: (not reported)')"
echo "get of the fine-tune on the distributed store: $(grep -h '^traffic:' "$work/distributed.get-traffic" || echo 'traffic: (not reported)')"
/usr/lib/postgresql/15/bin/psql -q -h 127.0.0.1 -p "$pgport" -U tenpak postgres -c "DROP DATABASE $tag WITH (FORCE)" >/dev/null || true
