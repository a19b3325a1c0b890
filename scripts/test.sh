#!/usr/bin/env bash
# Runs every test of the workspace, after installing what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --clients
# The official clients, unmodified and at pinned versions, for the conformance tests.
(cd tests/conformance/js && npm ci --no-audit --no-fund --loglevel=error)
# playwright-core, pinned, drives Debian's Chromium through the playground page.
(cd tests/playground && npm ci --no-audit --no-fund --loglevel=error)
[ -x tests/conformance/py/.venv/bin/python ] || python3 -m venv tests/conformance/py/.venv
tests/conformance/py/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/conformance/py/requirements.txt
# schemathesis, pinned, checks /openapi.json against the running server (tests/openapi.rs).
[ -x tests/schemathesis/.venv/bin/python ] || python3 -m venv tests/schemathesis/.venv
tests/schemathesis/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
# An S3 server that speaks the real protocol (s3s-fs, pinned; 0.14.1 builds with the pinned
# Rust), for the fleet tests (tests/fleet.rs). Built once into target/tools.
[ -x target/tools/bin/s3s-fs ] ||
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root target/tools --quiet
# Property tests (no-panic checks) run this many cases each: bounded, but more than the default.
export PROPTEST_CASES="${PROPTEST_CASES:-1000}"
# The fuzz targets (bolero, `tests/fuzz.rs` of r2v-api and r2v-media) run on random inputs for
# this long each: a bounded run; `cargo bolero test` runs them coverage-guided (docs/security.md).
export BOLERO_RANDOM_TEST_TIME_MS="${BOLERO_RANDOM_TEST_TIME_MS:-20000}"
# One build with both GPU features: the CUDA backend is compiled (it cannot run here), and the
# wgpu backend runs the golden fixtures and a whole request on Mesa's lavapipe (Vulkan on the
# CPU). `auto` still picks the CPU here: lavapipe is a software adapter. Minimal autotuning keeps
# lavapipe's kernel benchmarking short; without XDG_RUNTIME_DIR, Vulkan's Wayland probe complains
# on every adapter listing.
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --workspace --locked --no-fail-fast --features r2v/cuda,r2v/wgpu
