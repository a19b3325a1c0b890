#!/usr/bin/env bash
# The audio stage on a lent GPU, against upstream MMAudio in PyTorch on the same GPU:
# large_44k_v2's network step (one guided step: batch 2, 8 s) and BigVGAN-v2 on 8 s of mel,
# then the whole 8 s generation as 25 steps + the vocoder (upstream's own figure: about 1.2 s
# on an H100). Prints one line per case: torch and r2v medians, the ratio, r2v's max |Δ|.
#
#   MMAUDIO_SRC=path/to/MMAudio R2V=path/to/r2v-built-with-cuda scripts/gpu/audio-check.sh [OUT]
#
# Needs the torch venv (scripts/bench/setup-torch-venv.sh; TORCH_VENV) and a CUDA toolkit's
# NVRTC for r2v (see scripts/gpu-check.sh). The first r2v run compiles kernels (minutes);
# the timings are the medians of --repeat 3 after it.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/audio-gpu}
venv=${TORCH_VENV:-.venv-torch}
r2v=${R2V:-target/release/r2v}
: "${MMAUDIO_SRC:?set MMAUDIO_SRC to a checkout of github.com/hkchengrex/MMAudio}"
export MMAUDIO_SRC
mkdir -p "$out"
printf '%-17s %10s %10s %8s  %s\n' case torch_s r2v_s ratio "max |Δ|"
total_torch=0 total_r2v=0
for case in net_large_44k_v2 vocoder_44k; do
    "$venv/bin/python" scripts/bench/audio_cpu_baseline.py --out "$out" --case "$case" \
        --device cuda --repeat 5 --seconds 8 >/dev/null 2>&1
    torch_s=$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['median_s'])" \
        "$out/$case/torch_timing.json")
    case $case in net_*) module=net key=flow n=25 ;; *) module=vocoder key=audio n=1 ;; esac
    r2v_s=$("$r2v" audio forward --module "$module" --config "$out/$case/config.json" \
        --weights "$out/$case/weights.safetensors" --inputs "$out/$case/inputs.safetensors" \
        --output "$out/$case/r2v.safetensors" --device cuda --repeat 3 | grep -o 'run [0-9.]* s' | awk '{print $2}')
    delta=$("$venv/bin/python" -c "
import sys
from safetensors.numpy import load_file
g = load_file(sys.argv[1])[sys.argv[3]].ravel(); w = load_file(sys.argv[2])[sys.argv[3]].ravel()
print(f'{abs(g - w).max():.2e} (max|ref| {abs(w).max():.2f})')" "$out/$case/r2v.safetensors" "$out/$case/outputs.safetensors" "$key")
    printf '%-17s %10.3f %10.3f %7.2f×  %s\n' "$case" "$torch_s" "$r2v_s" \
        "$(awk -v a="$r2v_s" -v b="$torch_s" 'BEGIN { print a / b }')" "$delta"
    total_torch=$(awk -v t="$total_torch" -v s="$torch_s" -v n="$n" 'BEGIN { print t + n * s }')
    total_r2v=$(awk -v t="$total_r2v" -v s="$r2v_s" -v n="$n" 'BEGIN { print t + n * s }')
done
printf '%-17s %10.3f %10.3f %7.2f×  (25 steps + vocoder; upstream reports ~1.2 s on an H100)\n' \
    "8 s generation" "$total_torch" "$total_r2v" "$(awk -v a="$total_r2v" -v b="$total_torch" 'BEGIN { print a / b }')"
