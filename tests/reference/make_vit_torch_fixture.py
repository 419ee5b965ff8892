#!/usr/bin/env python3
"""Generates the PyTorch parity fixture of labelscope-nn (needs torch; run
once, the outputs are committed, CI does not need torch):

    python3 tests/reference/make_vit_torch_fixture.py crates/nn/tests/fixtures/vit_torch

A tiny DINO-layout ViT (D 32, 2 blocks, 4 heads, patch 4, trained grid 4x4)
with seeded random weights, written as model.safetensors, and for two inputs
(16x16: the trained grid; 24x20: a 6x5 grid that needs the position-embedding
interpolation) the input and the outputs computed with PyTorch ops the way
DINO's vision_transformer.py computes them (Conv2d patch embedding,
F.interpolate(mode="bicubic", scale_factor=((g+0.1)/s, ...)), LayerNorm
eps 1e-6, softmax attention, exact GELU): CLS and patch tokens after the
final norm and the last block's q/k/v with CLS dropped, as .npy.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save as save_safetensors  # noqa: E402


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    dim, depth, heads, patch, side = 32, 2, 4, 4, 4
    t = {
        "cls_token": torch.randn(1, 1, dim) * 0.5,
        "pos_embed": torch.randn(1, 1 + side * side, dim) * 0.5,
        "patch_embed.proj.weight": torch.randn(dim, 3, patch, patch) * 0.1,
        "patch_embed.proj.bias": torch.randn(dim) * 0.1,
        "norm.weight": 1 + 0.1 * torch.randn(dim),
        "norm.bias": 0.1 * torch.randn(dim),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        t[p + "norm1.weight"] = 1 + 0.1 * torch.randn(dim)
        t[p + "norm1.bias"] = 0.1 * torch.randn(dim)
        t[p + "attn.qkv.weight"] = 0.15 * torch.randn(3 * dim, dim)
        t[p + "attn.qkv.bias"] = 0.1 * torch.randn(3 * dim)
        t[p + "attn.proj.weight"] = 0.1 * torch.randn(dim, dim)
        t[p + "attn.proj.bias"] = 0.1 * torch.randn(dim)
        t[p + "norm2.weight"] = 1 + 0.1 * torch.randn(dim)
        t[p + "norm2.bias"] = 0.1 * torch.randn(dim)
        t[p + "mlp.fc1.weight"] = 0.1 * torch.randn(4 * dim, dim)
        t[p + "mlp.fc1.bias"] = 0.1 * torch.randn(4 * dim)
        t[p + "mlp.fc2.weight"] = 0.05 * torch.randn(dim, 4 * dim)
        t[p + "mlp.fc2.bias"] = 0.1 * torch.randn(dim)
    save_safetensors(os.path.join(out, "model.safetensors"), {k: v.numpy().astype("<f4") for k, v in t.items()})

    def forward(x):
        b, _, hh, ww = x.shape
        tok = F.conv2d(x, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=patch)
        gh, gw = tok.shape[2], tok.shape[3]
        tok = tok.flatten(2).transpose(1, 2)
        h = torch.cat([t["cls_token"].expand(b, -1, -1), tok], dim=1)
        pos = t["pos_embed"]
        if (gh, gw) != (side, side):
            grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic")
            assert grid.shape[-2:] == (gh, gw)
            pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)
        h = h + pos
        n = h.shape[1]
        qkv = None
        for i in range(depth):
            p = f"blocks.{i}."
            y = F.layer_norm(h, (dim,), t[p + "norm1.weight"], t[p + "norm1.bias"], eps=1e-6)
            qkv = F.linear(y, t[p + "attn.qkv.weight"], t[p + "attn.qkv.bias"])
            q, k, v = qkv.reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
            a = (q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5
            o = (a.softmax(-1) @ v).transpose(1, 2).reshape(b, n, dim)
            h = h + F.linear(o, t[p + "attn.proj.weight"], t[p + "attn.proj.bias"])
            y = F.layer_norm(h, (dim,), t[p + "norm2.weight"], t[p + "norm2.bias"], eps=1e-6)
            y = F.linear(F.gelu(F.linear(y, t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"])), t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"])
            h = h + y
        h = F.layer_norm(h, (dim,), t["norm.weight"], t["norm.bias"], eps=1e-6)
        return {
            "cls": h[0, 0],
            "patches": h[0, 1:],
            "queries": qkv[0, 1:, :dim],
            "keys": qkv[0, 1:, dim : 2 * dim],
            "values": qkv[0, 1:, 2 * dim :],
        }

    for name, (hh, ww) in {"square": (16, 16), "interp": (24, 20)}.items():
        x = torch.randn(1, 3, hh, ww)
        np.save(os.path.join(out, f"{name}_input.npy"), x.numpy().astype(np.float32))
        with torch.no_grad():
            for k, v in forward(x).items():
                np.save(os.path.join(out, f"{name}_{k}.npy"), v.numpy().astype(np.float32))
    print(f"torch {torch.__version__}: fixture written to {out}")


if __name__ == "__main__":
    main()
