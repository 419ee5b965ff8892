#!/usr/bin/env python3
"""The Python peer of `labelscope eval --scores probs` on the benchmark data:
the same score-based metrics computed the way a numpy + scikit-learn user
would compute them. Prints one JSON object {metric: value}.

Usage: reference_eval.py DIR   (DIR holds scores.npy, labels.json, images.txt
written by `labelscope bench --generate-only`)
"""
import json
import os
import sys
import warnings

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

warnings.simplefilter("ignore")

d = sys.argv[1]
scores = np.load(os.path.join(d, "scores.npy"))
labels = json.load(open(os.path.join(d, "labels.json")))
names = [l.strip() for l in open(os.path.join(d, "images.txt")) if l.strip()]
n, c = scores.shape
assert len(names) == n
assert np.isfinite(scores).all()

gt = [labels[name] for name in names]
keep = np.array([len(g) > 0 for g in gt])
Y = np.zeros((n, c), dtype=np.int8)
for i, g in enumerate(gt):
    Y[i, g] = 1
S, Y = scores[keep], Y[keep]
out = {}

# top-k (a hit when any of the k best classes is a label); ties: lower index first
order = np.argsort(-S, axis=1, kind="stable")[:, :5]
for k in (1, 5):
    out[f"top{k}"] = float(np.take_along_axis(Y, order[:, :k], axis=1).any(axis=1).mean())

# sample-wise mAP
out["map-samples"] = float(average_precision_score(Y, S, average="samples"))

# class-wise mAP over classes with positives (scikit-learn, non-interpolated)
pos = Y.sum(axis=0) > 0
out["map-classes"] = float(np.mean(average_precision_score(Y[:, pos], S[:, pos], average=None)))


def voc_ap(y, s):
    # all-points interpolated AP, one PR point per distinct score
    o = np.argsort(-s, kind="stable")
    s, y = s[o], y[o]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last]
    prec = tp / (last + 1)
    rec = tp / y.sum()
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


out["map-classes-voc"] = float(np.mean([voc_ap(Y[:, j], S[:, j]) for j in np.nonzero(pos)[0]]))

# set metrics at threshold 0.5 with the argmax fallback for empty sets
P = (S >= 0.5).astype(np.int8)
empty = P.sum(axis=1) == 0
P[np.nonzero(empty)[0], np.argmax(S[empty], axis=1)] = 1
out["subset-acc"] = float((P == Y).all(axis=1).mean())
inter = (P & Y).sum(axis=1)
union = (P | Y).sum(axis=1)
out["set-iou"] = float(np.mean(inter / union))
for avg in ("micro", "macro"):
    p, r, f, _ = precision_recall_fscore_support(
        Y, P, average=avg, zero_division=0, labels=np.nonzero(pos)[0] if avg == "macro" else None
    )
    out[f"{avg}-precision"], out[f"{avg}-recall"], out[f"{avg}-f1"] = float(p), float(r), float(f)
json.dump(out, sys.stdout)
print()
