#!/usr/bin/env python3
"""The diffusers side of scripts/gpu-check.sh: a Wan2.1-VACE model directory with random weights,
and diffusers' timings and outputs on the same device for r2v to be compared with.

    vace_check.py prepare OUT [--size 1.3b|tiny]   model dir, DiT-step inputs, VAE inputs, a request
    vace_check.py dit OUT [--device cuda]           WanVACETransformer3DModel bf16, one step: median s
    vace_check.py vae OUT [--device cuda]           AutoencoderKLWan f32 decode of the clip: median s
    vace_check.py pipeline OUT [--device cuda]      WanVACEPipeline, flash σ list, no CFG, what r2v's 5 s
                                                    request generates: wall, stages, peak
    vace_check.py compare REF GOT KEY --rel R       max |Δ| ≤ R·max|ref| (exit 1 when not, or not finite)
    vace_check.py tf32-gap FIXTURE_DIR NAME         diffusers on this GPU with TF32 on vs the CPU fixture

Sizes: `1.3b` is Wan2.1-VACE-1.3B's DiT (30 blocks + 15 VACE blocks, dim 1536) and the real Wan 2.1
VAE, with a reduced umT5 (2 layers at the real width 4096, the tiny test tokenizer); generation at
832x480, 81 frames, one reference. `tiny` is a few-kilobyte model at 64x64 for a CPU dry run.
Every line printed is `name: value` or JSON, so that a cut run still reports what it got.
"""
import argparse
import functools
import importlib.util
import json
import os
import statistics
import sys
import time

import numpy as np
import PIL.Image
import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FLASH_SIGMAS = [1.0, 0.9375, 2.5 / 3.0, 0.625]
SIZES = {
    "1.3b": dict(
        transformer=dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30,
                         vace_layers=list(range(0, 30, 2)), text_dim=4096, freq_dim=256),
        vae=dict(),
        umt5=dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_heads=64),
        height=480, width=832, frames=81, max_area=832 * 480,
        # What r2v generates for a 16:9 request with that max_area (sides multiples of 16).
        request_width=848, request_height=480,
    ),
    "tiny": dict(
        transformer=dict(num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=4,
                         vace_layers=[0, 2], text_dim=32, freq_dim=32),
        vae=dict(base_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1),
        umt5=dict(d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4),
        height=64, width=64, frames=9, max_area=64 * 64,
        request_width=80, request_height=48,
    ),
}


def log(name, value):
    print(f"{name}: {value}", flush=True)


