#!/usr/bin/env python3
"""Writes a tiny MMAudio model directory (the layout `r2v --audio-model-dir` reads), for
tests and CI.

    python3 scripts/make-tiny-audio-model.py OUT_DIR

Standard library only. The weights are the project's golden fixtures (random, tiny,
`crates/r2v-audio/tests/fixtures`), so the directory is the same on every machine:
- net, vae, vocoder: the `pipeline_16k` fixture (a 2-block width-12 MMAudio network, the
  tiny 80-band mel VAE, a BigVGAN with the real 16 kHz hop of 256), with the tensors whose
  shapes follow the encoders' widths (`clip_input_proj.0.weight`, `text_input_proj.0.weight`,
  `sync_input_proj.0.weight`, `empty_clip_feat`, `empty_string_feat`, `empty_sync_feat`,
  `sync_pos_emb`) redrawn for the tiny encoders below (seeded);
- clip/: the `clip_tiny` fixture (a 2-layer ViT on 28-px frames and a 2-layer text tower
  over open_clip's real 49 408-token vocabulary) and open_clip's tokenizer as tokenizer.json;
- synchformer.safetensors: the `synchformer_tiny` fixture (2 divided space-time blocks of
  width 32 on 48-px frames).
Its sound is noise: the weights are random. A 5 s track takes well under a second on a CPU.
"""

import importlib.util
import json
import os
import random
import shutil
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "crates", "r2v-audio", "tests", "fixtures")

spec = importlib.util.spec_from_file_location(
    "tiny_wan", os.path.join(ROOT, "scripts", "make-tiny-wan-model.py"))
tiny_wan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny_wan)


def redrawn(rng, shape, scale):
    count = 1
    for n in shape:
        count *= n
    values = [rng.gauss(0.0, scale) for _ in range(count)]
    return ("F32", shape, struct.pack(f"<{count}f", *values))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-tiny-audio-model.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "clip"), exist_ok=True)
    source = os.path.join(FIXTURES, "pipeline_16k")
    with open(os.path.join(source, "mmaudio.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(FIXTURES, "clip_tiny.config.json")) as f:
        clip_cfg = json.load(f)["model_cfg"]
    network = manifest["network"]
    width = network["hidden_dim"]
    with open(os.path.join(FIXTURES, "synchformer_tiny.config.json")) as f:
        sync_cfg = json.load(f)["config"]
    network.update(clip_dim=clip_cfg["embed_dim"], text_dim=clip_cfg["text_cfg"]["width"],
                   text_seq_len=clip_cfg["text_cfg"]["context_length"],
                   sync_dim=sync_cfg["embed_dim"])
    manifest["variant"] = "tiny_16k"
    manifest["synchformer"] = {k: sync_cfg[k] for k in ["img_size", "embed_dim", "depth", "num_heads"]}

    rng = random.Random(20261129)
    net = tiny_wan.read_safetensors(os.path.join(source, "net.safetensors"))
    clip_dim, text_dim, text_len = network["clip_dim"], network["text_dim"], network["text_seq_len"]
    sync_dim = network["sync_dim"]
    net["clip_input_proj.0.weight"] = redrawn(rng, [width, clip_dim], clip_dim ** -0.5)
    net["text_input_proj.0.weight"] = redrawn(rng, [width, text_dim], text_dim ** -0.5)
    net["empty_clip_feat"] = redrawn(rng, [1, clip_dim], 0.25)
    net["empty_string_feat"] = redrawn(rng, [text_len, text_dim], 0.2)
    net["sync_input_proj.0.weight"] = redrawn(rng, [width, sync_dim, 7], (7 * sync_dim) ** -0.5)
    net["empty_sync_feat"] = redrawn(rng, [1, sync_dim], 0.25)
    net["sync_pos_emb"] = redrawn(rng, [1, 1, 8, sync_dim], 0.2)
    tiny_wan.write_safetensors(os.path.join(out, "net.safetensors"), net)
    tiny_wan.write_json(os.path.join(out, "mmaudio.json"), manifest)
    for name in ["vae.safetensors", "vocoder.json", "vocoder.safetensors"]:
        shutil.copyfile(os.path.join(source, name), os.path.join(out, name))
    shutil.copyfile(os.path.join(FIXTURES, "synchformer_tiny.weights.safetensors"),
                    os.path.join(out, "synchformer.safetensors"))
    shutil.copyfile(os.path.join(FIXTURES, "clip_tiny.config.json"),
                    os.path.join(out, "clip", "open_clip_config.json"))
    shutil.copyfile(os.path.join(FIXTURES, "clip_tiny.weights.safetensors"),
                    os.path.join(out, "clip", "open_clip_model.safetensors"))
    shutil.copyfile(os.path.join(FIXTURES, "clip_tokenizer.json"),
                    os.path.join(out, "clip", "tokenizer.json"))
    print(f"wrote a tiny MMAudio directory to {out}")


if __name__ == "__main__":
    main()
