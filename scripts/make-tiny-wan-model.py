#!/usr/bin/env python3
"""Writes a tiny Wan2.1-VACE model directory in the diffusers layout, for tests and CI.

    python3 scripts/make-tiny-wan-model.py OUT_DIR

Standard library only. The weights are the project's golden fixtures (random, tiny), so the
directory is the same on every machine:
- transformer/ and vae/: the `wan_vace_r2v_pipeline_tiny` fixture (a 4-layer dim-64 VACE DiT and
  the tiny Wan 2.1 VAE, whose outputs diffusers computed);
- text_encoder/: the `umt5_tiny` fixture (2 layers, d_model 32, vocab 64);
- tokenizer/tokenizer.json: a 64-piece Unigram tokenizer (lower-cased letters, digits,
  punctuation and a few pieces), shaped like umt5-xxl's (Metaspace, `</s>` appended);
- scheduler/scheduler_config.json (UniPC, flow_shift 3) and r2v.json (a 48x32 generation size,
  2 standard steps), so that a 5 s request runs in seconds on a CPU.
The content of its videos is noise: the weights are random.
"""

import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "crates", "r2v-wan", "tests", "fixtures")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], body[start:end])
    return tensors


def write_safetensors(path, tensors):
    header, offset, chunks = {}, 0, []
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for raw in chunks:
            f.write(raw)


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def tokenizer():
    pieces = ["\u2581"] + list("abcdefghijklmnopqrstuvwxyz0123456789") + list(",.!?'-:")
    pieces += ["\u2581a", "\u2581t", "\u2581s", "\u2581c", "th", "he", "in", "er", "an", "on", "re",
               "\u2581the", "\u2581and", "ing", "ch", "\u2581o", "\u2581w"]
    vocab = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    vocab += [[p, -1.0 - len(p) * 0.1 if len(p) > 1 else -4.0] for p in pieces]
    assert len(vocab) <= 64, len(vocab)
    while len(vocab) < 64:
        vocab.append([f"<extra_{len(vocab)}>", -20.0])
    special = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False,
                            "rstrip": False, "normalized": False, "special": True}
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    eos = {"SpecialToken": {"id": "</s>", "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, eos],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, eos, {"Sequence": {"id": "B", "type_id": 0}}, eos],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}},
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": False},
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    name = os.path.join(FIXTURES, "pipeline", "wan_vace_r2v_pipeline_tiny")
    config = json.load(open(name + ".config.json"))
    weights = read_safetensors(name + ".weights.safetensors")
    for part, class_name in (("transformer", "WanVACETransformer3DModel"), ("vae", "AutoencoderKLWan")):
        prefix = part + "."
        part_weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        write_json(os.path.join(out, part, "config.json"),
                   {"_class_name": class_name, "_diffusers_version": "0.42.1", **config[part]["config"]})
        write_safetensors(os.path.join(out, part, "diffusion_pytorch_model.safetensors"), part_weights)

    umt5 = json.load(open(os.path.join(FIXTURES, "umt5_tiny.config.json")))
    write_json(os.path.join(out, "text_encoder", "config.json"),
               {"architectures": ["UMT5EncoderModel"], **umt5})
    write_safetensors(os.path.join(out, "text_encoder", "model.safetensors"),
                      read_safetensors(os.path.join(FIXTURES, "umt5_tiny.weights.safetensors")))
    write_json(os.path.join(out, "tokenizer", "tokenizer.json"), tokenizer())
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), {
        "_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction",
        "use_flow_sigmas": True, "num_train_timesteps": 1000, "flow_shift": 3.0})
    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "WanVACEPipeline", "_diffusers_version": "0.42.1",
        "transformer": ["diffusers", "WanVACETransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "scheduler": ["diffusers", "UniPCMultistepScheduler"]})
    write_json(os.path.join(out, "r2v.json"), {"max_area": 1536, "steps": 2, "text_len": 512})
    print(out)


if __name__ == "__main__":
    main()
