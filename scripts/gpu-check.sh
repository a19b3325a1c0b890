#!/usr/bin/env bash
# The GPU check for the wan engine, for a lent GPU machine (about 8 minutes):
#   1. every DiT fixture through `r2v wan forward --cuda`, compared with diffusers' outputs;
#   2. a 1.3B-shaped DiT forward (30 blocks, dim 1536) at 7 800 tokens, timed against
#      diffusers' WanTransformer3DModel on the same GPU, f32 and bf16, same random weights.
# Prerequisites there: a `r2v` built here with `cargo build --release -p r2v --features cuda`
# (carried as target/release/r2v), Python with torch, numpy and safetensors, and diffusers
# (carried as a wheel in .whl/ when the machine lacks it).
# Usage: scripts/gpu-check.sh [R2V_BINARY] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
r2v="${1:-target/release/r2v}"
out="${2:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fixtures=crates/r2v-wan/tests/fixtures
for spec in dit:wan_t2v_tiny dit:wan_ti2v_tokens_tiny dit:wan_i2v_tiny vace:wan_vace_tiny; do
  module=${spec%%:*}; name=${spec#*:}
  "$r2v" wan forward --cuda --module "$module" --config "$fixtures/$name.config.json" \
    --weights "$fixtures/$name.weights.safetensors" --inputs "$fixtures/$name.io.safetensors" \
    --output "$out/$name.cuda.safetensors"
  python3 scripts/gpu/compare.py "$fixtures/$name.io.safetensors" "$out/$name.cuda.safetensors" "$name" | tee -a "$out/fixtures.txt"
done
python3 scripts/gpu/dit_1_3b.py "$r2v" "$out" | tee "$out/dit_1_3b.txt"
