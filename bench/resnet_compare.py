#!/usr/bin/env python3
"""ResNet-50 logits: labelscope (candle, CPU) vs PyTorch CPU, side by side.

Usage: python3 bench/resnet_compare.py [BINARY] [--out bench-out/resnet] [--threads 2]
(needs torch and torchvision). torchvision's resnet50 with random weights
(BatchNorm with randomised affine parameters and running statistics, eval
mode) is written as safetensors; PyTorch (torch.inference_mode,
torch.set_num_threads(THREADS)) and `labelscope bench-vit --model resnet50
--weights ...` (RAYON_NUM_THREADS=THREADS) time the logits at 224 px, batch 1
and 8, median of REPEATS after a warm-up, and prints a Markdown table."""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from safetensors_io import save as save_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="target/release/labelscope")
    ap.add_argument("--out", default="bench-out/resnet")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    model = torchvision.models.resnet50()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(c))
                m.bias.copy_(0.1 * torch.randn(c))
                m.running_mean.copy_(0.1 * torch.randn(c))
                m.running_var.copy_(0.5 + torch.rand(c))
    model.eval()
    path = os.path.join(a.out, "resnet50.safetensors")
    save_safetensors(path, {k: v.numpy().astype("<f4") for k, v in model.state_dict().items()
                            if not k.endswith("num_batches_tracked")})
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    rows = []
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        with torch.inference_mode():
            model(x)
            ts = []
            for _ in range(a.repeats):
                s = time.perf_counter()
                model(x)
                ts.append(time.perf_counter() - s)
        pt = sorted(ts)[len(ts) // 2]
        out = subprocess.run([a.binary, "bench-vit", "--model", "resnet50", "--weights", path, "--batch", str(batch),
                              "--repeats", str(a.repeats)], capture_output=True, text=True, check=True, env=env)
        r = json.loads(out.stdout)
        ls = r["median_s"]
        rows.append((batch, batch / pt, batch / ls, pt / ls, r["threads"]))
        print(f"ResNet-50 batch {batch}: torch {batch / pt:.2f} img/s, labelscope {batch / ls:.2f} img/s", flush=True)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), labelscope {rows[0][4]} threads\n")
    print("| model | batch | PyTorch CPU (images/s) | labelscope (images/s) | labelscope / PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for batch, p, l, ratio, _ in rows:
        print(f"| ResNet-50 224 px | {batch} | {p:.2f} | {l:.2f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
