#!/usr/bin/env python3
"""Independent reference for labelscope's metrics (scikit-learn / scipy / numpy).

Usage: metrics_ref.py DIR

DIR must contain
  scores.f32   raw little-endian float32, n x c, row-major
  gt.json      list of n lists of class indices (an empty list = no valid label)
  params.json  {"n": n, "c": c,
                "weights": [n ints] (optional, per-row multiplicity for class AP),
                "subset": [row indices] (optional, for the set-metric summary),
                "set_configs": [{"activation": "none"|"sigmoid"|"softmax",
                                 "threshold": <float> | "calibrated"}, ...],
                "cp": [[k, n, alpha], ...]}

and the script writes DIR/expected.json with
  per_sample_ap       per row: sklearn average_precision_score of the row (null if gt empty)
  class_ap            per class: sklearn average_precision_score of the column over the rows
                      with non-empty gt (null for classes without positives)
  class_ap_voc        per class: PASCAL VOC all-points interpolated AP (numpy, below)
  class_positives     per class: number of positives
  weighted            the same three with sample_weight=weights (if weights are given)
  sets                per set config: {"pred": predicted sets, "all": summary, "subset": summary}
  cp                  per (k, n, alpha): [lower, upper] from scipy.stats.beta.ppf

Exit status 3 means a required Python package is missing.
"""

import json
import os
import sys
import warnings

try:
    import numpy as np
    from scipy.special import expit
    from scipy.stats import beta
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        jaccard_score,
        precision_recall_fscore_support,
    )
    from sklearn.preprocessing import MultiLabelBinarizer
except ImportError as exc:  # pragma: no cover - environment dependent
    print(f"metrics_ref.py: missing Python package: {exc}", file=sys.stderr)
    sys.exit(3)

warnings.simplefilter("ignore", UndefinedMetricWarning)


def opt(x):
    return None if x is None else float(x)


def indicator(sets, c):
    mlb = MultiLabelBinarizer(classes=list(range(c)))
    return mlb.fit_transform(sets)


def per_sample_ap(scores, gt):
    n, c = scores.shape
    out = []
    for i in range(n):
        if not gt[i]:
            out.append(None)
            continue
        y = np.zeros(c, dtype=int)
        y[gt[i]] = 1
        out.append(float(average_precision_score(y, scores[i])))
    return out


def voc_ap(y, s, w):
    """VOC 2010+ all-points AP on the tie-grouped PR curve, straight from the
    definition: one point per distinct score, precision envelope from the right."""
    keep = w > 0
    y, s, w = y[keep], s[keep], w[keep]
    total = float(np.sum(y * w))
    if total == 0:
        return None
    thresholds = np.unique(s)[::-1]  # distinct, decreasing
    at_or_above = s[None, :] >= thresholds[:, None]  # [threshold, sample]
    tp = at_or_above.astype(float) @ (y * w)
    cnt = at_or_above.astype(float) @ w
    precision = tp / cnt
    recall = tp / total
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    previous = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - previous) * envelope))


def class_ap(scores, gt, weights):
    n, c = scores.shape
    rows = [i for i in range(n) if gt[i]]
    y = indicator([gt[i] for i in rows], c)
    s = scores[rows]
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=float)[rows]
    ap, voc, pos = [], [], []
    for j in range(c):
        positives = float(np.sum(y[:, j] * w))
        pos.append(int(round(positives)))
        if positives == 0:
            ap.append(None)
            voc.append(None)
            continue
        sw = None if weights is None else w
        ap.append(float(average_precision_score(y[:, j], s[:, j], sample_weight=sw)))
        voc.append(voc_ap(y[:, j].astype(float), s[:, j], w))
    return {"class_ap": ap, "class_ap_voc": voc, "class_positives": pos}


def activate(scores, activation):
    if activation == "none":
        return scores.copy()
    if activation == "sigmoid":
        return expit(scores)
    if activation == "softmax":
        z = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation {activation!r}")


def predict(scores, gt, activation, threshold):
    n, c = scores.shape
    probs = activate(scores, activation)
    included = np.array([bool(g) for g in gt])
    if threshold == "calibrated":
        y = indicator([g for g in gt if g], c)
        labels_per_class = y.sum(axis=0)
        chosen = np.zeros((n, c), dtype=bool)
        for j in range(c):
            k = int(labels_per_class[j])
            if k == 0:
                continue
            column = np.sort(probs[included, j])[::-1]
            chosen[:, j] = probs[:, j] >= column[k - 1]
    else:
        chosen = probs >= float(threshold)
    preds = []
    for i in range(n):
        if not included[i]:
            preds.append([])
            continue
        p = np.flatnonzero(chosen[i]).tolist()
        if not p:
            p = [int(np.argmax(scores[i]))]
        preds.append(p)
    return preds


def summary(preds, gt, c, rows):
    rows = [i for i in rows if gt[i]]
    yt = indicator([gt[i] for i in rows], c)
    yp = indicator([preds[i] for i in rows], c)
    present = np.flatnonzero(yt.sum(axis=0) > 0)
    mp, mr, mf, _ = precision_recall_fscore_support(yt, yp, average="micro", zero_division=0)
    Mp, Mr, Mf, _ = precision_recall_fscore_support(yt, yp, labels=present, average="macro", zero_division=0)
    return {
        "images": len(rows),
        "exact": int(accuracy_score(yt, yp, normalize=False)),
        "subset_accuracy": float(accuracy_score(yt, yp)),
        "mean_iou": float(jaccard_score(yt, yp, average="samples", zero_division=0)),
        "micro_precision": float(mp),
        "micro_recall": float(mr),
        "micro_f1": float(mf),
        "macro_precision": float(Mp),
        "macro_recall": float(Mr),
        "macro_f1": float(Mf),
        "macro_classes": int(len(present)),
    }


def clopper_pearson(k, n, alpha):
    lower = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return [lower, upper]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    with open(os.path.join(d, "params.json")) as f:
        params = json.load(f)
    with open(os.path.join(d, "gt.json")) as f:
        gt = [sorted(set(int(x) for x in g)) for g in json.load(f)]
    n, c = int(params["n"]), int(params["c"])
    scores = np.fromfile(os.path.join(d, "scores.f32"), dtype="<f4")
    if scores.size != n * c or len(gt) != n:
        raise SystemExit(f"shape mismatch: {scores.size} scores, {len(gt)} gt rows, n={n}, c={c}")
    scores = scores.reshape(n, c).astype(np.float64)

    out = {"per_sample_ap": per_sample_ap(scores, gt)}
    out.update(class_ap(scores, gt, None))
    if params.get("weights") is not None:
        out["weighted"] = class_ap(scores, gt, params["weights"])
    subset = params.get("subset")
    sets = []
    for cfg in params.get("set_configs", []):
        preds = predict(scores, gt, cfg["activation"], cfg["threshold"])
        entry = {"pred": preds, "all": summary(preds, gt, c, range(n))}
        if subset is not None:
            entry["subset"] = summary(preds, gt, c, subset)
        sets.append(entry)
    out["sets"] = sets
    out["cp"] = [clopper_pearson(int(k), int(m), float(a)) for k, m, a in params.get("cp", [])]
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
