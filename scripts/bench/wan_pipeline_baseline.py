#!/usr/bin/env python3
"""PyTorch/diffusers CPU baseline of the whole WanVACEPipeline (R2V, one reference).

Builds a "small" WanVACETransformer3DModel plus the default Wan 2.1 AutoencoderKLWan with fixed
seeds and random weights, writes them and the inputs in the layout `r2v wan pipeline` reads, runs
diffusers' WanVACEPipeline on CPU and times it per denoising step.

Usage (from the repo root, after scripts/bench/setup-torch-venv.sh):
    .venv-torch/bin/python scripts/bench/wan_pipeline_baseline.py --out DIR --threads N [--steps 4]

Writes
    DIR/model/model_index.json                       {"_class_name": "WanVACEPipeline"}
    DIR/model/scheduler/scheduler_config.json        UniPC, flow_shift 3.0
    DIR/model/{transformer,vae}/config.json + diffusion_pytorch_model.safetensors (one file each)
    DIR/inputs.safetensors         prompt_embeds [1,512,4096], negative_prompt_embeds [1,512,4096],
                                   initial_latents [1,16,6,32,32], ref_image_0_hwc_u8 [192,256,3]
    DIR/torch_outputs.safetensors  final_latents [1,16,5,32,32] (reference frame dropped),
                                   decoded_video [1,3,17,256,256] (VAE output, in [-1,1]),
                                   latents_after_step{k} [1,16,6,32,32]
    DIR/torch_timing.json          the JSON line printed on stdout:
        {"threads", "steps", "step_s", "median_step_s", "vae_decode_s", "total_s",
         "first_step_s", "prep_s", "vae_encode_s"}
    step_s are the differences between consecutive step ends (steps 2..N). first_step_s runs from
    the first transformer call to the end of step 1; prep_s from the pipeline call to the first
    transformer call (mostly the three VAE encodes, timed together as vae_encode_s).

The same run with our tool (all floats f32):
    r2v wan pipeline --model-dir DIR/model --inputs DIR/inputs.safetensors --output OUT.safetensors \
        --height 256 --width 256 --num-frames 17 --steps N --schedule unipc --guidance 5

Weight init as in wan_cpu_baseline.py: every parameter ~ N(0, 0.02), norm gains 1.0, norm biases 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wan_cpu_baseline import init_weights  # noqa: E402  (same init as the per-module baseline)

TRANSFORMER_SEED = 0
VAE_SEED = 1
INPUT_SEED = 2

HEIGHT, WIDTH, NUM_FRAMES = 256, 256, 17
TEXT_LEN, PROMPT_VALID, NEG_VALID = 512, 12, 8
REF_HW = (192, 256)
GUIDANCE = 5.0
FLOW_SHIFT = 3.0

TRANSFORMER_KW = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=4,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=2048,
    num_layers=4,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
    rope_max_seq_len=1024,
    vace_layers=[0, 2],
    vace_in_channels=96,  # inactive z (16) + reactive z (16) + 8x8-unshuffled mask (64)
)
UNIPC_KW = dict(
    prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT
)


def ref_pattern(h: int, w: int) -> np.ndarray:
    """Deterministic uint8 RGB pattern [h, w, 3]: x/y gradients + 4px checkerboard (hits 0 and 255)."""
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    r = (x * 255) // (w - 1)
    g = (y * 255) // (h - 1)
    b = (((x // 4) + (y // 4)) % 2) * 255
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def build_models():
    from diffusers import AutoencoderKLWan, WanVACETransformer3DModel

    torch.manual_seed(TRANSFORMER_SEED)
    transformer = WanVACETransformer3DModel(**TRANSFORMER_KW).eval()
    init_weights(transformer, torch.Generator().manual_seed(TRANSFORMER_SEED))
    torch.manual_seed(VAE_SEED)
    vae = AutoencoderKLWan().eval()  # default = Wan 2.1 VAE (z_dim 16, default latents_mean/std)
    init_weights(vae, torch.Generator().manual_seed(VAE_SEED))
    return transformer, vae


def build_inputs(transformer, vae) -> dict:
    g = torch.Generator().manual_seed(INPUT_SEED)
    text_dim = transformer.config.text_dim
    prompt_embeds = torch.zeros(1, TEXT_LEN, text_dim)
    prompt_embeds[:, :PROMPT_VALID] = torch.randn(1, PROMPT_VALID, text_dim, generator=g)
    negative_prompt_embeds = torch.zeros(1, TEXT_LEN, text_dim)
    negative_prompt_embeds[:, :NEG_VALID] = torch.randn(1, NEG_VALID, text_dim, generator=g)
    t_scale = 2 ** sum(vae.config.temperal_downsample)  # 4
    s_scale = 2 ** len(vae.config.temperal_downsample)  # 8
    n_ref = 1
    n_lat = n_ref + (NUM_FRAMES - 1) // t_scale + 1  # 1 + 5
    initial_latents = torch.randn(
        1, transformer.config.in_channels, n_lat, HEIGHT // s_scale, WIDTH // s_scale, generator=g
    )
    ref = ref_pattern(*REF_HW)
    return {
        "prompt_embeds": prompt_embeds,
        "negative_prompt_embeds": negative_prompt_embeds,
        "initial_latents": initial_latents,
        "ref_image_0_hwc_u8": torch.from_numpy(ref.astype(np.float32)),
    }


def save_tensors(path: Path, tensors: dict) -> None:
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, str(path))


def write_model_dir(model_dir: Path, transformer, vae) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    for name, module in (("transformer", transformer), ("vae", vae)):
        sub = model_dir / name
        module.save_pretrained(sub, safe_serialization=True, max_shard_size="10GB")
        files = sorted(p.name for p in sub.glob("*.safetensors"))
        assert files == ["diffusion_pytorch_model.safetensors"], f"{sub}: unexpected weight files {files}"
        assert not list(sub.glob("*.index.json")), f"{sub}: sharded"
    (model_dir / "model_index.json").write_text(json.dumps({"_class_name": "WanVACEPipeline"}, indent=2) + "\n")
    (model_dir / "scheduler").mkdir(exist_ok=True)
    (model_dir / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "UniPCMultistepScheduler", "flow_shift": FLOW_SHIFT}, indent=2) + "\n"
    )


def run_pipeline(transformer, vae, inputs: dict, steps: int, threads: int):
    from diffusers import UniPCMultistepScheduler, WanVACEPipeline

    pipe = WanVACEPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        scheduler=UniPCMultistepScheduler(**UNIPC_KW),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    n_ref = 1
    ref_pil = PIL.Image.fromarray(inputs["ref_image_0_hwc_u8"].numpy().astype(np.uint8))
    assert np.array_equal(np.asarray(ref_pil).astype(np.float32), inputs["ref_image_0_hwc_u8"].numpy())

    rec = {"encode_s": [], "decode_s": [], "decode": [], "tr_start": [], "step_end": [], "after": []}

    # Instance-attribute wrappers (timing + capture); numerics untouched.
    def timed(obj, name, key, keep=None):
        orig = getattr(obj, name)

        @functools.wraps(orig)
        def f(*a, **k):
            t0 = time.perf_counter()
            out = orig(*a, **k)
            rec[key].append(time.perf_counter() - t0)
            if keep is not None:
                keep(a, out)
            return out

        setattr(obj, name, f)

    timed(vae, "encode", "encode_s")
    timed(
        vae,
        "decode",
        "decode_s",
        keep=lambda a, out: rec["decode"].append(
            (a[0].clone(), (out[0] if isinstance(out, tuple) else out.sample).clone())
        ),
    )
    hook = transformer.register_forward_pre_hook(lambda m, a: rec["tr_start"].append(time.perf_counter()))

    def on_step_end(p, i, t, kw):
        rec["step_end"].append(time.perf_counter())
        rec["after"].append(kw["latents"].clone())
        return {}

    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            t_call = time.perf_counter()
            out = pipe(
                prompt_embeds=inputs["prompt_embeds"].clone(),
                negative_prompt_embeds=inputs["negative_prompt_embeds"].clone(),
                # A list of PIL images (np arrays / tensors are refused). With several references
                # diffusers puts the LAST one first in the latent frame order.
                reference_images=[ref_pil],
                conditioning_scale=1.0,
                height=HEIGHT,
                width=WIDTH,
                num_frames=NUM_FRAMES,
                num_inference_steps=steps,
                guidance_scale=GUIDANCE,
                latents=inputs["initial_latents"].clone(),
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
            total_s = time.perf_counter() - t_call
    finally:
        hook.remove()
        del vae.encode, vae.decode  # drop the instance attributes -> class methods again

    assert len(rec["step_end"]) == steps, rec["step_end"]
    cfg_calls = 2 if GUIDANCE > 1.0 else 1
    assert len(rec["tr_start"]) == cfg_calls * steps, len(rec["tr_start"])
    assert len(rec["decode"]) == 1, "expected exactly one vae.decode call"

    final_latents = rec["after"][-1][:, :, n_ref:]
    dec_in, decoded = rec["decode"][0]
    # the pipeline decodes final_latents * std + mean (per channel)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(dec_in, final_latents * std + mean, rtol=1e-5, atol=1e-5)
    assert decoded.shape == (1, 3, NUM_FRAMES, HEIGHT, WIDTH), decoded.shape
    frames = np.asarray(out.frames)  # [1, F, H, W, 3] in [0, 1]
    np.testing.assert_allclose(
        frames[0], ((decoded[0].permute(1, 2, 3, 0).numpy() + 1) / 2).clip(0, 1), rtol=0, atol=1e-6
    )

    ends = rec["step_end"]
    step_s = [b - a for a, b in zip(ends, ends[1:])]
    timing = {
        "threads": threads,
        "steps": steps,
        "step_s": step_s,
        "median_step_s": statistics.median(step_s) if step_s else None,
        "vae_decode_s": rec["decode_s"][0],
        "total_s": total_s,
        "first_step_s": ends[0] - rec["tr_start"][0],
        "prep_s": rec["tr_start"][0] - t_call,
        "vae_encode_s": sum(rec["encode_s"]),
    }
    outputs = {"final_latents": final_latents, "decoded_video": decoded}
    for k, lat in enumerate(rec["after"]):
        outputs[f"latents_after_step{k}"] = lat
    stats = {
        "final_latents_std": final_latents.std().item(),
        "decoded_absmax": decoded.abs().max().item(),
        "decoded_std": decoded.std().item(),
        "timesteps": pipe.scheduler.timesteps.tolist(),
        "vae_encode_calls": len(rec["encode_s"]),
    }
    return timing, outputs, stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    ap.add_argument("--steps", type=int, default=4, help="num_inference_steps")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    transformer, vae = build_models()
    inputs = build_inputs(transformer, vae)
    write_model_dir(args.out / "model", transformer, vae)
    save_tensors(args.out / "inputs.safetensors", inputs)
    setup_s = time.perf_counter() - t0

    timing, outputs, stats = run_pipeline(transformer, vae, inputs, args.steps, args.threads)
    save_tensors(args.out / "torch_outputs.safetensors", outputs)
    (args.out / "torch_timing.json").write_text(json.dumps(timing) + "\n")
    print(json.dumps(timing), flush=True)
    n_tr = sum(p.numel() for p in transformer.parameters())
    n_vae = sum(p.numel() for p in vae.parameters())
    print(
        f"# torch {torch.__version__}, setup {setup_s:.1f}s, params transformer {n_tr} vae {n_vae}, "
        f"{json.dumps(stats)}",
        file=sys.stderr,
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
