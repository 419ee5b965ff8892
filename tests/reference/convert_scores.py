#!/usr/bin/env python3
"""Writes the scores of DIR/scores.npy in the other supported containers, with
numpy and by hand (safetensors), so that tests can check every reader gives
the same numbers. Prints {"written": [file names]}.

Usage: convert_scores.py DIR [--more DIR2]

With --more, also writes (and lists) in DIR:
  scores_two.npz          `junk` (= 1 - probs, same shape, stored first) and `probs`
  scores_f16.safetensors  `probs` as F16 (with `__metadata__` and an F32 `junk` tensor)
  logits_softmax.npy      float32 log(max(probs, 1e-4)) plus a random offset per row
                          (its softmax is computed by set_metrics_ref.py)
and in DIR2 the f16-rounded scores as float32 scores.npy with copies of labels.json and
images.txt, so that bench/reference_eval.py DIR2 is the reference for the F16 file.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save as safetensors  # noqa: E402

d = sys.argv[1]
more = sys.argv[sys.argv.index("--more") + 1] if "--more" in sys.argv else None
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


safetensors(out("scores_st.safetensors"), {"probs": ("F32", s.astype("<f4"))})
with open(out("scores_csv.csv"), "w") as f:
    f.write("image," + ",".join(f"c{j}" for j in range(s.shape[1])) + "\n")
    for name, row in zip(names, s):
        f.write(name + "," + ",".join(repr(float(x)) for x in row) + "\n")

if more:
    np.savez(out("scores_two.npz"), junk=(1 - s).astype(np.float32), probs=s)
    f16 = s.astype("<f2")
    safetensors(out("scores_f16.safetensors"), {"junk": ("F32", np.ones(4, "<f4")), "probs": ("F16", f16)},
                metadata={"format": "pt"})
    rng = np.random.default_rng(11)
    offset = rng.uniform(-5, 5, size=(s.shape[0], 1))
    np.save(out("logits_softmax.npy"), (np.log(np.maximum(s.astype(np.float64), 1e-4)) + offset).astype(np.float32))
    os.makedirs(more, exist_ok=True)
    np.save(os.path.join(more, "scores.npy"), f16.astype(np.float32))
    for name in ("labels.json", "images.txt"):
        with open(os.path.join(d, name), "rb") as src, open(os.path.join(more, name), "wb") as dst:
            dst.write(src.read())
json.dump({"written": written}, sys.stdout)
