#!/usr/bin/env python3
"""Side-by-side timing of labelscope's normalized cut against scipy.linalg.eigh.

Runs `labelscope bench-ncut` (which generates structured feature maps, writes
them and its own eigenvectors as .npy into --dir, and times its eigenvector,
one whole cut and MaskCut), then, in the same run and on the same feature
files, times

    scipy.linalg.eigh(D - A, D, subset_by_index=[1, 2])

with the affinity built exactly as the method says (unit-normalised features,
A_ij = 1 if cos > tau else eps, diagonal included, D = diag(row sums of A)),
in float64 (the features are read as float32 and converted to float64 before
normalising; A, D and the solve are float64). It reports the median time of
the eigh call alone and, separately, of affinity + eigh, the speed-up of
labelscope's whole eigenvector computation (normalisation + affinity +
eigenvector, `second_eigenvector`) over each, and the |cosine| between
scipy's eigenvector (the column of eigenvalue index 1) and ours, which must
exceed 0.999. Prints a Markdown table with machine information.

Usage:
    python3 bench/ncut_compare.py [target/release/labelscope] [--grid 60x60,64x64]
        [--dim 768] [--seed 1] [--repeats 5] [--py-repeats 3] [--dir bench-out/ncut]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import scipy
import scipy.linalg


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unavailable"


def blas_info():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return "%s %s" % (blas.get("name", "?"), blas.get("version", ""))
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def affinity(feats, tau, eps):
    """float64 A and row sums from float32 features [n, d] (the method's rules)."""
    f = feats.astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    cos = f @ f.T
    a = np.where(cos > tau, 1.0, eps)
    return a, a.sum(axis=1)


def eigh_pair(a, dv):
    return scipy.linalg.eigh(np.diag(dv) - a, np.diag(dv), subset_by_index=[1, 2])


def median_time(fn, repeats):
    """(median, min) wall time of `repeats` runs of fn, and its last result."""
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return (statistics.median(times), min(times)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default="target/release/labelscope")
    ap.add_argument("--grid", action="append", help="HxW, repeatable or comma-separated (default 60x60,64x64)")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of labelscope (median)")
    ap.add_argument("--py-repeats", type=int, default=3, help="timed runs of scipy (median)")
    ap.add_argument("--dir", default="bench-out/ncut")
    ap.add_argument("--tau", type=float, default=0.15)
    ap.add_argument("--eps", type=float, default=1e-5)
    args = ap.parse_args()

    grids = ",".join(args.grid) if args.grid else "60x60,64x64"
    json_path = os.path.join(args.dir, "compare.json")
    cmd = [
        args.binary, "bench-ncut", "--grid", grids, "--dim", str(args.dim), "--seed", str(args.seed),
        "--repeats", str(args.repeats), "--dir", args.dir, "--tau", str(args.tau), "--eps", str(args.eps),
        "--json", json_path,
    ]
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    with open(json_path) as f:
        ours = json.load(f)
    tau = float(np.float32(ours["tau"]))
    eps = float(np.float32(ours["eps"]))

    rows = []
    ok = True
    for g in ours["grids"]:
        h, w, d, n = g["h"], g["w"], g["d"], g["n"]
        feats = np.load(os.path.join(args.dir, g["features"])).reshape(n, d)
        x_ours = np.load(os.path.join(args.dir, g["eigvec"]))
        a, dv = affinity(feats, tau, eps)
        eigh_pair(a, dv)  # warm-up
        (t_eigh, t_eigh_min), (vals, vecs) = median_time(lambda: eigh_pair(a, dv), args.py_repeats)
        (t_full, t_full_min), _ = median_time(lambda: eigh_pair(*affinity(feats, tau, eps)), args.py_repeats)
        x_ref = vecs[:, 0]
        cos = abs(float(x_ref @ x_ours) / (np.linalg.norm(x_ref) * np.linalg.norm(x_ours)))
        ok &= cos > 0.999
        ours_s = g["eigvec_ms"] / 1e3
        rows.append({
            "grid": "%dx%d" % (h, w), "d": d, "ours_eig": ours_s, "ours_cut": g["cut_ms"] / 1e3,
            "ours_maskcut": g["maskcut_ms"] / 1e3, "scipy_eigh": t_eigh, "scipy_full": t_full,
            "ours_eig_min": g["eigvec_min_ms"] / 1e3, "scipy_eigh_min": t_eigh_min, "scipy_full_min": t_full_min,
            "lambda_ours": g["eigenvalue"], "lambda_scipy": float(vals[0]), "cos": cos,
        })
        print("%dx%d done: scipy eigh %.2f s, |cos| %.6f" % (h, w, t_eigh, cos), file=sys.stderr)

    print("### normalized cut: labelscope vs scipy.linalg.eigh (float64)\n")
    print("Machine: %s, %d cores (os.cpu_count), %s %s; Python %s, numpy %s (BLAS: %s), scipy %s; %s; %s "
          "threads in labelscope.\n" % (
              cpu_model(), os.cpu_count() or 0, platform.system(), platform.release(), platform.python_version(),
              np.__version__, blas_info(), scipy.__version__, command_version([args.binary, "--version"]),
              ours["threads"]))
    print("tau = %g, eps = %g, seed %d; labelscope: median of %d runs after 1 warm-up; scipy: median of %d runs "
          "after 1 warm-up (float64 A and D, `eigh(D - A, D, subset_by_index=[1, 2])`).\n"
          % (tau, eps, args.seed, ours["repeats"], args.py_repeats))
    print("| grid | d | labelscope eigenvector (ms) | labelscope one cut (ms) | labelscope MaskCut N=%d (ms) "
          "| scipy eigh (ms) | scipy affinity + eigh (ms) | speed-up vs eigh | speed-up vs affinity + eigh "
          "| λ labelscope | λ scipy | \\|cos\\| |" % ours["maskcut_n"])
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %d | %.1f | %.1f | %.1f | %.0f | %.0f | **%.0f×** | %.0f× | %.6f | %.6f | %.9f |" % (
            r["grid"], r["d"], r["ours_eig"] * 1e3, r["ours_cut"] * 1e3, r["ours_maskcut"] * 1e3,
            r["scipy_eigh"] * 1e3, r["scipy_full"] * 1e3, r["scipy_eigh"] / r["ours_eig"],
            r["scipy_full"] / r["ours_eig"], r["lambda_ours"], r["lambda_scipy"], r["cos"]))
    print("\nspeed-up = scipy median / labelscope eigenvector median (labelscope's time includes normalisation "
          "and the affinity).\n")
    print("Fastest runs (less sensitive to other load on the machine):\n")
    print("| grid | labelscope eigenvector min (ms) | scipy eigh min (ms) | scipy affinity + eigh min (ms) "
          "| speed-up vs eigh | speed-up vs affinity + eigh |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %.1f | %.0f | %.0f | %.0f× | %.0f× |" % (
            r["grid"], r["ours_eig_min"] * 1e3, r["scipy_eigh_min"] * 1e3, r["scipy_full_min"] * 1e3,
            r["scipy_eigh_min"] / r["ours_eig_min"], r["scipy_full_min"] / r["ours_eig_min"]))
    if not ok:
        print("\nFAIL: some |cosine| <= 0.999", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
