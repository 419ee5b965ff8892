#!/usr/bin/env python3
"""Independent reference numbers for labelscope's tests on ../shared/data.

Written directly against the file formats with numpy, sharing no code with
labelscope. Prints one JSON object on standard output:

  {"val": {model: {"real_top1": [c, t], "real_top5": [c, t], "orig_top1": [c, t], "orig_top5": [c, t]}},
   "v2":  {model: {"inv2_top1": [c, t], "inv2_top5": [c, t], "orig_top1": [c, t]}},
   "rebuilt_equals_real": bool, "rebuilt_diff": int,
   "cooccur_top": [[a, b, count, freq_a, freq_b], ...],
   "compare_orig_real": [B empty, exact, A superset, B superset, partial]}
"""
import json
import os
import sys
from collections import Counter
from itertools import combinations

import numpy as np

data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")

classes = json.load(open(os.path.join(data, "imagenet", "class_info.json")))
wnid_to_idx = {c["wnid"]: c["cid"] for c in classes}

real = json.load(open(os.path.join(data, "imagenet", "real.json")))
val = json.load(open(os.path.join(data, "imagenet", "val_original.json")))["image_filenames"]
val_idx = np.array([int(name[len("ILSVRC2012_val_"):len("ILSVRC2012_val_") + 8]) - 1 for name, _ in val])
val_orig = np.array([wnid_to_idx[w] for _, w in val])


def counts(pred, sets, k):
    c = t = 0
    for row, s in zip(pred, sets):
        if not s:
            continue
        t += 1
        c += bool(set(row[:k].tolist()) & s)
    return [c, t]


out = {"val": {}, "v2": {}}
real_sets = [set(real[i]) for i in val_idx]
for f in sorted(os.listdir(os.path.join(data, "predictions", "imagenet-val"))):
    pred = np.load(os.path.join(data, "predictions", "imagenet-val", f))
    m = f[:-4]
    out["val"][m] = {
        "real_top1": counts(pred, real_sets, 1),
        "real_top5": counts(pred, real_sets, 5),
        "orig_top1": [int((pred[:, 0] == val_orig).sum()), len(val_orig)],
        "orig_top5": [int((pred[:, :5] == val_orig[:, None]).any(1).sum()), len(val_orig)],
    }

v2 = json.load(open(os.path.join(data, "imagenetv2", "matched_frequency.json")))["image_filenames"]
inv2 = json.load(open(os.path.join(data, "imagenetv2", "inv2_ml_labels.json")))
v2_sets = [set(int(x) for x in inv2[sha + ".jpeg"]) for sha, _ in v2]
v2_orig = np.array([wnid_to_idx[w] for _, w in v2])
for f in sorted(os.listdir(os.path.join(data, "predictions", "imagenetv2-matched-frequency"))):
    pred = np.load(os.path.join(data, "predictions", "imagenetv2-matched-frequency", f))
    m = f[:-4]
    out["v2"][m] = {
        "inv2_top1": counts(pred, v2_sets, 1),
        "inv2_top5": counts(pred, v2_sets, 5),
        "orig_top1": [int((pred[:, 0] == v2_orig).sum()), len(v2_orig)],
    }

# Rebuild ReaL from rater scores: score >= 0.8; unrated images keep the original label.
z = np.load(os.path.join(data, "imagenet", "real_rater_scores.npz"))
scores, info = z["tensor"], z["info"]
rebuilt = {}
for (name, cls), s in zip(info, scores):
    labels = rebuilt.setdefault(str(name), set())
    if s >= 0.8:
        labels.add(int(cls))
orig_by_name = {name: wnid_to_idx[w] for name, w in val}
diff = 0
for i in range(len(real)):
    name = "ILSVRC2012_val_%08d.JPEG" % (i + 1)
    mine = rebuilt.get(name, {orig_by_name[name]})
    diff += mine != set(real[i])
out["rebuilt_equals_real"] = diff == 0
out["rebuilt_diff"] = diff

# Co-occurrence of ReaL pairs: the 20 most frequent pairs.
pairs = Counter()
freq = Counter()
for s in real:
    freq.update(s)
    pairs.update(combinations(sorted(set(s)), 2))
out["cooccur_top"] = [[a, b, n, freq[a], freq[b]] for (a, b), n in pairs.most_common(200)]
out["cooccur_pairs"] = len(pairs)

# compare-labels with A = original label, B = ReaL, over the 50,000 validation images.
groups = Counter()
for name, w in val:
    a = {wnid_to_idx[w]}
    b = set(real[int(name[15:23]) - 1])
    if not b:
        groups["B empty"] += 1
    elif a == b:
        groups["exact match"] += 1
    elif a > b:
        groups["A superset"] += 1
    elif b > a:
        groups["B superset"] += 1
    else:
        groups["partial overlap"] += 1
out["compare_orig_real"] = [groups[g] for g in ["B empty", "exact match", "A superset", "B superset", "partial overlap"]]
json.dump(out, sys.stdout)
