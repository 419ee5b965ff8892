#!/usr/bin/env python3
"""Independent numpy + scikit-learn computation of the set metrics and the
per-bucket metrics of `labelscope eval` on the data written by
`labelscope bench --generate-only` (DIR holds labels.json and images.txt).

Usage:
  set_metrics_ref.py sets DIR CASE [CASE ...]
      CASE = SCORES.npy,ACTIVATION,THRESHOLD (SCORES.npy relative to DIR)
      ACTIVATION: none | sigmoid | softmax (applied in float64 to the scores)
      THRESHOLD:  a number, or `calibrated` (class j gets the n_j-th largest
                  probability of its column over the labelled rows as threshold,
                  n_j = its number of labels; classes without labels are never
                  predicted). Rows predicting nothing fall back to the argmax of
                  the raw scores (lowest index among ties).
      prints {CASE: {"subset-acc": v, "subset-acc-counts": [exact, images], "set-iou": v,
              "micro-precision|recall|f1": v, "macro-precision|recall|f1": v,
              "predicted": number of predicted labels, "fallback": rows that fell back}}
  set_metrics_ref.py buckets DIR SCORES.npy   (SCORES.npy relative to DIR)
      for the subsets labels=1, labels=2, labels=3, labels>=4 (and all): sample-wise
      mAP, top-1 / top-5 (correct, total), and the set metrics at threshold 0.5;
      plus "sap_std" (population std of the per-image APs over all labelled images).
"""
import json
import os
import sys
import warnings

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, jaccard_score, precision_recall_fscore_support

warnings.simplefilter("ignore")


def load(d, scores_path):
    scores = np.load(scores_path)
    labels = json.load(open(os.path.join(d, "labels.json")))
    names = [l.strip() for l in open(os.path.join(d, "images.txt")) if l.strip()]
    n, c = scores.shape
    assert len(names) == n
    gt = [labels[name] for name in names]
    keep = np.array([len(g) > 0 for g in gt])
    Y = np.zeros((n, c), dtype=np.int8)
    for i, g in enumerate(gt):
        Y[i, g] = 1
    return scores[keep], Y[keep]


def activate(S, activation):
    x = S.astype(np.float64)
    if activation == "none":
        return x
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if activation == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        # sum in column order (the definition); avoids last-bit differences in the ranking of rows
        total = np.zeros(e.shape[0])
        for j in range(e.shape[1]):
            total += e[:, j]
        return e / total[:, None]
    raise SystemExit(f"unknown activation {activation}")


def predict(S, Y, activation, threshold):
    P = activate(S, activation)
    if threshold == "calibrated":
        nj = Y.sum(axis=0)
        t = np.full(Y.shape[1], np.inf)
        for j in np.nonzero(nj)[0]:
            t[j] = np.sort(P[:, j])[::-1][nj[j] - 1]
        pred = (P >= t[None, :]).astype(np.int8)
    else:
        pred = (P >= float(threshold)).astype(np.int8)
    empty = pred.sum(axis=1) == 0
    pred[np.nonzero(empty)[0], np.argmax(S[empty], axis=1)] = 1
    return pred, int(empty.sum())


def set_metrics(Y, pred, with_macro=True):
    out = {
        "subset-acc": float(accuracy_score(Y, pred)),
        "subset-acc-counts": [int((Y == pred).all(axis=1).sum()), int(len(Y))],
        "set-iou": float(jaccard_score(Y, pred, average="samples", zero_division=0)),
    }
    p, r, f, _ = precision_recall_fscore_support(Y, pred, average="micro", zero_division=0)
    out["micro-precision"], out["micro-recall"], out["micro-f1"] = float(p), float(r), float(f)
    if with_macro:
        present = np.nonzero(Y.sum(axis=0) > 0)[0]
        p, r, f, _ = precision_recall_fscore_support(Y, pred, average="macro", zero_division=0, labels=present)
        out["macro-precision"], out["macro-recall"], out["macro-f1"] = float(p), float(r), float(f)
    return out


def topk_counts(Y, S, k):
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return [int(np.take_along_axis(Y, order, axis=1).any(axis=1).sum()), int(len(Y))]


mode = sys.argv[1]
if mode == "sets":
    d = sys.argv[2]
    out = {}
    for case in sys.argv[3:]:
        scores_file, activation, threshold = case.split(",")
        S, Y = load(d, os.path.join(d, scores_file))
        pred, fallback = predict(S, Y, activation, threshold)
        r = set_metrics(Y, pred)
        r["predicted"] = int(pred.sum())
        r["fallback"] = fallback
        out[case] = r
elif mode == "buckets":
    d, scores_file = sys.argv[2:4]
    S, Y = load(d, os.path.join(d, scores_file))
    pred, _ = predict(S, Y, "none", "0.5")
    counts = Y.sum(axis=1)
    out = {}
    # per-image AP (scikit-learn); their mean over a subset is average_precision_score(average="samples")
    sap = np.array([average_precision_score(Y[i], S[i]) for i in range(len(Y))])
    out["sap_std"] = float(sap.std())
    for name, rows in [
        ("all", np.ones(len(Y), bool)),
        ("labels=1", counts == 1),
        ("labels=2", counts == 2),
        ("labels=3", counts == 3),
        ("labels>=4", counts >= 4),
    ]:
        if not rows.any():
            continue
        Yr, Sr = Y[rows], S[rows]
        b = {
            "images": int(rows.sum()),
            "map-samples": float(sap[rows].mean()),
            "top1": topk_counts(Yr, Sr, 1),
            "top5": topk_counts(Yr, Sr, 5),
        }
        b.update(set_metrics(Yr, pred[rows], with_macro=False))
        out[name] = b
else:
    raise SystemExit(f"unknown mode {mode}")
json.dump(out, sys.stdout)
print()
