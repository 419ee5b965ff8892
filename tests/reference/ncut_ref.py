#!/usr/bin/env python3
"""Independent numpy/scipy reference for labelscope-core's `ncut` module.

Usage: ncut_ref.py FEATURES.f32 H W D TAU N MODE

FEATURES.f32 is a raw little-endian float32 array of shape [H, W, D]
(row-major). MODE is `maskcut` (up to N cuts with the corner rule) or
`tokencut` (one cut without it; N is ignored). Prints JSON:

    {"masks": [[0/1 per patch], ...], "eigvec": [...first cut...],
     "bbox": [r0, c0, r1, c1] (tokencut only), "ok": bool, "reason": str}

`ok` is false when some cut is numerically ambiguous (the answer is not
unique at the precision of an f32 implementation): a small eigengap around
the second-smallest eigenvalue, a cosine within 1e-6 of tau, an entry of the
eigenvector within a small margin of its mean, or a near-tie in an argmax.

The rules follow the module documentation of crates/core/src/ncut.rs:
affinity 1 if cos > tau else eps (eps = 1e-5, diagonal included; zeroed
patches have cosine 0 with everything), the eigenvector of the second
smallest eigenvalue of (D - A) x = lambda D x from scipy.linalg.eigh with
x^T D x = 1 and the sign making the largest-|x| entry positive, foreground
x > mean(x), seed argmax |x|, flip rules, 4-connected component (scipy.ndimage.label),
MaskCut zeroing / dropping / exclusion.
"""

import json
import sys

import numpy as np
import scipy.linalg
import scipy.ndimage

EPS = 1e-5


def first_argmax(v):
    return int(np.argmax(v))  # numpy returns the first occurrence


def decide(x, h, w, corner_rule):
    """Bipartition, seed and flip rules, 4-connected component of the seed."""
    n = x.size
    mean = x.mean()
    fg = x > mean
    seed = first_argmax(np.abs(x))
    corners = [0, w - 1, (h - 1) * w, h * w - 1]
    ncorner = int(sum(fg[c] for c in corners))
    if corner_rule and ncorner >= 3:
        flip = True
    else:
        flip = not fg[seed]
    if flip:
        xf = -x
        fg = xf > xf.mean()
        seed = first_argmax(xf)
    structure = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    labels, _ = scipy.ndimage.label(fg.reshape(h, w), structure=structure)
    lab = labels.reshape(-1)
    if fg[seed]:
        return lab == lab[seed]
    return np.zeros(n, dtype=bool)


def one_cut(F, zeroed, h, w, tau, corner_rule):
    n = F.shape[0]
    C = F @ F.T
    active = ~zeroed
    why = []
    sub = C[np.ix_(active, active)]
    if np.any(np.abs(sub - tau) < 1e-6):
        why.append("cosine within 1e-6 of tau")
    A = np.where(C > tau, 1.0, EPS)
    Dv = A.sum(axis=1)
    L = np.diag(Dv) - A
    Dm = np.diag(Dv)
    lams = scipy.linalg.eigh(L, Dm, eigvals_only=True, subset_by_index=[0, 2])
    gap = lams[2] - lams[1]  # the eigenvector of lams[0] is known and deflated
    if gap < 1e-7:
        why.append("eigengap %.3g" % gap)
    _, vecs = scipy.linalg.eigh(L, Dm, subset_by_index=[1, 1])
    x = vecs[:, 0].copy()
    x /= np.sqrt(x @ (Dv * x))
    k = first_argmax(np.abs(x))
    if x[k] < 0:
        x = -x
    scale = np.max(np.abs(x))

    mask = decide(x, h, w, corner_rule)
    # Robustness of the decision (ties in argmax, entries at the mean, sign
    # convention): perturb x by more than an f32/Lanczos implementation's
    # error (which grows as 1/eigengap) and require the same mask.
    delta = max(1e-7, 1e-9 / max(gap, 1e-300)) * scale
    rng = np.random.default_rng(12345)
    for _ in range(8):
        xp = x + delta * rng.standard_normal(n)
        k = first_argmax(np.abs(xp))
        if xp[k] < 0:
            xp = -xp
        if not np.array_equal(decide(xp, h, w, corner_rule), mask):
            why.append("decision not robust to a perturbation of %.2g" % delta)
            break
    return mask, x, why


def main():
    path, h, w, d, tau, nmax, mode = sys.argv[1:8]
    h, w, d, nmax = int(h), int(w), int(d), int(nmax)
    tau = float(np.float32(float(tau)))
    n = h * w
    raw = np.fromfile(path, dtype="<f4").astype(np.float64)
    if raw.size != n * d:
        raise SystemExit("expected %d values, got %d" % (n * d, raw.size))
    feats = raw.reshape(n, d)
    norms = np.sqrt((feats * feats).sum(axis=1))
    if np.any(norms == 0) or not np.all(np.isfinite(feats)):
        raise SystemExit("zero or non-finite patch")
    F = feats / norms[:, None]
    reasons = []
    out = {}
    if mode == "tokencut":
        mask, x, why = one_cut(F, np.zeros(n, dtype=bool), h, w, tau, False)
        reasons += why
        rows, cols = np.nonzero(mask.reshape(h, w))
        out["masks"] = [mask.astype(int).tolist()]
        out["eigvec"] = x.tolist()
        out["bbox"] = [int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())]
    elif mode == "maskcut":
        zeroed = np.zeros(n, dtype=bool)
        union = np.zeros(n, dtype=bool)
        prev = None
        masks = []
        for it in range(nmax):
            if zeroed.all():
                break
            Fz = F.copy()
            Fz[zeroed] = 0.0
            raw_mask, x, why = one_cut(Fz, zeroed, h, w, tau, True)
            reasons += ["cut %d: %s" % (it, r) for r in why]
            if it == 0:
                out["eigvec"] = x.tolist()
            zeroed |= raw_mask
            excl = raw_mask & ~union
            dup = False
            if prev is not None:
                inter = np.sum(raw_mask & prev)
                uni = np.sum(raw_mask | prev)
                dup = uni > 0 and inter / uni > 0.5
            if not dup and excl.sum() > 0.01 * n:
                union |= excl
                masks.append(excl.astype(int).tolist())
            prev = raw_mask
        out["masks"] = masks
    else:
        raise SystemExit("MODE must be maskcut or tokencut")
    out["ok"] = not reasons
    out["reason"] = "; ".join(reasons)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
