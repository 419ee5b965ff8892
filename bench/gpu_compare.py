#!/usr/bin/env python3
"""GPU forward passes: labelscope (candle, CUDA) vs PyTorch (CUDA), side by side in one run.

Usage, on a machine with an NVIDIA GPU, from the repository root (bench/gpu_check.sh runs it):
  python3 bench/gpu_compare.py BINARY [--repeats 10]
BINARY is a labelscope built with `--features cuda` (`.ci/cuda kit`). DINO ViT-S/16 (batch 64),
ViT-B/8 (batch 16) and ResNet-50 (batch 64) with random weights at 224 px, in f32 (TF32 off on
both sides), f16 and bf16 (weights and activations in that dtype on both sides): the median of
--repeats timed passes after a warm-up pass, each ended by a device synchronisation. PyTorch runs
the same ViT ops as bench/vit_compare.py and torchvision's resnet50 in eval mode, under
torch.no_grad. Prints a Markdown table; ratio = labelscope images/s ÷ PyTorch images/s."""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vit_compare import make, torch_forward  # noqa: E402

MODELS = [  # name, ViT (dim, depth, heads, patch) or None for ResNet-50, batch
    ("DINO ViT-S/16", (384, 12, 6, 16), 64),
    ("DINO ViT-B/8", (768, 12, 12, 8), 16),
    ("ResNet-50", None, 64),
]
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def median_seconds(fn, repeats):
    with torch.no_grad():
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def torch_side(arch, batch, dtype, repeats):
    dev = torch.device("cuda")
    x = torch.randn(batch, 3, 224, 224, device=dev, dtype=dtype)
    if arch is None:
        import torchvision
        net = torchvision.models.resnet50().eval().to(dev, dtype)
        return median_seconds(lambda: net(x), repeats)
    dim, depth, heads, patch = arch
    t = {k: v.to(dev, dtype) for k, v in make(dim, depth, patch, 224 // patch).items()}
    return median_seconds(lambda: torch_forward(t, x, dim, depth, heads, patch), repeats)


def labelscope_side(binary, arch, batch, precision, repeats):
    args = [binary, "bench-vit", "--size", "224", "--batch", str(batch), "--repeats", str(repeats),
            "--device", "cuda", "--precision", precision]
    args += ["--model", "resnet50"] if arch is None else ["--arch", ":".join(map(str, arch))]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"], None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; host {platform.node()}")
    print("| model | batch | precision | PyTorch (images/s) | labelscope (images/s) | ratio |")
    print("|---|---:|---|---:|---:|---:|")
    failed = False
    for name, arch, batch in MODELS:
        for p, dt in DTYPES.items():
            ts = torch_side(arch, batch, dt, a.repeats)
            ls, err = labelscope_side(a.binary, arch, batch, p, a.repeats)
            if ls is None:
                failed = True
                print(f"| {name} | {batch} | {p} | {batch / ts:.1f} | failed: {err} | |")
            else:
                print(f"| {name} | {batch} | {p} | {batch / ts:.1f} | {batch / ls:.1f} | {ts / ls:.2f}× |")
            sys.stdout.flush()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
