#!/usr/bin/env python3
"""Builds an expert-label fixture in the TFDS `imagenet2012_multilabel` v3
schema from real data (the real file is not available offline), and computes
the expert metrics for the 8 models in ../shared/data independently.

Usage: expert_fixture.py DATA_DIR FIXTURE_OUT.json  → prints expected JSON:
  {model: {"strict": [correct, total], "top1": [correct, total], "balanced": value,
           "m_errors": count, "m_total": n}}, plus "problematic" and "imagenet_m" counts.
"""
import json
import os
import random
import sys

import numpy as np

data, out_path = sys.argv[1], sys.argv[2]
classes = json.load(open(os.path.join(data, "imagenet", "class_info.json")))
wnids = [c["wnid"] for c in classes]
real = json.load(open(os.path.join(data, "imagenet", "real.json")))
val = json.load(open(os.path.join(data, "imagenet", "val_original.json")))["image_filenames"]
rng = random.Random(2026)

# Every 16th image of the val_original order: ~3,100 images over all classes.
rows = list(range(0, len(val), 16))
annots, problematic, imagenet_m = {}, [], []
correct, unclear = {}, {}
for r in rows:
    name = val[r][0]
    i = int(name[15:23]) - 1
    c = set(real[i])
    u = set()
    if rng.random() < 0.2:
        u.add(rng.randrange(1000))
    u -= c
    w = {rng.randrange(1000)} - c - u
    annots[name] = {"correct": [wnids[x] for x in sorted(c)], "wrong": [wnids[x] for x in sorted(w)],
                    "unclear": [wnids[x] for x in sorted(u)]}
    correct[r], unclear[r] = c, u
    if rng.random() < 0.05 or (not c and rng.random() < 0.5):
        problematic.append(name)
    elif rng.random() < 0.02:
        imagenet_m.append(name)
prob = set(problematic)
fixture = {"initial_annots": annots,
           "problematic_images": {n: "ambiguous" for n in problematic},
           "imagenet_m": imagenet_m}
json.dump(fixture, open(out_path, "w"))

orig = {r: wnids.index(val[r][1]) for r in rows}
out = {"problematic": len(problematic), "imagenet_m": len(imagenet_m), "models": {}}
pdir = os.path.join(data, "predictions", "imagenet-val")
for f in sorted(os.listdir(pdir)):
    top1 = np.load(os.path.join(pdir, f))[:, 0]
    kept = [r for r in rows if val[r][0] not in prob]
    strict = sum(int(top1[r]) in correct[r] for r in kept)
    # label-set semantics (top1 with expert labels as --labels): empty correct sets are left out
    labelled = [r for r in kept if correct[r]]
    top1_sets = [sum(int(top1[r]) in correct[r] for r in labelled), len(labelled)]
    per_class = {}
    for r in kept:
        ok = int(top1[r]) in correct[r] or int(top1[r]) in unclear[r]
        per_class.setdefault(orig[r], []).append(ok)
    balanced = float(np.mean([np.mean(v) for v in per_class.values()]))
    m_rows = [r for r in rows if val[r][0] in set(imagenet_m)]
    m_err = sum(not (int(top1[r]) in correct[r] or int(top1[r]) in unclear[r]) for r in m_rows)
    out["models"][f[:-4]] = {"strict": [strict, len(kept)], "top1": top1_sets, "balanced": balanced,
                             "m_errors": m_err, "m_total": len(m_rows)}
json.dump(out, sys.stdout)
