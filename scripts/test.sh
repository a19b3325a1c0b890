#!/usr/bin/env bash
# Runs every test of the workspace, after installing what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
# Property tests (no-panic checks) run this many cases each: bounded, but more than the default.
export PROPTEST_CASES="${PROPTEST_CASES:-1000}"
cargo test --workspace --locked
