"""Compares the `output` tensor of two safetensors files: max |Δ| against 1e-4 · max|reference|."""
import sys

from safetensors.numpy import load_file

reference, candidate, name = sys.argv[1], sys.argv[2], sys.argv[3]
want = load_file(reference)["output"]
got = load_file(candidate)["output"]
scale = float(abs(want).max())
worst = float(abs(got - want).max())
verdict = "ok" if worst <= 1e-4 * scale else "FAILED"
print(f"{verdict} {name}: max |diff| {worst:.3e} (tolerance {1e-4 * scale:.3e})")
sys.exit(0 if verdict == "ok" else 1)
