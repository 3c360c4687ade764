#!/usr/bin/env bash
# Push and clone of a model repository through `tpstore lfs-agent`, against plain git-lfs (its
# built-in standalone file transfer to a file:// remote, objects stored whole in remote.git/lfs).
#
# Scenario, per side: commit minilm-base and push; replace it with minilm-ft105, commit and push;
# then clone the fine-tune fresh. Reports wall times and the bytes the remote side holds.
#
# Usage: Tools/bench_lfs.sh [CORPUS_DIR]     (default: .corpus, with minilm-base/ and minilm-ft105/)
#   TPSTORE=/path/to/tpstore  use this binary instead of building a release one
#   KEEP=1                    keep the scratch directory
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=$(cd "${1:-.corpus}" && pwd)
base="$corpus/minilm-base" ft="$corpus/minilm-ft105"
[[ -d $base && -d $ft ]] || { echo "bench_lfs: need $base and $ft (Tools/fetch_or_make_corpus.sh)" >&2; exit 1; }
if [[ -z ${TPSTORE:-} ]]; then
  swift build -c release --product tpstore 2>&1 | tail -n 1 >&2
  TPSTORE="$PWD/.build/release/tpstore"
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/bench-lfs.XXXXXX")
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$scratch"' EXIT
export HOME="$scratch/home" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"
git config --global user.name bench; git config --global user.email bench@tenpak.invalid
git config --global init.defaultBranch main
git lfs install --skip-repo >/dev/null

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
bytes() { du -sb "$1" 2>/dev/null | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# Replace the work tree's files (not .git) with a model directory's.
load() { find "$2" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +; cp -r "$1"/. "$2"/; }

declare -A result
run_side() {
  local side=$1 dir="$scratch/$1"
  mkdir -p "$dir"; git init -q --bare "$dir/remote.git"; git init -q "$dir/work"
  local clone_config=()
  if [[ $side == tpstore ]]; then
    (cd "$dir/work" && "$TPSTORE" lfs-install --store "$dir/store" >/dev/null)
    clone_config=(-c lfs.standalonetransferagent=tpstore -c "lfs.customtransfer.tpstore.path=$TPSTORE"
                  -c "lfs.customtransfer.tpstore.args=lfs-agent --store $dir/store" -c lfs.customtransfer.tpstore.concurrent=true)
  fi
  local stored_path; [[ $side == tpstore ]] && stored_path="$dir/store" || stored_path="$dir/remote.git/lfs"
  cd "$dir/work"
  git remote add origin "file://$dir/remote.git"
  load "$base" .; git add -A; git commit -qm base
  local t; t=$(now); git push -q origin main >/dev/null 2>&1; result[$side,push1]=$(elapsed "$t")
  result[$side,stored1]=$(bytes "$stored_path")
  load "$ft" .; git add -A; git commit -qm ft
  t=$(now); git push -q origin main >/dev/null 2>&1; result[$side,push2]=$(elapsed "$t")
  result[$side,stored2]=$(bytes "$stored_path")
  cd "$dir"
  t=$(now); git clone -q "${clone_config[@]}" "file://$dir/remote.git" clone 2>/dev/null; result[$side,clone]=$(elapsed "$t")
  cmp -s "$ft/model.safetensors" clone/model.safetensors || { echo "bench_lfs: $side clone differs from minilm-ft105" >&2; exit 1; }
  cd "$OLDPWD" >/dev/null
}

run_side git-lfs
run_side tpstore
logical=$(( $(stat -c %s "$base/model.safetensors") + $(stat -c %s "$ft/model.safetensors") ))
printf '\nLFS objects: base + fine-tune model.safetensors = %s MiB (%s)\n\n' "$(mib $logical)" "$corpus"
printf '%-10s %10s %10s %10s %16s %16s\n' side "push base" "push ft" "clone ft" "stored after 1" "stored after 2"
for side in git-lfs tpstore; do
  printf '%-10s %9ss %9ss %9ss %12s MiB %12s MiB\n' "$side" "${result[$side,push1]}" "${result[$side,push2]}" \
    "${result[$side,clone]}" "$(mib "${result[$side,stored1]}")" "$(mib "${result[$side,stored2]}")"
done
printf '\nstored = remote.git/lfs for git-lfs, the whole store directory (packs + catalog) for tpstore.\n'
