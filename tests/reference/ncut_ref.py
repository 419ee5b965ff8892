#!/usr/bin/env python3
"""Independent numpy/scipy reference for labelscope-core's `ncut` module.

Usage: ncut_ref.py FEATURES.f32 H W D TAU N MODE
       ncut_ref.py --batch MANIFEST.json

FEATURES.f32 is a raw little-endian float32 array of shape [H, W, D]
(row-major). MODE is `maskcut` (up to N cuts with the corner rule) or
`tokencut` (one cut without it; N is ignored). Prints JSON:

    {"masks": [[0/1 per patch], ...], "eigvec": [...first cut...],
     "bbox": [r0, c0, r1, c1] (tokencut only), "ok": bool, "reason": str}

With --batch, MANIFEST.json is a list of cases, each an object
{"file": PATH, "h": H, "w": W, "d": D, "tau": TAU, "n": N, "mode": MODE}
(a relative PATH is relative to the manifest's directory); the answer is a
JSON list with one object as above per case, in order. One interpreter start
for all cases (the start-up of numpy/scipy dominates a single case).

For `maskcut` the answer also has "mask_cuts" (the 0-based cut that
produced each returned mask) and "ambiguous_cut" (the first ambiguous cut, or
null): the masks of the cuts before it do not depend on it.

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
import os
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


def eigen(F, zeroed, tau):
    """The second-smallest generalized eigenvector x (x^T D x = 1, sign
    convention applied), the eigengap above it and the ambiguity reasons."""
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
    lams, vecs = scipy.linalg.eigh(L, Dm, subset_by_index=[0, 2])
    gap = lams[2] - lams[1]  # the eigenvector of lams[0] is known and deflated
    if gap < 1e-7:
        why.append("eigengap %.3g" % gap)
    x = vecs[:, 1].copy()
    x /= np.sqrt(x @ (Dv * x))
    k = first_argmax(np.abs(x))
    if x[k] < 0:
        x = -x
    return x, gap, why


def one_cut(F, zeroed, h, w, tau, corner_rule, memo=None):
    """One cut of the (partly zeroed) normalised features F. `memo` (a dict,
    for one feature map) caches the eigenvector by (zeroed patches, tau): the
    cases of one map (TokenCut, MaskCut with several N) share their cuts."""
    n = F.shape[0]
    key = (zeroed.tobytes(), tau)
    if memo is not None and key in memo:
        x, gap, why = memo[key]
    else:
        x, gap, why = eigen(F, zeroed, tau)
        if memo is not None:
            memo[key] = (x, gap, why)
    why = list(why)
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


def load(path, h, w, d):
    """The L2-normalised [h*w, d] float64 features of a raw float32 file."""
    n = h * w
    raw = np.fromfile(path, dtype="<f4").astype(np.float64)
    if raw.size != n * d:
        raise SystemExit("%s: expected %d values, got %d" % (path, n * d, raw.size))
    feats = raw.reshape(n, d)
    norms = np.sqrt((feats * feats).sum(axis=1))
    if np.any(norms == 0) or not np.all(np.isfinite(feats)):
        raise SystemExit("%s: zero or non-finite patch" % path)
    return feats / norms[:, None]


def solve(F, h, w, tau, nmax, mode, memo=None):
    """One case: TokenCut or MaskCut on the normalised features F (`memo`: see one_cut)."""
    tau = float(np.float32(float(tau)))
    n = h * w
    reasons = []
    out = {}
    if mode == "tokencut":
        mask, x, why = one_cut(F, np.zeros(n, dtype=bool), h, w, tau, False, memo)
        reasons += why
        rows, cols = np.nonzero(mask.reshape(h, w))
        out["masks"] = [mask.astype(int).tolist()]
        out["eigvec"] = x.tolist()
        if rows.size:
            out["bbox"] = [int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())]
        else:
            reasons.append("empty TokenCut mask")
    elif mode == "maskcut":
        zeroed = np.zeros(n, dtype=bool)
        union = np.zeros(n, dtype=bool)
        prev = None
        masks = []
        out["mask_cuts"] = []
        out["ambiguous_cut"] = None
        for it in range(nmax):
            if zeroed.all():
                break
            Fz = F.copy()
            Fz[zeroed] = 0.0
            raw_mask, x, why = one_cut(Fz, zeroed, h, w, tau, True, memo)
            reasons += ["cut %d: %s" % (it, r) for r in why]
            if why and out["ambiguous_cut"] is None:
                out["ambiguous_cut"] = it
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
                out["mask_cuts"].append(it)
            prev = raw_mask
        out["masks"] = masks
    else:
        raise SystemExit("MODE must be maskcut or tokencut, got %r" % mode)
    out["ok"] = not reasons
    out["reason"] = "; ".join(reasons)
    return out


def batch(manifest):
    base = os.path.dirname(os.path.abspath(manifest))
    with open(manifest) as f:
        cases = json.load(f)
    cache = {}
    results = []
    for c in cases:
        h, w, d = int(c["h"]), int(c["w"]), int(c["d"])
        path = c["file"] if os.path.isabs(c["file"]) else os.path.join(base, c["file"])
        key = (path, h, w, d)
        if key not in cache:
            cache = {key: (load(path, h, w, d), {})}  # cases of one feature map are consecutive
        F, memo = cache[key]
        results.append(solve(F, h, w, c["tau"], int(c["n"]), c["mode"], memo))
    json.dump(results, sys.stdout)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--batch":
        batch(sys.argv[2])
        return
    if len(sys.argv) != 8:
        raise SystemExit(__doc__)
    path, h, w, d, tau, nmax, mode = sys.argv[1:8]
    h, w, d, nmax = int(h), int(w), int(d), int(nmax)
    json.dump(solve(load(path, h, w, d), h, w, tau, nmax, mode), sys.stdout)


if __name__ == "__main__":
    main()
