#!/usr/bin/env bash
# Create the PyTorch/diffusers venv used by scripts/bench/wan_cpu_baseline.py
# (and by crates/r2v-audio/tests/fixtures/make_fixtures.py: einops/omegaconf/torchdiffeq).
# Usage: scripts/bench/setup-torch-venv.sh   (TORCH_VENV overrides the location)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${TORCH_VENV:-$REPO/.venv-torch}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
fi

FIND_LINKS=()
if [ -d "$REPO/.whl" ] && ls "$REPO"/.whl/diffusers-0.42.1-*.whl >/dev/null 2>&1; then
    FIND_LINKS=(--find-links "$REPO/.whl")
fi

"$VENV/bin/python" -m pip install --upgrade pip
# The torch wheel is CUDA-linked (~5.7 GB with its nvidia-* deps); that is expected.
"$VENV/bin/python" -m pip install "${FIND_LINKS[@]}" \
    torch==2.15.0 diffusers==0.42.1 transformers==5.24.0 accelerate==1.15.0 ftfy==6.3.1 Pillow==13.0.0 safetensors numpy \
    einops==0.8.2 omegaconf==2.4.0 torchdiffeq==0.2.5 scipy==1.17.1 \
    open_clip_torch==3.3.0 torchvision==0.29.2 timm==1.0.31

"$VENV/bin/python" - <<'PY'
import torch, diffusers, transformers, safetensors, numpy
print("torch", torch.__version__, "| diffusers", diffusers.__version__,
      "| transformers", transformers.__version__, "| numpy", numpy.__version__)
PY
