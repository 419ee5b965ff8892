#!/usr/bin/env python3
"""Spurious-feature metrics: labelscope (`bench-spurious`) vs a PyTorch reference, side by side.

Usage: python3 bench/spurious_compare.py [BINARY] [--images 32] [--batch 8] [--threads 2]
(needs torch, torchvision, numpy and scipy). For ResNet-50 (torchvision) and ViT-S/16 (timm
layout), random weights, 224 px generated images with one elliptical mask each, the PyTorch side
does what Hard ImageNet's evaluation does per metric: the ablation in numpy on [0, 1] images
(Gray: object pixels to 0.5; Gray-BBox: the mask's box to 0.5; Tile: each connected component's box
filled by tiling the largest clear neighbouring box, scipy.ndimage labelling), normalisation, a
no-grad forward and a softmax; RFS: foreground and background Gaussian noise (2 forwards); GradCAM:
a hooked forward + backward of the true-class logit (ResNet: layer4; ViT: the last block's norm1
tokens on the 14 x 14 grid), ReLU, bilinear upsampling, min-max scaling, IoU with the mask at 0.5.
Then it runs `labelscope bench-spurious` with the same model, image count, batch and threads, and
prints one Markdown table of images/s and ratios."""
import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import scipy.ndimage
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def samples(n, size, seed=1):
    rng = np.random.default_rng(seed)
    u = np.arange(size) / size
    uu, vv = np.meshgrid(u, u)
    out = []
    for i in range(n):
        fx, fy = 1 + 4 * rng.random(), 1 + 4 * rng.random()
        img = np.stack([0.5 + 0.5 * np.sin(fx * 6.3 * uu), 0.5 + 0.5 * np.cos(fy * 6.3 * vv),
                        0.5 + 0.5 * np.sin((fx + fy) * 3.1 * (uu + vv))]).astype(np.float32)
        cx, cy, rx, ry = 0.3 + 0.4 * rng.random(), 0.3 + 0.4 * rng.random(), 0.1 + 0.2 * rng.random(), 0.1 + 0.2 * rng.random()
        mask = ((uu - cx) / rx) ** 2 + ((vv - cy) / ry) ** 2 <= 1
        out.append((img, mask, i % 1000))
    return out


def gray(img, mask):
    return np.where(mask[None], np.float32(0.5), img)


def gray_bbox(img, mask):
    ys, xs = np.nonzero(mask)
    out = img.copy()
    if len(ys):
        out[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 0.5
    return out


def tile(img, mask):
    h, w = mask.shape
    out = img.copy()
    lab, _ = scipy.ndimage.label(mask)  # 4-connectivity
    for sl in scipy.ndimage.find_objects(lab):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        bh, bw = y1 - y0, x1 - x0
        best = None
        for (sy0, sx0) in [(y0, x1), (y0, x0 - bw), (y1, x0), (y0 - bh, x0)]:  # right, left, below, above
            a0, a1 = max(sy0, 0), min(sy0 + bh, h)
            b0, b1 = max(sx0, 0), min(sx0 + bw, w)
            if a1 <= a0 or b1 <= b0:
                continue
            # Cut back until the source box holds no object pixel.
            while a1 > a0 and b1 > b0 and mask[a0:a1, b0:b1].any():
                if sx0 >= x1:
                    b1 -= 1
                elif sx0 < x0:
                    b0 += 1
                elif sy0 >= y1:
                    a1 -= 1
                else:
                    a0 += 1
            if a1 > a0 and b1 > b0 and (best is None or (a1 - a0) * (b1 - b0) > best[0]):
                best = ((a1 - a0) * (b1 - b0), a0, a1, b0, b1)
        if best is None:
            out[:, y0:y1, x0:x1] = 0.5
            continue
        _, a0, a1, b0, b1 = best
        src = img[:, a0:a1, b0:b1]
        reps = (1, -(-bh // (a1 - a0)), -(-bw // (b1 - b0)))
        out[:, y0:y1, x0:x1] = np.tile(src, reps)[:, :bh, :bw]
    return out


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, h):
        b, n, d = h.shape
        y = self.norm1(h)
        q, k, v = self.qkv(y).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        o = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1) @ v
        h = h + self.proj(o.transpose(1, 2).reshape(b, n, d))
        return h + self.fc2(F.gelu(self.fc1(self.norm2(h))))


class VitS(nn.Module):
    """timm vit_small_patch16_224 (CLS token, pre-norm blocks, head on the normed CLS)."""

    def __init__(self, d=384, depth=12, heads=6, patch=16, classes=1000):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, d, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + 14 * 14, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, classes)

    def forward(self, x):
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), t], 1) + self.pos_embed
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.norm(h)[:, 0])


def model(name):
    torch.manual_seed(0)
    if name == "resnet50":
        m = torchvision.models.resnet50()
        target = m.layer4
    else:
        m = VitS()
        target = m.blocks[-1].norm1
    return m.eval(), target


def forward_probs(m, batch):
    x = (torch.from_numpy(np.stack(batch).astype(np.float32)) - MEAN) / STD
    with torch.inference_mode():
        return m(x).softmax(1)


