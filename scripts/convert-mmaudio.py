#!/usr/bin/env python3
"""Lays out an MMAudio model directory for `r2v --audio-model-dir` from upstream's files.

    python3 scripts/convert-mmaudio.py --variant large_44k_v2 --out DIR \
        --net weights/mmaudio_large_44k_v2.pth \
        --vae ext_weights/v1-44.pth \
        --vocoder bigvgan_v2_44khz_128band_512x/        # config.json + bigvgan_generator.pt
        --synchformer ext_weights/synchformer_state_dict.pth \
        --clip DFN5B-CLIP-ViT-H-14-384/                 # open_clip_config.json + open_clip_pytorch_model.bin

For a 16k variant (small_16k) the vocoder is MMAudio's BigVGAN: `--vocoder ext_weights/best_netG.pt`
(its hyper-parameters are upstream's bigvgan_vocoder.yml, written here). Where to get each file:
README ("Neural audio"). Runs offline, with PyTorch and safetensors (scripts/bench/setup-torch-venv.sh
makes a venv that has them) and open_clip_torch for the tokenizer (scripts/make-clip-tokenizer.py).
Weights are stored as they come (f32 or f16/bf16: r2v widens them); keys keep upstream's names.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))

# mmaudio/ext/bigvgan/bigvgan_vocoder.yml (the generator's part), plus its sample rate.
BIGVGAN_16K = {
    "resblock": "1", "num_mels": 80, "upsample_rates": [4, 4, 2, 2, 2, 2],
    "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4], "upsample_initial_channel": 1536,
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "activation": "snakebeta", "snake_logscale": True, "sampling_rate": 16000,
}


def load(path):
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and "generator" in data:
        data = data["generator"]
    return {k: v.contiguous() for k, v in data.items() if isinstance(v, torch.Tensor)}


def save(tensors, path):
    # safetensors refuses tensors that share memory; clone the views.
    save_file({k: v.clone() for k, v in tensors.items()}, path)
    print(f"wrote {path} ({len(tensors)} tensors)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", required=True,
                    choices=["small_16k", "small_44k", "medium_44k", "large_44k", "large_44k_v2"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--net", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--vocoder", required=True)
    ap.add_argument("--synchformer", required=True)
    ap.add_argument("--clip", required=True)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "clip"), exist_ok=True)

    with open(os.path.join(a.out, "mmaudio.json"), "w") as f:
        json.dump({"variant": a.variant}, f)
    save(load(a.net), os.path.join(a.out, "net.safetensors"))
    save(load(a.vae), os.path.join(a.out, "vae.safetensors"))

    if a.variant.endswith("16k"):
        config, generator = BIGVGAN_16K, a.vocoder
    else:
        with open(os.path.join(a.vocoder, "config.json")) as f:
            config = json.load(f)
        generator = os.path.join(a.vocoder, "bigvgan_generator.pt")
    with open(os.path.join(a.out, "vocoder.json"), "w") as f:
        json.dump(config, f, indent=2)
    save(load(generator), os.path.join(a.out, "vocoder.safetensors"))

    sync = {k: v for k, v in load(a.synchformer).items() if k.startswith("vfeat_extractor.")}
    save(sync, os.path.join(a.out, "synchformer.safetensors"))

    shutil.copyfile(os.path.join(a.clip, "open_clip_config.json"),
                    os.path.join(a.out, "clip", "open_clip_config.json"))
    clip_weights = os.path.join(a.clip, "open_clip_model.safetensors")
    if os.path.exists(clip_weights):
        shutil.copyfile(clip_weights, os.path.join(a.out, "clip", "open_clip_model.safetensors"))
    else:
        save(load(os.path.join(a.clip, "open_clip_pytorch_model.bin")),
             os.path.join(a.out, "clip", "open_clip_model.safetensors"))
    subprocess.run([sys.executable, os.path.join(HERE, "make-clip-tokenizer.py"),
                    os.path.join(a.out, "clip", "tokenizer.json")], check=True)
    print(f"done: check it with `r2v models inspect {a.out}`")


if __name__ == "__main__":
    main()
