#!/usr/bin/env bash
# The main job, end to end on a real model: set up, build in release, put a base model and a
# fine-tune of it into a fresh store, show the savings, get both back and verify them.
# Usage: Tools/demo.sh [STORE_DIR]   (default: .demo-store, removed and made anew)
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-.demo-store}

bash Tools/setup.sh
swift build -c release --product tpstore 2>&1 | tail -n 1
tp=.build/release/tpstore

bash Tools/fetch_or_make_corpus.sh .corpus
rm -rf "$store" .demo-out
"$tp" init --store "$store"
echo; echo "== put the base model (no base: first upload)"
"$tp" put --store "$store" minilm-base@v1 .corpus/minilm-base
echo; echo "== put the fine-tune (its base is found automatically)"
"$tp" put --store "$store" minilm-ft105@v1 .corpus/minilm-ft105
echo; echo "== savings"
"$tp" show --store "$store" minilm-ft105@v1
echo
"$tp" stats --store "$store"
echo; echo "== get both back, each file checked against its SHA-256"
for m in minilm-base minilm-ft105; do
  "$tp" get --store "$store" "$m@v1" ".demo-out/$m"
  diff -r ".corpus/$m" ".demo-out/$m" && echo "$m: every file bit-identical to the original"
done
