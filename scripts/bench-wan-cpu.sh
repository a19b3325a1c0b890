#!/usr/bin/env bash
# CPU benchmark of the wan modules: r2v (burn, flex) against PyTorch running the diffusers
# module on the same config, weights, inputs and thread count, in the same run.
#
#   scripts/bench-wan-cpu.sh [THREADS] [REPEAT]
#
# Cases (scripts/bench/wan_cpu_baseline.py): a 4-layer dim-512 DiT at 2 048 tokens, one
# Wan-1.3B-shaped block at 4 096 tokens with a 512-token text, and the Wan 2.1 VAE decoding
# 3 latent frames to 9 frames of 128×128. Each line prints the median seconds of both, the
# ratio r2v/torch, and r2v's max |Δ| against torch's output.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeat=${2:-3}
out=${WAN_BENCH_DIR:-target/wan-bench}
venv=${TORCH_VENV:-.venv-torch}

scripts/bench/setup-torch-venv.sh >/dev/null
cargo build --release --locked -p r2v >/dev/null
mkdir -p "$out"

compare() {
    "$venv/bin/python" - "$@" <<'EOF'
import sys, json
from safetensors.numpy import load_file
got, want, key = sys.argv[1], sys.argv[2], sys.argv[3]
g, w = load_file(got)[key], load_file(want)[key]
print(f"{abs(g - w).max():.2e} (max|ref| {abs(w).max():.2f})")
EOF
}

printf '%-11s %10s %10s %8s  %s\n' case torch_s r2v_s ratio "max |Δ|"
for case in dit512 block1_3b vae_decode; do
    "$venv/bin/python" scripts/bench/wan_cpu_baseline.py --out "$out" --threads "$threads" \
        --repeat "$repeat" --case "$case" >/dev/null 2>&1
    torch_s=$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['median_s'])" \
        "$out/$case/torch_timing.json")
    case $case in
        vae_decode) module=vae-decode key=decoded ;;
        *) module=dit key=output ;;
    esac
    line=$(RAYON_NUM_THREADS=$threads target/release/r2v wan forward --module "$module" \
        --config "$out/$case/config.json" --weights "$out/$case/weights.safetensors" \
        --inputs "$out/$case/inputs.safetensors" --output "$out/$case/r2v.safetensors" \
        --repeat "$repeat" | grep -o 'forward [0-9.]* s median')
    r2v_s=$(echo "$line" | awk '{print $2}')
    ratio=$(awk -v a="$r2v_s" -v b="$torch_s" 'BEGIN { printf "%.2f", a / b }')
    delta=$(compare "$out/$case/r2v.safetensors" "$out/$case/outputs.safetensors" "$key")
    printf '%-11s %10.3f %10.3f %7s×  %s\n' "$case" "$torch_s" "$r2v_s" "$ratio" "$delta"
done
