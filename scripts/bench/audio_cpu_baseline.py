#!/usr/bin/env python3
"""PyTorch baseline for `scripts/bench-audio-cpu.sh`: upstream MMAudio's network (one
guided velocity, batch 2) and its vocoders at the published sizes, with random weights,
on the CPU with a fixed thread count. Writes, per case, under OUT/CASE/:
config.json, weights.safetensors (upstream names, before weight-norm removal as the
checkpoints store them), inputs.safetensors, outputs.safetensors and torch_timing.json
(median seconds of REPEAT runs after one warm-up).

    MMAUDIO_SRC=path/to/MMAudio python3 audio_cpu_baseline.py --out DIR --case CASE \
        [--threads 2] [--repeat 3] [--device cpu|cuda] [--seconds S]

Cases: net_small_16k, net_large_44k_v2 (8 s: 250/345 latents, 64 CLIP frames, 192 sync
tokens, 77 text tokens), vocoder_16k (BigVGAN, 8 s of 80-band mel), vocoder_44k
(BigVGAN-v2 44 kHz 128-band 512x, 2 s of mel).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from safetensors.torch import save_file

SRC = os.environ.get("MMAUDIO_SRC")
if not SRC or not os.path.isdir(os.path.join(SRC, "mmaudio")):
    sys.exit("set MMAUDIO_SRC to a checkout of github.com/hkchengrex/MMAudio (commit 974010a)")
sys.path.insert(0, SRC)

from mmaudio.model.networks import get_my_mmaudio  # noqa: E402
from mmaudio.ext.bigvgan.models import BigVGANVocoder  # noqa: E402
from mmaudio.ext.bigvgan_v2.bigvgan import BigVGAN as BigVGANv2  # noqa: E402


class AttrDict(dict):
    __getattr__ = dict.__getitem__


VOCODER_16K = dict(resblock="1", num_mels=80, upsample_rates=[4, 4, 2, 2, 2, 2],
                   upsample_kernel_sizes=[8, 8, 4, 4, 4, 4], upsample_initial_channel=1536,
                   resblock_kernel_sizes=[3, 7, 11],
                   resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                   activation="snakebeta", snake_logscale=True, sampling_rate=16000)
VOCODER_44K = dict(resblock="1", num_mels=128, upsample_rates=[4, 4, 2, 2, 2, 2],
                   upsample_kernel_sizes=[8, 8, 4, 4, 4, 4], upsample_initial_channel=1536,
                   resblock_kernel_sizes=[3, 7, 11],
                   resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                   activation="snakebeta", snake_logscale=True, use_tanh_at_final=False,
                   use_bias_at_final=False, sampling_rate=44100)


def randomize_(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        fan_in = p[0].numel() if p.ndim > 1 else 1
        std = fan_in ** -0.5 if p.ndim > 1 else 0.1
        r = torch.randn(p.shape, generator=g) * std
        if name.endswith("norm.weight"):
            r = 1.0 + r
        if "latent_std" in name:
            r = 0.5 + r.abs()
        p.data.copy_(r)


def timed(fn, repeat, device):
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU check)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="vocoder cases: seconds of mel (default 8 for 16k, 2 for 44k)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    out = os.path.join(a.out, a.case)
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(7)

    if a.case.startswith("net_"):
        name = a.case[len("net_"):]
        net = get_my_mmaudio(name).eval()
        randomize_(net, 1)
        config = dict(latent_dim=net.latent_dim, clip_dim=1024, sync_dim=768, text_dim=1024,
                      hidden_dim=net.hidden_dim, depth=len(net.joint_blocks) + len(net.fused_blocks),
                      fused_depth=len(net.fused_blocks), num_heads=net.num_heads, mlp_ratio=4.0,
                      latent_seq_len=net.latent_seq_len, clip_seq_len=net.clip_seq_len,
                      sync_seq_len=net.sync_seq_len, text_seq_len=77, v2=net.v2)
        b = 2
        inputs = {
            "latent": torch.randn(b, net.latent_seq_len, net.latent_dim, generator=g),
            "clip_f": torch.randn(b, net.clip_seq_len, 1024, generator=g),
            "sync_f": torch.randn(b, net.sync_seq_len, 768, generator=g),
            "text_f": torch.randn(b, 77, 1024, generator=g),
            "t": torch.rand(b, generator=g),
        }
        dev = {k: v.to(a.device) for k, v in inputs.items()}
        net = net.to(a.device)
        flow, median = timed(lambda: net(**dev), a.repeat, a.device)
        outputs = {"flow": flow.cpu()}
        weights = net.state_dict()
    else:
        h = VOCODER_16K if a.case == "vocoder_16k" else VOCODER_44K
        if a.case == "vocoder_16k":
            model = BigVGANVocoder(AttrDict(h)).eval()
            frames = int((a.seconds or 8) * 16000 / 256)
        else:
            model = BigVGANv2(AttrDict(h), use_cuda_kernel=False).eval()
            frames = int((a.seconds or 2) * 44100 / 512)
        randomize_(model, 2)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        model.remove_weight_norm()
        config = h
        inputs = {"mel": torch.randn(1, h["num_mels"], frames, generator=g) - 4.0}
        model = model.to(a.device)
        mel = inputs["mel"].to(a.device)
        audio, median = timed(lambda: model(mel), a.repeat, a.device)
        outputs = {"audio": audio.reshape(1, -1).cpu()}

    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, os.path.join(out, "weights.safetensors"))
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(out, "inputs.safetensors"))
    save_file({k: v.contiguous() for k, v in outputs.items()}, os.path.join(out, "outputs.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(out, "torch_timing.json"), "w") as f:
        json.dump({"median_s": median, "threads": a.threads, "repeat": a.repeat,
                   "device": a.device, "torch": torch.__version__}, f)
    print(f"{a.case}: torch median {median:.3f} s")


if __name__ == "__main__":
    main()
