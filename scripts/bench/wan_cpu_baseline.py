#!/usr/bin/env python3
"""PyTorch/diffusers CPU baseline for the r2v-wan (burn) port.

For each case this builds the diffusers module with a fixed seed and random
weights, dumps config/weights/inputs/outputs as the fixture the Rust side
loads, and times the forward pass on CPU.

Usage (from the repo root, after scripts/bench/setup-torch-venv.sh):
    .venv-torch/bin/python scripts/bench/wan_cpu_baseline.py \
        --out /tmp/wan-bench --threads 2 --repeat 2 [--case dit512 block1_3b vae_decode]

Writes DIR/<case>/{config.json, weights.safetensors, inputs.safetensors,
outputs.safetensors, torch_timing.json} and prints one JSON line per case:
    {"case", "threads", "median_s", "min_s", "runs"}

Weight init: every parameter ~ N(0, 0.02) (biases and scale_shift_tables
included), except normalization layers (LayerNorm / RMSNorm / WanRMS_norm),
whose gains are 1.0 and biases 0.0. Inputs ~ N(0, 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

SEED = 0
WEIGHT_STD = 0.02

TRANSFORMER_COMMON = dict(
    patch_size=(1, 2, 2),
    in_channels=16,
    out_channels=16,
    freq_dim=256,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)

CASES = {
    # 4-layer, 512-wide DiT; 2048 tokens (2 frames x 32 x 32 patches).
    "dit512": dict(
        kind="transformer",
        kwargs=dict(
            TRANSFORMER_COMMON,
            num_attention_heads=4,
            attention_head_dim=128,
            text_dim=512,
            ffn_dim=2048,
            num_layers=4,
        ),
        inputs=dict(hidden_states=(1, 16, 2, 64, 64), encoder_hidden_states=(1, 64, 512)),
    ),
    # Wan 2.1 1.3B widths, one block; 4096 tokens (4 frames x 32 x 32 patches).
    "block1_3b": dict(
        kind="transformer",
        kwargs=dict(
            TRANSFORMER_COMMON,
            num_attention_heads=12,
            attention_head_dim=128,
            text_dim=4096,
            ffn_dim=8960,
            num_layers=1,
        ),
        inputs=dict(hidden_states=(1, 16, 4, 64, 64), encoder_hidden_states=(1, 512, 4096)),
    ),
    # Default Wan 2.1 VAE; latent 3 frames x 16 x 16 -> 9 frames x 128 x 128.
    "vae_decode": dict(
        kind="vae",
        kwargs=dict(),
        inputs=dict(z=(1, 16, 3, 16, 16)),
    ),
}


def jsonable(x):
    """Recursively convert tuples (and other config values) to JSON-friendly types."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, torch.dtype):
        return str(x).removeprefix("torch.")
    raise TypeError(f"config value of type {type(x).__name__} is not JSON-serializable: {x!r}")


def is_norm_module(m: torch.nn.Module) -> bool:
    name = type(m).__name__
    return (
        isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm))
        or "Norm" in name
        or name.endswith("_norm")
    )


@torch.no_grad()
def init_weights(module: torch.nn.Module, gen: torch.Generator) -> None:
    norm_params = set()
    for m in module.modules():
        if is_norm_module(m):
            for pname, p in m.named_parameters(recurse=False):
                norm_params.add(id(p))
                if pname in ("weight", "gamma"):
                    p.fill_(1.0)
                else:  # bias / beta
                    p.zero_()
    # named_parameters() order is deterministic, so the draw is reproducible.
    for _, p in module.named_parameters():
        if id(p) in norm_params:
            continue
        p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * WEIGHT_STD)


def build(case: str):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    spec = CASES[case]
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    if spec["kind"] == "transformer":
        module = WanTransformer3DModel(**spec["kwargs"])
    else:
        module = AutoencoderKLWan(**spec["kwargs"])
    module = module.eval()  # constructed in fp32 (torch default dtype)
    init_weights(module, gen)

    in_gen = torch.Generator().manual_seed(SEED + 1)
    inputs = {
        name: torch.randn(shape, generator=in_gen, dtype=torch.float32)
        for name, shape in spec["inputs"].items()
    }
    if spec["kind"] == "transformer":
        inputs["timestep"] = torch.tensor([500.0], dtype=torch.float32)
        fn = lambda: module(**inputs, return_dict=False)[0]  # noqa: E731
        out_key = "output"
    else:
        fn = lambda: module.decode(inputs["z"], return_dict=False)[0]  # noqa: E731
        out_key = "decoded"
    return module, inputs, fn, out_key


def save_tensors(path: Path, tensors: dict) -> None:
    save_file(
        {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()},
        str(path),
    )


def run_case(case: str, out_dir: Path, threads: int, repeat: int) -> dict:
    case_dir = out_dir / case
    case_dir.mkdir(parents=True, exist_ok=True)

    module, inputs, fn, out_key = build(case)

    cfg = dict(module.config)
    cfg["_class_name"] = type(module).__name__
    if "_use_default_values" in cfg:  # built from a set; sort for reproducible files
        cfg["_use_default_values"] = sorted(cfg["_use_default_values"])
    cfg = jsonable(cfg)
    (case_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    save_tensors(case_dir / "weights.safetensors", module.state_dict())
    save_tensors(case_dir / "inputs.safetensors", inputs)

    torch.set_num_threads(threads)
    times = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = fn()  # warm-up; its output is the reference (forward is deterministic)
        warmup_s = time.perf_counter() - t0
        save_tensors(case_dir / "outputs.safetensors", {out_key: out})
        stats = dict(
            shape=list(out.shape),
            mean=out.mean().item(),
            std=out.std().item(),
            absmax=out.abs().max().item(),
        )
        del out
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)

    timing = {
        "case": case,
        "threads": threads,
        "median_s": statistics.median(times) if times else None,
        "min_s": min(times) if times else None,
        "runs": times,
    }
    (case_dir / "torch_timing.json").write_text(json.dumps(timing) + "\n")
    print(json.dumps(timing), flush=True)
    print(
        f"# {case}: warmup {warmup_s:.3f}s, torch {torch.__version__}, "
        f"params {sum(p.numel() for p in module.parameters())}, {out_key} {json.dumps(stats)}",
        file=sys.stderr,
        flush=True,
    )
    return timing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output directory (one subdirectory per case)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up")
    ap.add_argument(
        "--case",
        nargs="+",
        action="extend",
        choices=list(CASES),
        help="cases to run (repeatable; default: all)",
    )
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    cases = list(dict.fromkeys(args.case)) if args.case else list(CASES)
    for case in cases:
        run_case(case, args.out, args.threads, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
