"""Times a Wan2.1-T2V-1.3B-shaped DiT forward in diffusers and in r2v on the same GPU.

Random weights (seeded) are saved once in the diffusers layout; both sides load them.
Latent [1, 16, 5, 60, 104] (17 frames of 480x832) = 7 800 tokens, text [1, 512, 4096].
Prints the median of 5 timed forwards after 2 warm-ups, and the max |Δ| between them.
"""
import os
import subprocess
import sys
import time

import numpy as np
import torch
from diffusers import WanTransformer3DModel
from safetensors.numpy import load_file, save_file

r2v, out = sys.argv[1], sys.argv[2]
weights_dir = os.path.join(out, "w13")
torch.manual_seed(0)
model = WanTransformer3DModel(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02)
model.save_pretrained(weights_dir, safe_serialization=True, max_shard_size="20GB")
g = torch.Generator().manual_seed(1)
inputs = {
    "hidden_states": torch.randn(1, 16, 5, 60, 104, generator=g),
    "timestep": torch.tensor([757.0]),
    "encoder_hidden_states": torch.randn(1, 512, 4096, generator=g),
}
save_file({k: v.numpy() for k, v in inputs.items()}, os.path.join(out, "dit13_inputs.safetensors"))


def time_torch(m, dtype):
    args = {k: v.cuda().to(dtype if v.is_floating_point() and k != "timestep" else v.dtype) for k, v in inputs.items()}
    with torch.no_grad():
        for _ in range(2):
            y = m(**args, return_dict=False)[0]
        torch.cuda.synchronize()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            y = m(**args, return_dict=False)[0]
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return float(np.median(times)), y.float().cpu().numpy()


model = model.cuda().eval()
t32, y32 = time_torch(model, torch.float32)
print(f"diffusers f32: {t32 * 1000:.1f} ms")
model = model.to(torch.bfloat16)
t16, _ = time_torch(model, torch.bfloat16)
print(f"diffusers bf16: {t16 * 1000:.1f} ms")
del model
torch.cuda.empty_cache()

result = subprocess.run(
    [r2v, "wan", "forward", "--cuda", "--module", "dit", "--config", os.path.join(weights_dir, "config.json"),
     "--weights", weights_dir, "--inputs", os.path.join(out, "dit13_inputs.safetensors"),
     "--output", os.path.join(out, "dit13_r2v.safetensors"), "--repeat", "7"],
    capture_output=True, text=True,
)
print(result.stdout.strip())
if result.returncode != 0:
    print(result.stderr[-3000:])
    sys.exit(1)
ours = load_file(os.path.join(out, "dit13_r2v.safetensors"))["output"]
line = [l for l in result.stdout.splitlines() if l.startswith("load")][0]
median = float(line.split("forward ")[1].split(" s")[0])
print(f"r2v f32 (burn cuda): {median * 1000:.1f} ms; ratio r2v/diffusers f32 = {median / t32:.2f}x, r2v f32 / diffusers bf16 = {median / t16:.2f}x")
print(f"max |diff| r2v f32 vs diffusers f32: {float(abs(ours - y32).max()):.3e} (max |ref| {float(abs(y32).max()):.3e})")
