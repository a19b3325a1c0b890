#!/usr/bin/env bash
# The GPU check of the wan engine, for one lent H100/H200, under 8 minutes by design (every step
# has its own time limit and all of them share a budget of 465 s; figures are printed as they
# come, so a cut run still reports):
#   1. kernel cache: the VACE fixture's first forward in a first process (cold cache) and in a
#      second one (warm cache), with the same --kernel-cache;
#   2. every DiT fixture on CUDA, exact path (f32; f32 matmuls run as TF32 on tensor cores, so the
#      limit is 4x the gap that diffusers itself shows with TF32 on, on this GPU) and in bf16
#      (the bf16 limit of crates/r2v-wan/tests/fixtures.rs: 5 % of max|ref|);
#   3. a Wan2.1-VACE-1.3B-shaped model directory with random weights (scripts/gpu/vace_check.py),
#      written on the CPU while steps 1 and 2 run on the GPU;
#   4. one bf16 DiT step at 832x480, 81 frames, one reference: r2v (flash attention, then burn's
#      own attention, median of 3) against diffusers' WanVACETransformer3DModel in bf16, median of 5
#      after 2 warm-ups;
#   5. the VAE decode of that clip (f32): r2v untiled and in 256-px tiles, against diffusers;
#   6. a whole flash request through `r2v run --engine wan --device cuda`: wall time, stage times,
#      peak device memory (nvidia-smi), against diffusers' WanVACEPipeline with the same sigmas.
#
# Prerequisites on the GPU machine: `r2v` built here with
#   cargo build --release -p r2v --features cuda   (carried as target/release/r2v)
# and Python with torch, numpy, safetensors, Pillow, transformers, accelerate, ftfy and diffusers 0.42.1
# (wheels in .whl/ are installed first when present:
#   pip download diffusers==0.42.1 accelerate==1.15.0 ftfy==6.3.1 --no-deps -d .whl).
#
#   scripts/gpu-check.sh [OUT_DIR]          on a GPU machine
#   scripts/gpu-check.sh --cpu-dry-run      here: the same steps on the CPU with a tiny model
#
# STEPS="4 6" runs only those steps (default: all); BUDGET_S changes the budget. On a GPU,
# $OUT_DIR/samples.txt gets the GPU's utilisation and memory and the kernel cache's size every
# 5 s: a first forward that is busy on the host (kernel JIT, autotune) shows an idle GPU and a
# growing cache.
set -uo pipefail
cd "$(dirname "$0")/.."
r2v=${R2V:-target/release/r2v}
device=cuda size=1.3b python=${PYTHON:-python3}
if [ "${1:-}" = "--cpu-dry-run" ]; then
  device=cpu size=tiny python=${PYTHON:-.venv-torch/bin/python}
  shift
