#!/usr/bin/env python3
"""ViT forward pass: labelscope (candle, CPU) vs PyTorch CPU, side by side.

Usage: python3 bench/vit_compare.py [BINARY] [--out bench-out/vit]
(needs torch; `python3 -m pip install torch numpy`). For DINO ViT-S/16 and
ViT-B/8 with random weights at 224 px: writes the weights as safetensors,
times PyTorch (same ops as DINO's vision_transformer.py, torch.no_grad,
torch.get_num_threads() threads) and `labelscope bench-vit` on them, batch 1
and 8, median of 5 after a warm-up, and prints a Markdown table."""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from safetensors_io import save as save_safetensors  # noqa: E402


def make(dim, depth, patch, side):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02
    t = {"cls_token": r(1, 1, dim), "pos_embed": r(1, 1 + side * side, dim),
         "patch_embed.proj.weight": r(dim, 3, patch, patch), "patch_embed.proj.bias": r(dim),
         "norm.weight": 1 + r(dim), "norm.bias": r(dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        for n, s in [("norm1.weight", (dim,)), ("norm1.bias", (dim,)), ("attn.qkv.weight", (3 * dim, dim)),
                     ("attn.qkv.bias", (3 * dim,)), ("attn.proj.weight", (dim, dim)), ("attn.proj.bias", (dim,)),
                     ("norm2.weight", (dim,)), ("norm2.bias", (dim,)), ("mlp.fc1.weight", (4 * dim, dim)),
                     ("mlp.fc1.bias", (4 * dim,)), ("mlp.fc2.weight", (dim, 4 * dim)), ("mlp.fc2.bias", (dim,))]:
            t[p + n] = r(*s) + (1 if n.startswith("norm") and n.endswith("weight") else 0)
    return t


def torch_forward(t, x, dim, depth, heads, patch):
    b = x.shape[0]
    tok = F.conv2d(x, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    h = torch.cat([t["cls_token"].expand(b, -1, -1), tok], 1) + t["pos_embed"]
    n = h.shape[1]
    for i in range(depth):
        p = f"blocks.{i}."
        y = F.layer_norm(h, (dim,), t[p + "norm1.weight"], t[p + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(y, t[p + "attn.qkv.weight"], t[p + "attn.qkv.bias"]).reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        o = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1) @ v
        h = h + F.linear(o.transpose(1, 2).reshape(b, n, dim), t[p + "attn.proj.weight"], t[p + "attn.proj.bias"])
        y = F.layer_norm(h, (dim,), t[p + "norm2.weight"], t[p + "norm2.bias"], eps=1e-6)
        h = h + F.linear(F.gelu(F.linear(y, t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"])), t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"])
    return F.layer_norm(h, (dim,), t["norm.weight"], t["norm.bias"], eps=1e-6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="target/release/labelscope")
    ap.add_argument("--out", default="bench-out/vit")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for name, dim, depth, heads, patch in [("ViT-S/16", 384, 12, 6, 16), ("ViT-B/8", 768, 12, 12, 8)]:
        side = 224 // patch
        t = make(dim, depth, patch, side)
        path = os.path.join(a.out, f"{name.replace('/', '_')}.safetensors")
        if not os.path.exists(path):
            save_safetensors(path, {k: v.numpy().astype("<f4") for k, v in t.items()})
        for batch in (1, 8):
            x = torch.randn(batch, 3, 224, 224)
            with torch.no_grad():
                torch_forward(t, x, dim, depth, heads, patch)
                ts = []
                for _ in range(a.repeats):
                    s = time.perf_counter()
                    torch_forward(t, x, dim, depth, heads, patch)
                    ts.append(time.perf_counter() - s)
            pt = sorted(ts)[len(ts) // 2]
            out = subprocess.run([a.binary, "bench-vit", "--weights", path, "--arch", f"{dim}:{depth}:{heads}:{patch}",
                                  "--batch", str(batch), "--repeats", str(a.repeats)], capture_output=True, text=True, check=True)
            ls = json.loads(out.stdout)["median_s"]
            rows.append((name, batch, batch / pt, batch / ls, pt / ls))
            print(f"{name} batch {batch}: torch {batch / pt:.2f} img/s, labelscope {batch / ls:.2f} img/s", flush=True)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)\n")
    print("| model | batch | PyTorch CPU (images/s) | labelscope (images/s) | labelscope / PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for name, batch, p, l, r in rows:
        print(f"| {name} 224 px | {batch} | {p:.2f} | {l:.2f} | {r:.2f}× |")


if __name__ == "__main__":
    main()
