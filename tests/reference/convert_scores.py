#!/usr/bin/env python3
"""Writes the scores of DIR/scores.npy in the other supported containers, with
numpy and by hand (safetensors), so that tests can check every reader gives
the same numbers. Prints {"written": [file names]}.

Usage: convert_scores.py DIR
"""
import json
import os
import struct
import sys

import numpy as np

d = sys.argv[1]
s = np.load(os.path.join(d, "scores.npy"))
names = [l.strip() for l in open(os.path.join(d, "images.txt")) if l.strip()]
written = []


def out(name):
    written.append(name)
    return os.path.join(d, name)


np.savez(out("scores_npz.npz"), other=np.zeros(3), probs=s)
np.savez_compressed(out("scores_npzc.npz"), probs=s)
np.save(out("scores_f64.npy"), s.astype(np.float64))
# float32 logits whose sigmoid gives back the probabilities (clipped away from 0 and 1)
p = np.clip(s.astype(np.float64), 1e-6, 1 - 1e-6)
np.save(out("logits.npy"), np.log(p / (1 - p)).astype(np.float32))


def safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


safetensors(out("scores_st.safetensors"), {"probs": ("F32", s.astype("<f4"))})
with open(out("scores_csv.csv"), "w") as f:
    f.write("image," + ",".join(f"c{j}" for j in range(s.shape[1])) + "\n")
    for name, row in zip(names, s):
        f.write(name + "," + ",".join(repr(float(x)) for x in row) + "\n")
json.dump({"written": written}, sys.stdout)
