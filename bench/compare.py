#!/usr/bin/env python3
"""Side-by-side benchmark: labelscope vs the numpy + scikit-learn reference on
the same generated inputs, in one run. Reports median wall time, peak RSS of
each process, and checks that both compute the same numbers.

Usage: python3 bench/compare.py [--rows 50000] [--classes 1000] [--repeat 3]
(run from the repository root after `cargo build --release`).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=50000)
ap.add_argument("--classes", type=int, default=1000)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--dir", default="bench-out")
ap.add_argument("--bin", default="target/release/labelscope")
ap.add_argument("--part", choices=["1", "2", "all"], default="all",
                help="1: score metrics (the Python side takes minutes), 2: top-k directory, all: both")
args = ap.parse_args()

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)
subprocess.run([args.bin, "bench", "--generate-only", "--rows", str(args.rows), "--classes", str(args.classes),
                "--dir", args.dir], check=True, stdout=subprocess.DEVNULL)
scores_bytes = os.path.getsize(os.path.join(args.dir, "scores.npy"))


def run(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err.decode()}")
    return wall, ru.ru_maxrss * 1024, out


print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}")
d = args.dir
if args.part in ("1", "all"):
    ls = [args.bin, "eval", "--labels", f"{d}/labels.json", "--predictions", f"{d}/scores.npy",
          "--images", f"{d}/images.txt", "--scores", "probs", "--no-breakdowns", "--bootstrap", "0", "--json"]
    ls_boot = ls[:-3] + ["--bootstrap", "1000", "--json"]
    py = [sys.executable, "bench/reference_eval.py", d]
    results = {}
    for name, cmd in [("labelscope", ls), ("labelscope+bootstrap", ls_boot), ("python", py)]:
        runs = [run(cmd) for _ in range(args.repeat if name != "python" else 1)]
        results[name] = {"wall": statistics.median(r[0] for r in runs), "rss": max(r[1] for r in runs), "out": runs[-1][2]}

    mine = {r["metric"]: r["value"] for r in json.loads(results["labelscope"]["out"])["rows"] if r["subset"] == "all"}
    ref = json.loads(results["python"]["out"])
    worst = max(abs(mine[k] - v) for k, v in ref.items())
    print(f"inputs: scores f32 [{args.rows}, {args.classes}] = {scores_bytes / 2**20:.1f} MiB")
    print(f"metrics compared: {len(ref)}; largest absolute difference: {worst:.2e}")
    print(f"{'program':<22} {'wall (s)':>9} {'peak RSS (MiB)':>15} {'RSS / scores':>13} {'speed-up':>9}")
    for name in ("python", "labelscope", "labelscope+bootstrap"):
        r = results[name]
        print(f"{name:<22} {r['wall']:>9.2f} {r['rss'] / 2**20:>15.1f} {r['rss'] / scores_bytes:>13.2f} "
              f"{results['python']['wall'] / r['wall']:>8.1f}x")
    if worst > 1e-9:
        sys.exit("the two programs disagree")

# Part 2: a directory of 67 top-5 files x 50,000 rows (the 8 published models of
# ../shared/data, repeated), evaluated against ReaL in one command.
shared = os.path.join(root, "..", "shared", "data")
if args.part in ("2", "all") and os.path.isdir(shared):
    import numpy as np
    src = os.path.join(shared, "predictions", "imagenet-val")
    models = sorted(os.listdir(src))
    tdir = os.path.join(d, "topk67")
    os.makedirs(tdir, exist_ok=True)
    for i in range(67):
        dst = os.path.join(tdir, f"model_{i:02d}.npy")
        if not os.path.exists(dst):
            np.save(dst, np.load(os.path.join(src, models[i % len(models)])))
    real = os.path.join(shared, "imagenet", "real.json")
    val = os.path.join(shared, "imagenet", "val_original.json")
    ls_t = [args.bin, "eval", "--labels", real, "--predictions", tdir, "--images", val, "--json"]
    py_t = [sys.executable, "bench/reference_topk.py", real, val, os.path.join(shared, "imagenet", "class_info.json"), tdir]
    lt = [run(ls_t) for _ in range(args.repeat)]
    pt = [run(py_t) for _ in range(args.repeat)]
    mine = {}
    for r in json.loads(lt[-1][2])["rows"]:
        if r["subset"] == "all":
            mine[(r["model"], r["metric"])] = r["value"]
    ref = json.loads(pt[-1][2])
    worst2 = max(abs(mine[(m, k)] - v) for m, vals in ref.items() for k, v in vals.items())
    lw, pw = statistics.median(x[0] for x in lt), statistics.median(x[0] for x in pt)
    print()
    print(f"top-k: 67 files x 50,000 rows x top-5 against ReaL + original labels "
          f"(labelscope also computes 10 breakdown subsets and Clopper-Pearson intervals)")
    print(f"metrics compared: {sum(len(v) for v in ref.values())}; largest absolute difference: {worst2:.2e}")
    print(f"{'program':<22} {'wall (s)':>9} {'per model (ms)':>15} {'peak RSS (MiB)':>15} {'speed-up':>9}")
    print(f"{'python':<22} {pw:>9.2f} {1000 * pw / 67:>15.1f} {max(x[1] for x in pt) / 2**20:>15.1f} {1.0:>8.1f}x")
    print(f"{'labelscope':<22} {lw:>9.2f} {1000 * lw / 67:>15.1f} {max(x[1] for x in lt) / 2**20:>15.1f} {pw / lw:>8.1f}x")
    if worst2 > 1e-12:
        sys.exit("the two programs disagree on top-k")
