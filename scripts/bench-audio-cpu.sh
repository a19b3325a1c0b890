#!/usr/bin/env bash
# CPU benchmark of MMAudio's network step and vocoders: r2v (burn, flex) against upstream's
# PyTorch modules on the same config, random weights, inputs and thread count, in the same run.
#
#   MMAUDIO_SRC=path/to/MMAudio scripts/bench-audio-cpu.sh [THREADS] [REPEAT] [CASES…]
#
# MMAUDIO_SRC is a checkout of github.com/hkchengrex/MMAudio (commit 974010a). Cases
# (scripts/bench/audio_cpu_baseline.py): net_small_16k and net_large_44k_v2 (one guided step's
# velocity: batch 2 at 8 s lengths), vocoder_16k (BigVGAN, 8 s) and vocoder_44k (BigVGAN-v2,
# 2 s). Each line prints the median seconds of both, the ratio r2v/torch, and r2v's max |Δ|
# against torch's output.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeat=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
cases=${*:-net_small_16k vocoder_16k}
out=${AUDIO_BENCH_DIR:-target/audio-bench}
venv=${TORCH_VENV:-.venv-torch}
: "${MMAUDIO_SRC:?set MMAUDIO_SRC to a checkout of github.com/hkchengrex/MMAudio}"
export MMAUDIO_SRC

scripts/bench/setup-torch-venv.sh >/dev/null
cargo build --release --locked -p r2v >/dev/null
mkdir -p "$out"

compare() {
    "$venv/bin/python" - "$@" <<'PY'
import sys
from safetensors.numpy import load_file
got, want, key = sys.argv[1], sys.argv[2], sys.argv[3]
g, w = load_file(got)[key].ravel(), load_file(want)[key].ravel()
print(f"{abs(g - w).max():.2e} (max|ref| {abs(w).max():.2f})")
PY
}

printf '%-17s %10s %10s %8s  %s\n' case torch_s r2v_s ratio "max |Δ|"
for case in $cases; do
    "$venv/bin/python" scripts/bench/audio_cpu_baseline.py --out "$out" --threads "$threads" \
        --repeat "$repeat" --case "$case" >/dev/null 2>&1
    torch_s=$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['median_s'])" \
        "$out/$case/torch_timing.json")
    case $case in
        net_*) module=net key=flow ;;
        *) module=vocoder key=audio ;;
    esac
    line=$(RAYON_NUM_THREADS=$threads target/release/r2v audio forward --module "$module" \
        --config "$out/$case/config.json" --weights "$out/$case/weights.safetensors" \
        --inputs "$out/$case/inputs.safetensors" --output "$out/$case/r2v.safetensors" \
        --device cpu --repeat "$repeat" | grep -o 'run [0-9.]* s median')
    r2v_s=$(echo "$line" | awk '{print $2}')
    ratio=$(awk -v a="$r2v_s" -v b="$torch_s" 'BEGIN { printf "%.2f", a / b }')
    delta=$(compare "$out/$case/r2v.safetensors" "$out/$case/outputs.safetensors" "$key")
    printf '%-17s %10.3f %10.3f %7s×  %s\n' "$case" "$torch_s" "$r2v_s" "$ratio" "$delta"
done
