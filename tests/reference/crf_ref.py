#!/usr/bin/env python3
"""Independent numpy reference for labelscope-vision's dense CRF model
(`crf::brute_force`), exact O(N^2) in float64.

Usage: crf_ref.py < CASES.json > ANSWERS.json

CASES.json is a list of objects
    {"h": H, "w": W, "gh": GH, "gw": GW,
     "rgb": [H*W*3 ints, row-major], "grid": [GH*GW 0/1, row-major],
     "sxy_g": 3, "w_g": 7, "sxy_b": 50, "srgb": 5, "w_b": 10, "iters": 10}
The answer is a list of {"q": [H*W foreground marginals], "labels": [0/1]}.

Model (see the module documentation of crates/vision/src/crf.rs):
  unary: logits [1-m, m] on the grid, bilinear upsampling with the
  align_corners=False convention of torch.nn.functional.interpolate (source
  coordinate (dst + 0.5) * in / out - 0.5, negative clamped to 0, upper
  neighbour clamped to the last row/column), softmax over 2 channels,
  U = -log p;
  kernels: exp(-|dpos|^2 / (2 sxy_g^2)) and
  exp(-|dpos|^2 / (2 sxy_b^2) - |drgb|^2 / (2 srgb^2)), j = i included;
  symmetric normalisation n = (K 1)^(-1/2), F(Q) = n * (K (n * Q));
  mean field: Q = softmax(-U); repeat: E_l = -U_l + sum_k w_k F_k(Q_l),
  Q = softmax(E); labels = Q_1 > Q_0.
"""
import json
import sys

import numpy as np


def upsample_matrix(n_in, n_out):
    """(n_out, n_in) matrix of the align_corners=False linear interpolation."""
    a = np.zeros((n_out, n_in))
    for d in range(n_out):
        s = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(s)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = s - i0
        a[d, i0] += 1.0 - lam
        a[d, i1] += lam
    return a


def solve(c):
    h, w, gh, gw = c["h"], c["w"], c["gh"], c["gw"]
    rgb = np.asarray(c["rgb"], float).reshape(h * w, 3)
    m = np.asarray(c["grid"], float).reshape(gh, gw)
    up = upsample_matrix(gh, h) @ m @ upsample_matrix(gw, w).T
    logits = np.stack([1.0 - up, up]).reshape(2, -1)
    logp = logits - np.logaddexp(logits[0], logits[1])
    ys, xs = np.mgrid[0:h, 0:w]
    pos = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)

    def sqdist(f):
        return ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)

    kernels = []
    kg = np.exp(-0.5 * sqdist(pos / c["sxy_g"]))
    kb = np.exp(-0.5 * sqdist(np.concatenate([pos / c["sxy_b"], rgb / c["srgb"]], 1)))
    for k, wt in [(kg, c["w_g"]), (kb, c["w_b"])]:
        n = 1.0 / np.sqrt(k.sum(1))
        kernels.append((k, n, wt))

    def softmax(e):
        e = e - e.max(0)
        x = np.exp(e)
        return x / x.sum(0)

    q = softmax(logp)
    for _ in range(c["iters"]):
        e = logp.copy()
        for k, n, wt in kernels:
            for lab in range(2):
                e[lab] += wt * n * (k @ (n * q[lab]))
        q = softmax(e)
    return {"q": q[1].tolist(), "labels": (q[1] > q[0]).astype(int).tolist()}


def main():
    cases = json.load(sys.stdin)
    json.dump([solve(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
