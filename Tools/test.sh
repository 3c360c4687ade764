#!/usr/bin/env bash
# Sets up what the tests need (apt and pip packages), builds, starts the S3 and PostgreSQL
# servers the distributed-store tests use (Tools/start_test_services.sh), and runs every test: a
# short run of the crash harness and of the server harness, then the XCTest suite (whose summary closes the output).
# Usage: Tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash Tools/setup.sh
# The CLI tests and the crash harness run the tpstore binary, so build it first.
swift build --product tpstore 2>&1 | tail -n 1
echo "== fuzzer (short run over every parser of outside bytes; tenpak-fuzz 1000000 SEED for a long one)"
swift build --product tenpak-fuzz 2>&1 | tail -n 1
.build/debug/tenpak-fuzz 150000 "${TENPAK_FUZZ_SEED:-$RANDOM}" | tail -n 1
echo "== crash harness (short run; Tools/crash_harness.py --kills 200 for the full one)"
python3 Tools/crash_harness.py --tpstore .build/debug/tpstore --kills 25 --seed "${TENPAK_CRASH_SEED:-$RANDOM}" \
  Fixtures/models/tiny-base Fixtures/models/tiny-ft Fixtures/misc | tail -n 3
echo "== server harness (short run: issue 12's sequences and 100 random operations per cache mode; the full one: --scenario all --ops 500)"
# Its failure fails the run, but only after the XCTest suite has run too.
server_harness=0
python3 Tools/server_harness.py --tpstore .build/debug/tpstore --scenario all --ops 100 --seconds 140 \
  --seed "${TENPAK_SERVER_SEED:-$RANDOM}" | tail -n 40 || server_harness=$?
echo "== test services (SeaweedFS S3, PostgreSQL) for the distributed-store tests"
# A failure here is not fatal: the distributed tests then fail with the reason (they never skip).
if dist_config=$(bash Tools/start_test_services.sh | tail -n 1) && [[ -f $dist_config ]]; then
  export TENPAK_DIST_CONFIG=$dist_config
else
  echo "test services did not start; the distributed tests will fail" >&2
  export TENPAK_DIST_CONFIG=${TENPAK_DIST_CONFIG:-/nonexistent/tenpak-services-failed}
fi
echo "== corpus (the real base and fine-tune, for the huggingface_hub upload test)"
# Not fatal here either: without it, that test fails and says why.
if bash Tools/fetch_or_make_corpus.sh .corpus > /dev/null; then export TENPAK_HUB_CORPUS=$PWD/.corpus; fi
echo "== swift test"
swift test --disable-swift-testing 2>&1
if ((server_harness)); then echo "the server harness failed (see its output above)" >&2; exit 1; fi
