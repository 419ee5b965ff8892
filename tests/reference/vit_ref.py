#!/usr/bin/env python3
"""Independent numpy forward pass of a DINO-layout ViT, for the parity test
of labelscope-nn.

Usage: vit_ref.py OUTDIR DIM DEPTH HEADS PATCH GRID_SIDE HEIGHT WIDTH SEED

Writes to OUTDIR:
- model.safetensors: random weights (float32) in the DINO tensor layout, the
  position embedding for a GRID_SIDE x GRID_SIDE grid;
- input.npy: a [1, 3, HEIGHT, WIDTH] float32 input;
- cls.npy, patches.npy, keys.npy, queries.npy, values.npy: the outputs
  (CLS and patch tokens after the final norm; q, k, v of the last block,
  heads concatenated, CLS dropped), float32.

The position embedding is resampled to the input's grid like PyTorch's
F.interpolate(mode="bicubic", align_corners=False, scale_factor=(g + 0.1)/s)
(cubic a = -0.75, sample indices clamped to the border), which DINO uses.
"""
import os
import sys

import numpy as np
from scipy.special import erf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save as save_safetensors  # noqa: E402


def cubic_weights(t, a=-0.75):
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.array([far(t + 1), near(t), near(1 - t), far(2 - t)])


def resample_matrix(n_in, n_out, scale):
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        src = (o + 0.5) / scale - 0.5
        base = int(np.floor(src))
        w = cubic_weights(src - base)
        for k in range(4):
            i = min(max(base - 1 + k, 0), n_in - 1)
            m[o, i] += w[k]
    return m


def layer_norm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * w + b


def main():
    out, dim, depth, heads, patch, side, height, width, seed = sys.argv[1:10]
    dim, depth, heads, patch, side, height, width, seed = map(int, (dim, depth, heads, patch, side, height, width, seed))
    rng = np.random.default_rng(seed)
    f64 = np.float64
    t = {}

    def rand(name, shape, std):
        t[name] = (rng.standard_normal(shape) * std).astype(np.float32)

    rand("cls_token", (1, 1, dim), 0.5)
    rand("pos_embed", (1, 1 + side * side, dim), 0.5)
    rand("patch_embed.proj.weight", (dim, 3, patch, patch), 0.1)
    rand("patch_embed.proj.bias", (dim,), 0.1)
    for i in range(depth):
        p = f"blocks.{i}."
        t[p + "norm1.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        rand(p + "norm1.bias", (dim,), 0.1)
        rand(p + "attn.qkv.weight", (3 * dim, dim), 0.15)
        rand(p + "attn.qkv.bias", (3 * dim,), 0.1)
        rand(p + "attn.proj.weight", (dim, dim), 0.1)
        rand(p + "attn.proj.bias", (dim,), 0.1)
        t[p + "norm2.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        rand(p + "norm2.bias", (dim,), 0.1)
        rand(p + "mlp.fc1.weight", (4 * dim, dim), 0.1)
        rand(p + "mlp.fc1.bias", (4 * dim,), 0.1)
        rand(p + "mlp.fc2.weight", (dim, 4 * dim), 0.05)
        rand(p + "mlp.fc2.bias", (dim,), 0.1)
    t["norm.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
    rand("norm.bias", (dim,), 0.1)
    x = rng.standard_normal((1, 3, height, width)).astype(np.float32)
    os.makedirs(out, exist_ok=True)
    save_safetensors(os.path.join(out, "model.safetensors"), {k: v.astype("<f4") for k, v in t.items()})
    np.save(os.path.join(out, "input.npy"), x)

    w = {k: v.astype(f64) for k, v in t.items()}
    gh, gw = height // patch, width // patch
    # Patch embedding as a matrix product over (channel, ky, kx).
    xp = x.astype(f64)[0].reshape(3, gh, patch, gw, patch).transpose(1, 3, 0, 2, 4).reshape(gh * gw, -1)
    tokens = xp @ w["patch_embed.proj.weight"].reshape(dim, -1).T + w["patch_embed.proj.bias"]
    h = np.concatenate([w["cls_token"][0], tokens], axis=0)
    pos = w["pos_embed"][0]
    if (gh, gw) != (side, side):
        grid = pos[1:].reshape(side, side, dim)
        rm = resample_matrix(side, gh, (gh + 0.1) / side)
        cm = resample_matrix(side, gw, (gw + 0.1) / side)
        grid = np.einsum("ar,bc,rcd->abd", rm, cm, grid).reshape(gh * gw, dim)
        pos = np.concatenate([pos[:1], grid], axis=0)
    h = h + pos
    n = h.shape[0]
    hd = dim // heads
    qkv = None
    for i in range(depth):
        p = f"blocks.{i}."
        y = layer_norm(h, w[p + "norm1.weight"], w[p + "norm1.bias"])
        qkv = y @ w[p + "attn.qkv.weight"].T + w[p + "attn.qkv.bias"]
        q, k, v = qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
        o = np.zeros((n, dim))
        for hh in range(heads):
            sl = slice(hh * hd, (hh + 1) * hd)
            s = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o[:, sl] = s @ v[:, sl]
        h = h + o @ w[p + "attn.proj.weight"].T + w[p + "attn.proj.bias"]
        y = layer_norm(h, w[p + "norm2.weight"], w[p + "norm2.bias"])
        z = y @ w[p + "mlp.fc1.weight"].T + w[p + "mlp.fc1.bias"]
        z = 0.5 * z * (1 + erf(z / np.sqrt(2)))
        h = h + z @ w[p + "mlp.fc2.weight"].T + w[p + "mlp.fc2.bias"]
    h = layer_norm(h, w["norm.weight"], w["norm.bias"])
    save = lambda name, a: np.save(os.path.join(out, name), a.astype(np.float32))
    save("cls.npy", h[0])
    save("patches.npy", h[1:])
    save("queries.npy", qkv[1:, :dim])
    save("keys.npy", qkv[1:, dim : 2 * dim])
    save("values.npy", qkv[1:, 2 * dim :])


if __name__ == "__main__":
    main()