def gradcam_iou(m, target, name, imgs, masks, classes):
    acts = {}
    hook = target.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    x = ((torch.from_numpy(np.stack(imgs)) - MEAN) / STD).requires_grad_(False)
    logits = m(x)
    a = acts["a"]
    g, = torch.autograd.grad(logits[torch.arange(len(classes)), torch.tensor(classes)].sum(), a)
    hook.remove()
    if name != "resnet50":  # tokens -> [B, D, 14, 14], CLS dropped
        b, n, d = a.shape
        a = a[:, 1:].transpose(1, 2).reshape(b, d, 14, 14)
        g = g[:, 1:].transpose(1, 2).reshape(b, d, 14, 14)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=imgs[0].shape[1:], mode="bilinear", align_corners=False)[:, 0].detach()
    lo, hi = cam.flatten(1).min(1)[0].view(-1, 1, 1), cam.flatten(1).max(1)[0].view(-1, 1, 1)
    cam = (cam - lo) / (hi - lo + 1e-12)
    c, mk = (cam >= 0.5).numpy(), np.stack(masks)
    inter, union = (c & mk).sum((1, 2)), (c | mk).sum((1, 2))
    return (inter + 1e-10) / (union + 1e-10)


def torch_rates(name, data, batch):
    m, target = model(name)
    n = len(data)
    rows = []
    chunks = [data[i:i + batch] for i in range(0, n, batch)]
    forward_probs(m, [d[0] for d in chunks[0]])  # warm-up
    rng = np.random.default_rng(0)

    def timed(label, fn):
        t = time.perf_counter()
        for ch in chunks:
            fn(ch)
        rows.append((label, n / (time.perf_counter() - t)))

    for label, ab in [("Gray ablation alone (no model)", gray), ("Gray-BBox ablation alone", gray_bbox),
                      ("Tile ablation alone", tile)]:
        timed(label, lambda ch, ab=ab: [ab(i, mk) for i, mk, _ in ch])
    timed("clean accuracy (forward only)", lambda ch: forward_probs(m, [i for i, _, _ in ch]))
    timed("Gray ablation + forward", lambda ch: forward_probs(m, [gray(i, mk) for i, mk, _ in ch]))
    timed("Gray-BBox ablation + forward", lambda ch: forward_probs(m, [gray_bbox(i, mk) for i, mk, _ in ch]))
    timed("Tile ablation + forward", lambda ch: forward_probs(m, [tile(i, mk) for i, mk, _ in ch]))

    def rfs(ch):
        for region in (True, False):
            noisy = []
            for i, mk, _ in ch:
                sel = mk if region else ~mk
                z = rng.standard_normal(i.shape).astype(np.float32)
                noisy.append(np.clip(i + 0.25 * sel[None] * z, 0, 1))
            forward_probs(m, noisy)

    timed("RFS, 1 trial (foreground and background noise: 2 forwards)", rfs)
    timed("GradCAM alignment (hooked forward + backward)",
          lambda ch: gradcam_iou(m, target, name, [i for i, _, _ in ch], [mk for _, mk, _ in ch], [c for _, _, c in ch]))
    return rows


# labelscope's metric names -> the table's.
LS_NAMES = {
    "gray ablation alone (no model)": "Gray ablation alone (no model)",
    "gray-bbox ablation alone (no model)": "Gray-BBox ablation alone",
    "tile ablation alone (no model)": "Tile ablation alone",
    "clean accuracy (forward only)": "clean accuracy (forward only)",
    "gray": "Gray ablation + forward",
    "gray-bbox": "Gray-BBox ablation + forward",
    "tile": "Tile ablation + forward",
    "RFS, 1 trial (foreground + background: 2 forwards)": "RFS, 1 trial (foreground and background noise: 2 forwards)",
    "GradCAM alignment (forward + backward)": "GradCAM alignment (hooked forward + backward)",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="target/release/labelscope")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="resnet50,vit_small_patch16_224")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = samples(a.images, 224)
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {a.images} images of 224 px, batch {a.batch}\n")
    print("| model | metric | PyTorch reference (images/s) | labelscope (images/s) | labelscope / PyTorch |")
    print("|---|---|---:|---:|---:|")
    for name in a.models.split(","):
        pt = dict(torch_rates(name, data, a.batch))
        out = subprocess.run([a.binary, "bench-spurious", "--model", name, "--images", str(a.images),
                              "--batch", str(a.batch)], capture_output=True, text=True, check=True, env=env)
        ls = {}
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                ls[LS_NAMES.get(r["metric"], r["metric"])] = r["images_per_s"]
        short = "ResNet-50" if name == "resnet50" else "ViT-S/16"
        for metric, p in pt.items():
            l = ls.get(metric)
            ratio = f"{l / p:.2f}×" if l else "—"
            print(f"| {short} | {metric} | {p:,.2f} | {l:,.2f} | {ratio} |" if l else f"| {short} | {metric} | {p:,.2f} | — | — |",
                  flush=True)


if __name__ == "__main__":
    main()
