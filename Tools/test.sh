#!/usr/bin/env bash
# Sets up what the tests need (apt and pip packages), builds, and runs every test.
# Usage: Tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/setup.sh
# The CLI tests run the tpstore binary, so build it before the test bundle starts.
swift build --product tpstore 2>&1 | tail -n 1
swift test --disable-swift-testing 2>&1
