#!/usr/bin/env python3
"""The Python package against the Python references, side by side in one process.

Usage: python3 bench/py_compare.py (with the labelscope wheel installed: see docs/python.md).

1. mAP over [50000, 1000] float32 scores (1-4 labels per image, 2% empty sets), class-wise:
   labelscope.eval.mean_average_precision vs sklearn.metrics.average_precision_score
   (average="macro") on the images with labels; both values printed (they must agree).
2. The per-batch accumulator in a dummy validation loop: 50,000 images in batches of 256, with
   and without ReaLAccumulator.add(output, names) on [256, 1000] float32 outputs. The overhead is
   the time spent inside the add calls (timed around each call) over the model-only loop; the
   whole-loop times are printed too, but VM jitter of ~1 % of a 5 s loop swamps their difference.
   Dummy "models": a 25 ms busy wait per batch (a GPU forward of 256 images, ResNet-50 class, at
   10,000 images/s; the host thread spins as CUDA's default synchronisation does); a 25 ms sleep
   (a host thread that blocks instead); a [256, 2048] x [2048, 1000] float32 matmul on the CPU
   (~3 ms, the worst case: BLAS threads compete for the cores); and no model at all (an add on hot
   data). Each hands over a fresh copy of the logits, as `.cpu()` does. On a VM, memory left alone
   for 25 ms is slow to reach again (numpy's own sum of a stale batch takes ~10x longer), which
   the accumulator's own state (name index, label sets) still pays.
"""
import argparse
import os
import platform
import statistics
import time

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score

import labelscope as ls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    n, c = 50000, 1000
    scores = np.empty((n, c), dtype=np.float32)
    for s in range(0, n, 5000):
        scores[s:s + 5000] = np.round(rng.random((5000, c), dtype=np.float32) * 4096) / 4096
    sets = []
    for i in range(n):
        sets.append([] if i % 50 == 0 else sorted(rng.choice(c, size=rng.integers(1, 5), replace=False).tolist()))
    labels = ls.labels.from_lists(sets, [f"img{i}" for i in range(n)])
    keep = np.array([len(s) > 0 for s in sets])
    y = np.zeros((n, c), dtype=np.int8)
    for i, s in enumerate(sets):
        y[i, s] = 1
    t_ls = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        m = ls.eval.mean_average_precision(scores, labels)
        t_ls.append(time.perf_counter() - t)
    t = time.perf_counter()
    ref = average_precision_score(y[keep], scores[keep], average="macro")
    t_sk = time.perf_counter() - t
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}, "
          f"scikit-learn {sklearn.__version__}, labelscope {ls.__version__}\n")
    print("| task | Python reference (s) | labelscope (s) | speed-up |")
    print("|---|---:|---:|---:|")
    med = statistics.median(t_ls)
    print(f"| mAP, [50000, 1000] f32 scores (sklearn average_precision_score, macro) | {t_sk:.2f} | {med:.3f} | {t_sk / med:.0f}× |")
    assert abs(m.value - ref) < 1e-9, (m.value, ref)
    print(f"\nmAP: labelscope {m.value:.12f}, sklearn {ref:.12f}")

    # 2. Accumulator overhead in a dummy validation loop.
    w = (rng.standard_normal((2048, c)) * 0.02).astype(np.float32)
    feats = rng.standard_normal((256, 2048)).astype(np.float32)
    outs = [(feats @ w) for _ in range(4)]
    names = labels.names

    def loop(model, with_acc):
        """Seconds of the whole loop, and of the add calls alone (timed around each call)."""
        acc = ls.eval.ReaLAccumulator(labels, ks=(1, 5)) if with_acc else None
        in_add = 0.0
        t = time.perf_counter()
        for b, s in enumerate(range(0, n, 256)):
            out = model(b)[: min(256, n - s)]
            # The loader's names: new string objects every batch (unpickled from its workers).
            batch_names = [x.encode().decode() for x in names[s:s + 256]]
            if acc is not None:
                t0 = time.perf_counter()
                acc.add(out, batch_names)
                in_add += time.perf_counter() - t0
        return time.perf_counter() - t, in_add

    # The stand-ins return a fresh host copy of the logits, as `.cpu()` does: data just written is
    # in cache, as a real batch's output is (on this VM an array last touched 25 ms earlier costs
    # ten times more to read: numpy's own sum of it takes 1 ms instead of 0.1 ms).
    def spin(b):
        end = time.perf_counter() + 0.025
        while time.perf_counter() < end:
            pass
        return outs[b % 4].copy()

    def wait(b):
        time.sleep(0.025)
        return outs[b % 4].copy()

    def matmul(_):
        return feats @ w

    def nothing(b):
        return outs[b % 4].copy()

    print("\n| validation loop, 50,000 images, batch 256 | model only (s) | + ReaLAccumulator.add (s) | "
          "add calls alone (s) | add per batch (ms) | overhead: add calls / model-only loop |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, model, reps in [("25 ms busy wait per batch (GPU forward, spinning sync)", spin, a.repeats),
                               ("25 ms sleep per batch (GPU forward, blocking sync)", wait, a.repeats),
                               ("CPU matmul per batch (worst case)", matmul, a.repeats),
                               ("no model: adds back to back (data hot)", nothing, a.repeats)]:
        loop(model, False) if model is matmul else None  # BLAS warm-up
        runs = [(loop(model, False)[0], loop(model, True)) for _ in range(reps)]  # interleaved
        base = statistics.median(r[0] for r in runs)
        withacc = statistics.median(r[1][0] for r in runs)
        in_add = statistics.median(r[1][1] for r in runs)
        share = "—" if model is nothing else f"{100 * in_add / base:.2f} %"  # no loop to be a share of
        print(f"| {label} | {base:.3f} | {withacc:.3f} | {in_add:.3f} | {1e3 * in_add / (n / 256):.3f} | {share} |",
              flush=True)


if __name__ == "__main__":
    main()