def tiny_tokenizer():
    spec = importlib.util.spec_from_file_location("tiny", os.path.join(ROOT, "scripts", "make-tiny-wan-model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(model, seed, std):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g) * std
            if name.endswith("weight") and ("norm" in name or name.endswith("gamma")):
                r = 1.0 + r * 0.1
            p.copy_(r.to(p.dtype))


def prepare(out, size):
    from diffusers import AutoencoderKLWan, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    s = SIZES[size]
    model = os.path.join(out, "model")
    vae = AutoencoderKLWan(**s["vae"]).eval()
    randomize(vae, 1, 0.02)
    vae.save_pretrained(os.path.join(model, "vae"))
    z = vae.config.z_dim
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), in_channels=z, out_channels=z, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024, vace_in_channels=2 * z + 64,
        **s["transformer"]).eval()
    randomize(transformer, 0, 0.02)
    transformer.to(torch.bfloat16).save_pretrained(os.path.join(model, "transformer"), max_shard_size="20GB")
    umt5 = UMT5EncoderModel(UMT5Config(vocab_size=64, relative_attention_num_buckets=32,
                                       relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                                       dropout_rate=0.0, layer_norm_epsilon=1e-6, **s["umt5"])).eval()
    randomize(umt5, 2, 0.02)
    umt5.to(torch.bfloat16).save_pretrained(os.path.join(model, "text_encoder"))
    tiny = tiny_tokenizer()
    tiny.write_json(os.path.join(model, "tokenizer", "tokenizer.json"), tiny.tokenizer())
    tiny.write_json(os.path.join(model, "scheduler", "scheduler_config.json"), {
        "_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction", "use_flow_sigmas": True,
        "num_train_timesteps": 1000, "flow_shift": 3.0})
    tiny.write_json(os.path.join(model, "model_index.json"), {"_class_name": "WanVACEPipeline"})
    tiny.write_json(os.path.join(model, "r2v.json"), {"max_area": s["max_area"], "text_len": 512})

    g = torch.Generator().manual_seed(3)
    h, w, f = s["height"] // 8, s["width"] // 8, (s["frames"] - 1) // 4 + 1
    text_dim = s["transformer"]["text_dim"]
    save_file({
        "hidden_states": torch.randn(1, z, f + 1, h, w, generator=g),
        "timestep": torch.tensor([937.5]),
        "encoder_hidden_states": torch.randn(1, 512, text_dim, generator=g),
        "control_hidden_states": torch.randn(1, 2 * z + 64, f + 1, h, w, generator=g),
        "control_hidden_states_scale": torch.ones(len(s["transformer"]["vace_layers"])),
    }, os.path.join(out, "dit_inputs.safetensors"))
    save_file({"z": torch.randn(1, z, f, h, w, generator=g)}, os.path.join(out, "vae_inputs.safetensors"))
    rng = np.random.default_rng(4)
    # Odd sides, and at least the 240 px the API asks of a reference.
    side = lambda n: max(243, n)
    reference = (rng.random((side(s["height"] * 3 // 4 + 3), side(s["width"] // 2 + 5), 3)) * 255).astype(np.uint8)
    PIL.Image.fromarray(reference).save(os.path.join(out, "reference.png"))
    json.dump({"prompt": "Character1 walks along a beach at sunset", "image_urls": [os.path.join(out, "reference.png")],
               "resolution": "720p", "duration": "5", "seed": 11, "enable_prompt_expansion": False,
               "enable_audio": False}, open(os.path.join(out, "request.json"), "w"))
    json.dump({"size": size, **{k: s[k] for k in ("request_height", "request_width")}},
              open(os.path.join(out, "check.json"), "w"))
    log("prepared", model)


def timed(fn, device, warmup=2, repeat=5):
    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def dit(out, device):
    from diffusers import WanVACETransformer3DModel

    model = WanVACETransformer3DModel.from_pretrained(os.path.join(out, "model", "transformer"),
                                                      torch_dtype=torch.bfloat16).to(device).eval()
    inputs = load_file(os.path.join(out, "dit_inputs.safetensors"))
    args = {k: (v.to(device, torch.bfloat16) if k != "timestep" else v.to(device)) for k, v in inputs.items()}
    with torch.no_grad():
        seconds, y = timed(lambda: model(**args, return_dict=False)[0], device)
    save_file({"output": y.float().cpu()}, os.path.join(out, "dit_diffusers.safetensors"))
    log("diffusers_dit_bf16_s", f"{seconds:.4f}")


def vae(out, device):
    from diffusers import AutoencoderKLWan

    model = AutoencoderKLWan.from_pretrained(os.path.join(out, "model", "vae"), torch_dtype=torch.float32)
    model = model.to(device).eval()
    z = load_file(os.path.join(out, "vae_inputs.safetensors"))["z"].to(device)
    with torch.no_grad():
        seconds, y = timed(lambda: model.decode(z, return_dict=False)[0], device, warmup=1, repeat=2)
    save_file({"decoded": y.float().cpu()}, os.path.join(out, "vae_diffusers.safetensors"))
    log("diffusers_vae_decode_f32_s", f"{seconds:.3f}")


def pipeline(out, device):
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel
    from transformers import PreTrainedTokenizerFast, UMT5EncoderModel

    check = json.load(open(os.path.join(out, "check.json")))
    model = os.path.join(out, "model")
    started = time.perf_counter()
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    scheduler.set_timesteps = functools.partial(FlowMatchEulerDiscreteScheduler.set_timesteps, scheduler,
                                                sigmas=FLASH_SIGMAS)
    pipe = WanVACEPipeline(
        tokenizer=PreTrainedTokenizerFast(tokenizer_file=os.path.join(model, "tokenizer", "tokenizer.json"),
                                          pad_token="<pad>", eos_token="</s>", unk_token="<unk>"),
        text_encoder=UMT5EncoderModel.from_pretrained(os.path.join(model, "text_encoder"), torch_dtype=torch.bfloat16),
        vae=AutoencoderKLWan.from_pretrained(os.path.join(model, "vae"), torch_dtype=torch.float32),
        scheduler=scheduler,
        transformer=WanVACETransformer3DModel.from_pretrained(os.path.join(model, "transformer"),
                                                              torch_dtype=torch.bfloat16),
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps = []
    started = time.perf_counter()
    with torch.no_grad():
        frames = pipe(prompt="Character1 walks along a beach at sunset",
                      reference_images=[PIL.Image.open(os.path.join(out, "reference.png"))],
                      height=check["request_height"], width=check["request_width"], num_frames=81,
                      num_inference_steps=4, guidance_scale=1.0, output_type="np",
                      generator=torch.Generator(device).manual_seed(11),
                      callback_on_step_end=lambda p, i, t, kw: steps.append(time.perf_counter()) or {}).frames
    if device == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    print(json.dumps({"diffusers_pipeline": {"load_s": round(load_s, 2), "call_s": round(total, 2),
                                             "until_first_step_end_s": round(steps[0] - started, 2),
                                             "denoise_s": round(steps[-1] - started, 2),
                                             "decode_and_rest_s": round(total - (steps[-1] - started), 2),
                                             "peak_allocated_gib": round(peak, 2), "frames": len(frames[0])}}),
          flush=True)


def compare(reference, got, key, rel):
    want = load_file(reference)[key].float()
    have = load_file(got)[key].float()
    if want.shape != have.shape or not torch.isfinite(have).all() or not torch.isfinite(want).all():
        log("compare", f"FAILED {got}: shape {tuple(have.shape)} vs {tuple(want.shape)} or values not finite")
        sys.exit(1)
    scale = float(want.abs().max())
    worst = float((have - want).abs().max())
    mean = float((have - want).abs().mean() / want.abs().mean())
    verdict = "ok" if worst <= rel * scale else "FAILED"
    log("compare", f"{verdict} {os.path.basename(got)} {key}: max |Δ| {worst:.3e} = {worst / scale:.2e} of max|ref| "
                   f"(limit {rel:.1e}), mean |Δ| {mean:.2e} of mean|ref|")
    sys.exit(0 if verdict == "ok" else 1)


def tf32_gap(fixtures, name):
    """How far diffusers itself lands from the CPU f32 fixture with TF32 on (the GPU's f32 matmul mode)."""
    import diffusers

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    config = json.load(open(os.path.join(fixtures, f"{name}.config.json")))
    params = config.get("config", config)
    cls = getattr(diffusers, config.get("_class_name", "WanVACETransformer3DModel" if "vace_layers" in params
                                        else "WanTransformer3DModel"))
    model = cls(**{k: v for k, v in params.items() if not k.startswith("_")}).eval()
    model.load_state_dict(load_file(os.path.join(fixtures, f"{name}.weights.safetensors")))
    model = model.cuda()
    io = load_file(os.path.join(fixtures, f"{name}.io.safetensors"))
    names = ["hidden_states", "timestep", "encoder_hidden_states", "encoder_hidden_states_image",
             "control_hidden_states", "control_hidden_states_scale"]
    args = {k: io[k].cuda() for k in names if k in io}
    with torch.no_grad():
        y = model(**args, return_dict=False)[0].float().cpu()
    want = io["output"]
    log(f"diffusers_tf32_gap_{name}", f"{float((y - want).abs().max() / want.abs().max()):.2e}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command")
    p.add_argument("args", nargs="*")
    p.add_argument("--size", default="1.3b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--rel", type=float, default=1e-4)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    if a.command == "prepare":
        prepare(a.args[0], a.size)
    elif a.command == "dit":
        dit(a.args[0], a.device)
    elif a.command == "vae":
        vae(a.args[0], a.device)
    elif a.command == "pipeline":
        pipeline(a.args[0], a.device)
    elif a.command == "compare":
        compare(*a.args, rel=a.rel)
    elif a.command == "tf32-gap":
        tf32_gap(*a.args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
