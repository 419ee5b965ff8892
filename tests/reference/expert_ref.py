#!/usr/bin/env python3
"""Builds a deterministic expert-label fixture in the TFDS
`imagenet2012_multilabel` v3 schema from real data (the real file is not
available offline) and computes the expert metrics of the 8 models in
DATA/predictions/imagenet-val independently (numpy).

Usage: expert_ref.py DATA_DIR FIXTURE_LIST.json FIXTURE_OBJECT.json

The fixture covers the first 3,000 images of val_original.json order (the rows
of the prediction files; 60 original classes x 50 images):
  correct   = the image's ReaL labels as wnids (empty when ReaL has none), in shuffled order
  unclear   = for ~20% of the images one more class: a class some model predicts top-1
              for the image when there is one outside `correct`, else a random class
  wrong     = one more class outside correct and unclear (a top-2 prediction of some model
              when there is one, else a random class): never counts as right
  problematic_images = ~5% of the images, and half of those with an empty ReaL set
  imagenet_m = 60 non-problematic images
FIXTURE_LIST.json lists `problematic_images` as [names]; FIXTURE_OBJECT.json has the same
content with the object form {name: reason}.

Prints JSON:
  {"images": 3000, "problematic": n, "imagenet_m": n, "empty_sets": n,
   "label_counts": [n0, n1, n2, n3, n4plus] (sets of `correct`, problematic images empty),
   "unclear": n, "models": {model: {
     "strict": [correct, total],      # 2020: top-1 in correct; problematic removed; mean over images
     "lenient": [correct, total],     # the same with correct | unclear
     "balanced": value,               # 2022: top-1 in correct | unclear; problematic removed;
                                      # mean over original classes of the per-class accuracy
     "balanced_classes": n,
     "m_errors": n, "m_total": n}}}   # ImageNet-M: top-1 not in correct | unclear
"""
import json
import os
import random
import sys

import numpy as np

data, out_list, out_object = sys.argv[1:4]
N_IMAGES, N_M = 3000, 60
classes = json.load(open(os.path.join(data, "imagenet", "class_info.json")))
wnids = [c["wnid"] for c in classes]
assert len(wnids) == 1000 and wnids == sorted(wnids)
index_of = {w: i for i, w in enumerate(wnids)}
real = json.load(open(os.path.join(data, "imagenet", "real.json")))
val = json.load(open(os.path.join(data, "imagenet", "val_original.json")))["image_filenames"]
pdir = os.path.join(data, "predictions", "imagenet-val")
models = sorted(f[:-4] for f in os.listdir(pdir) if f.endswith(".npy"))
assert len(models) == 8, models
preds = {m: np.load(os.path.join(pdir, m + ".npy")) for m in models}
for p in preds.values():
    assert p.shape == (50000, 5), p.shape

rng = random.Random(20240611)
rows = list(range(N_IMAGES))
names = [val[r][0] for r in rows]
original = [index_of[val[r][1]] for r in rows]
correct, unclear, wrong = [], [], []
for r, name in zip(rows, names):
    assert name.startswith("ILSVRC2012_val_") and name.endswith(".JPEG"), name
    c = set(real[int(name[15:23]) - 1])
    top1s = sorted({int(preds[m][r, 0]) for m in models} - c)
    u = set()
    if rng.random() < 0.2:
        u.add(rng.choice(top1s) if top1s else rng.randrange(1000))
    u -= c
    top2s = sorted({int(preds[m][r, 1]) for m in models} - c - u)
    w = {rng.choice(top2s) if top2s else rng.randrange(1000)} - c - u
    correct.append(c)
    unclear.append(u)
    wrong.append(w)

problematic = set()
for r in rows:
    if rng.random() < 0.05 or (not correct[r] and rng.random() < 0.5):
        problematic.add(r)
imagenet_m = set(rng.sample([r for r in rows if r not in problematic], N_M))


def wn(s, shuffle=False):
    out = [wnids[x] for x in sorted(s)]
    if shuffle:
        rng.shuffle(out)
    return out


annots = {names[r]: {"correct": wn(correct[r], True), "wrong": wn(wrong[r]), "unclear": wn(unclear[r])}
          for r in rows}
prob_names = [names[r] for r in sorted(problematic)]
m_names = [names[r] for r in sorted(imagenet_m)]
json.dump({"initial_annots": annots, "problematic_images": prob_names, "imagenet_m": m_names},
          open(out_list, "w"))
json.dump({"initial_annots": annots, "problematic_images": {n: "ambiguous or not an image of a class" for n in prob_names},
           "imagenet_m": m_names}, open(out_object, "w"))

# Label-set view (`labels info`): the correct labels, problematic images emptied.
sizes = [0 if r in problematic else len(correct[r]) for r in rows]
label_counts = [sum(1 for s in sizes if min(s, 4) == k) for k in range(5)]

out = {"images": N_IMAGES, "problematic": len(problematic), "imagenet_m": len(imagenet_m),
       "empty_sets": label_counts[0], "label_counts": label_counts,
       "unclear": sum(1 for u in unclear if u), "models": {}}
kept = np.array([r not in problematic for r in rows])
orig = np.array(original)
for m in models:
    top1 = preds[m][:N_IMAGES, 0]
    strict = np.array([int(top1[r]) in correct[r] for r in rows])
    lenient = np.array([int(top1[r]) in correct[r] or int(top1[r]) in unclear[r] for r in rows])
    per_class = [lenient[kept & (orig == c)].mean() for c in sorted(set(orig[kept].tolist()))]
    m_rows = sorted(imagenet_m)
    out["models"][m] = {
        "strict": [int(strict[kept].sum()), int(kept.sum())],
        "lenient": [int(lenient[kept].sum()), int(kept.sum())],
        "balanced": float(np.mean(per_class)),
        "balanced_classes": len(per_class),
        "m_errors": int((~lenient[m_rows]).sum()),
        "m_total": len(m_rows),
    }
json.dump(out, sys.stdout)
print()
