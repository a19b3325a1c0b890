#!/usr/bin/env bash
# The VACE reference-to-video pipeline on the CPU: r2v against diffusers' WanVACEPipeline on the
# same small config (a 4-layer dim-512 VACE DiT with the real umT5 width, the real Wan 2.1 VAE,
# random weights), the same inputs and thread count, in the same run.
#
#   scripts/bench-wan-pipeline.sh [THREADS] [STEPS]
#
# 256×256, 17 frames, one reference image, UniPC with CFG (two model calls per step).
# Prints both JSON timing lines (per-step seconds, VAE decode, total) and the max |Δ| of
# r2v's outputs against diffusers'.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
steps=${2:-4}
out=${WAN_BENCH_DIR:-target/wan-bench}/pipeline
venv=${TORCH_VENV:-.venv-torch}

scripts/bench/setup-torch-venv.sh >/dev/null
cargo build --release --locked -p r2v >/dev/null
mkdir -p "$out"

echo "diffusers:"
/usr/bin/time -f "  peak RSS %M KB" "$venv/bin/python" scripts/bench/wan_pipeline_baseline.py \
    --out "$out" --threads "$threads" --steps "$steps" 2>&1 | grep -E '^\{|peak RSS'
echo "r2v:"
RAYON_NUM_THREADS=$threads /usr/bin/time -f "  peak RSS %M KB" target/release/r2v wan pipeline \
    --model-dir "$out/model" --inputs "$out/inputs.safetensors" --output "$out/r2v.safetensors" \
    --height 256 --width 256 --num-frames 17 --steps "$steps" --schedule unipc --guidance 5 \
    2>&1 | grep -E '^\{|peak RSS'
"$venv/bin/python" - "$out/r2v.safetensors" "$out/torch_outputs.safetensors" <<'EOF'
import sys
from safetensors.numpy import load_file
got, want = load_file(sys.argv[1]), load_file(sys.argv[2])
for key in ("final_latents", "decoded_video"):
    print(f"{key}: max |Δ| {abs(got[key] - want[key]).max():.2e}")
EOF
