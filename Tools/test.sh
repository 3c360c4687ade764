#!/usr/bin/env bash
# Sets up what the tests need (apt and pip packages), builds, and runs every test: a short run of
# the crash harness, then the XCTest suite (whose summary closes the output).
# Usage: Tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/setup.sh
# The CLI tests and the crash harness run the tpstore binary, so build it first.
swift build --product tpstore 2>&1 | tail -n 1
echo "== crash harness (short run; Tools/crash_harness.py --kills 200 for the full one)"
python3 Tools/crash_harness.py --tpstore .build/debug/tpstore --kills 25 --seed "${TENPAK_CRASH_SEED:-$RANDOM}" \
  Fixtures/models/tiny-base Fixtures/models/tiny-ft Fixtures/misc | tail -n 3
echo "== swift test"
swift test --disable-swift-testing 2>&1