fi
out=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$out"
started=$(date +%s)
budget=${BUDGET_S:-465}   # the whole check, in seconds
say() { echo "[$(( $(date +%s) - started ))s] $*" | tee -a "$out/summary.txt"; }
since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.2f", t1 - t0 }'; }
# limit SECONDS: SECONDS, or what is left of the budget when that is less.
limit() {
  local left=$(( budget - ($(date +%s) - started) ))
  if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
# step SECONDS COMMAND...: runs within `limit SECONDS`; its output goes to the log and the screen.
step() {
  local seconds; seconds=$(limit "$1"); shift
  if [ "$seconds" -le 5 ]; then echo "skipped (out of time): $*" | tee -a "$out/log.txt"; return 124; fi
  timeout "$seconds" bash -c '"$@"' step "$@" 2>&1 | tee -a "$out/log.txt"; return "${PIPESTATUS[0]}"
}
check() { $python scripts/gpu/vace_check.py "$@"; }
steps=${STEPS:-1 2 3 4 5 6}
want() { [[ " $steps " == *" $1 "* ]]; }

if ls .whl/*.whl >/dev/null 2>&1; then
  $python -m pip install -q --no-index --no-deps --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
if [ "$device" = cuda ]; then
  say "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
  # cubecl compiles its kernels with NVRTC at run time (loaded by name, e.g. libnvrtc.so.13) and
  # includes the toolkit's headers: find both where the loader would not.
  if ! ldconfig -p | grep -q 'libnvrtc\.so'; then
    nvrtc=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu \
      "$($python -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)" \
      -name 'libnvrtc.so*' 2>/dev/null | head -1)
    [ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  say "nvrtc: $( (ldconfig -p | grep -o '/[^ ]*libnvrtc\.so[^ ]*' | head -1) || true) ${nvrtc:-} (LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-})"
  if [ -z "${CUDA_PATH:-}" ] && [ ! -d /usr/local/cuda/include ]; then
    for dir in /usr/local/cuda-*; do [ -f "$dir/include/cuda.h" ] && export CUDA_PATH=$dir; done
  fi
  say "cuda headers: ${CUDA_PATH:-/usr/local/cuda}/include"
fi
say "ffmpeg: $(command -v ffmpeg || echo missing), ffprobe: $(command -v ffprobe || echo missing)"
fixtures=crates/r2v-wan/tests/fixtures
cache="$out/kernels"
forward() { # MODULE NAME DTYPE [FLAGS...]: one fixture through r2v wan forward
  local module=$1 name=$2 dtype=$3; shift 3
  "$r2v" wan forward --device "$device" --kernel-cache "$cache" --module "$module" --dtype "$dtype" \
    --config "$fixtures/$name.config.json" --weights "$fixtures/$name.weights.safetensors" \
    --inputs "$fixtures/$name.io.safetensors" --output "$out/$name.$dtype.safetensors" "$@"
}
# `step` runs its command in a child shell (for its time limit): it sees these.
export r2v device python out fixtures cache
export -f forward check

if [ "$device" = cuda ]; then
  (while sleep 5; do
    echo "$(( $(date +%s) - started ))s $(nvidia-smi --query-gpu=utilization.gpu,memory.used \
      --format=csv,noheader) cache $(du -sm "$cache" 2>/dev/null | cut -f1) MB"
  done >> "$out/samples.txt") &
  sampler=$!
  trap 'kill $sampler 2>/dev/null' EXIT
fi

# The model directory of steps 3 to 6 is written on the CPU while the GPU runs steps 1 and 2.
prepared="$out/prepare.status"; rm -f "$prepared"
if want 3 || want 4 || want 5 || want 6; then
  ( timeout "$(limit 240)" $python scripts/gpu/vace_check.py prepare "$out" --size "$size" > "$out/prepare.log" 2>&1
    echo $? > "$prepared" ) &
  preparing=$!
fi

# 1. Kernel cache, cold then warm: wall time of the whole process and its first forward.
want 1 && rm -rf "$cache"   # else a cache carried in is kept
want 1 && for run in cold warm; do
  t0=$(date +%s.%N)
  line=$(step 240 forward vace wan_vace_tiny f32 | grep '^load')
  say "kernel cache $run: process $(since "$t0") s; $line"
done

# 2. Every DiT fixture, exact path and bf16.
want 2 && for spec in dit:wan_t2v_tiny dit:wan_ti2v_tokens_tiny dit:wan_i2v_tiny vace:wan_vace_tiny; do
  module=${spec%%:*} name=${spec#*:}
  limit=1e-4
  if [ "$device" = cuda ]; then
    gap=$(step 60 check tf32-gap "$fixtures" "$name" | sed -n 's/.*: //p')
    limit=$($python -c "print(max(1e-4, 4 * float('${gap:-0}')))")
    say "diffusers TF32 gap $name: ${gap:-unmeasured}; r2v f32 limit $limit"
  fi
  step 120 forward "$module" "$name" f32 >/dev/null &&
    say "$(check compare "$fixtures/$name.io.safetensors" "$out/$name.f32.safetensors" output --rel "$limit")"
  step 120 forward "$module" "$name" bf16 >/dev/null &&
    say "$(check compare "$fixtures/$name.io.safetensors" "$out/$name.bf16.safetensors" output --rel 0.05)"
done

# 3. The model directory (started above).
[ -n "${preparing:-}" ] && wait "$preparing"
if [ -z "${preparing:-}" ]; then
  :
elif [ "$(cat "$prepared" 2>/dev/null)" = 0 ]; then
  say "model: $(du -sh "$out/model" | cut -f1)"
else
  say "model: FAILED ($(tail -3 "$out/prepare.log" | tr '\n' ' '))"
fi
model="$out/model"

# 4. One bf16 DiT step.
want 4 && say "$(step 150 check dit "$out" --device "$device" | grep diffusers_)"
want 4 && for attention in flash backend; do
  # burn's own attention materialises [heads, tokens, tokens] scores: fewer repeats.
  repeat=7; [ "$attention" = backend ] && repeat=3
  line=$(step 150 "$r2v" wan forward --device "$device" --kernel-cache "$cache" --attention "$attention" \
    --module vace --dtype bf16 --config "$model/transformer/config.json" --weights "$model/transformer" \
    --inputs "$out/dit_inputs.safetensors" --output "$out/dit_r2v_$attention.safetensors" --repeat "$repeat" | grep '^load')
  say "r2v DiT bf16 ($attention attention): $line"
  say "$(check compare "$out/dit_diffusers.safetensors" "$out/dit_r2v_$attention.safetensors" output --rel 0.05)"
done

# 5. VAE decode.
if want 5; then
say "$(step 150 check vae "$out" --device "$device" | grep diffusers_)"
for tile in none 256; do
  flags=(); [ "$tile" = none ] || flags=(--vae-tile "$tile")
  line=$(step 150 "$r2v" wan forward --device "$device" --kernel-cache "$cache" --module vae-decode \
    --config "$model/vae/config.json" --weights "$model/vae" --inputs "$out/vae_inputs.safetensors" \
    --output "$out/vae_r2v_$tile.safetensors" --repeat 2 "${flags[@]}" | grep '^load')
  say "r2v VAE decode (tiles: $tile): $line"
done
say "$(check compare "$out/vae_diffusers.safetensors" "$out/vae_r2v_none.safetensors" decoded --rel 1e-3)"
fi

# 6. A whole flash request, r2v then diffusers.
if want 6; then
peak="$out/peak_mib.txt"; : > "$peak"
if [ "$device" = cuda ]; then
  (while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$peak"; done) &
  watcher=$!
fi
t0=$(date +%s.%N)
{ timeout "$(limit 300)" "$r2v" run --engine wan --device "$device" --kernel-cache "$cache" \
    --model-dir "$model" --input "$out/request.json" -o "$out/request.mp4" --json \
    > "$out/request.json.out"; } 2>&1 |
  while IFS= read -r line; do echo "$(date +%s.%N) $line"; done > "$out/request.log"
wall=$(since "$t0")
[ -n "${watcher:-}" ] && kill "$watcher"
say "r2v request: wall $wall s, peak device memory $(sort -n "$peak" | tail -1) MiB (whole GPU)"
awk -v t0="$t0" '/encode text|denoise: shot 1\/1, step 1\/|denoise: shot 1\/1, step 4\/|decode:|mux:|done:/ {
  printf "  %.1f s  %s\n", $1 - t0, substr($0, index($0, $2)) }' "$out/request.log" | tee -a "$out/summary.txt"
say "$(step 300 check pipeline "$out" --device "$device" | grep diffusers_pipeline)"
fi
say "done"
