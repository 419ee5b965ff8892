#!/usr/bin/env python3
"""The Python peer of `labelscope eval` on a directory of top-5 files:
ReaL top-1/top-5 and original-label top-1/top-5 per file, vectorised numpy.

Usage: reference_topk.py REAL_JSON VAL_ORIGINAL_JSON CLASS_INFO_JSON DIR
"""
import json
import os
import sys

import numpy as np

real = json.load(open(sys.argv[1]))
val = json.load(open(sys.argv[2]))["image_filenames"]
wnid = {c["wnid"]: c["cid"] for c in json.load(open(sys.argv[3]))}
rows = np.array([int(n[15:23]) - 1 for n, _ in val])
orig = np.array([wnid[w] for _, w in val])
# dense label indicator in row order
Y = np.zeros((len(rows), 1000), dtype=bool)
for r, i in enumerate(rows):
    Y[r, real[i]] = True
valid = Y.any(axis=1)
out = {}
for f in sorted(os.listdir(sys.argv[4])):
    p = np.load(os.path.join(sys.argv[4], f))
    hit = np.take_along_axis(Y, p, axis=1)
    m = f[:-4]
    out[m] = {
        "top1": float(hit[valid, 0].mean()),
        "top5": float(hit[valid].any(axis=1).mean()),
        "orig-top1": float((p[:, 0] == orig).mean()),
        "orig-top5": float((p == orig[:, None]).any(axis=1).mean()),
    }
json.dump(out, sys.stdout)
