"""Side-by-side benchmark: labelscope's image loader vs Pillow + numpy.

Both decode the same image files, apply the same recipe (default
resize256-crop224, bilinear: torchvision's ImageNet evaluation transform) and
normalise to float32 CHW. Reported: images/s for 1 and 2 workers (labelscope:
threads of one process; Pillow: worker processes, as a PyTorch DataLoader
uses). Pillow: the best of --repeats passes after a warm-up pass, with one
pool of workers for all passes. labelscope: one loader streams the warm-up
pass and the --repeats passes, and the rate after the warm-up pass is
reported (the mean of the timed passes, as a long run sees it;
`bench-preprocess --fresh-loader` starts a loader per pass instead).

Usage:
  python3 bench/preprocess_compare.py [--bin target/release/labelscope] IMG_OR_DIR...
  python3 bench/preprocess_compare.py --jpeg-copies DIR IMG...   # also re-encode
      the inputs as quality-90 4:2:0 JPEGs of at most 500 px a side into DIR
      (ImageNet-like files) and benchmark that set too
"""

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
           "lanczos": Image.Resampling.LANCZOS}


def pillow_one(args):
    path, resize, crop, resample = args
    im = Image.open(path).convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    nl = int(resize * long / short)
    im = im.resize((resize, nl) if w <= h else (nl, resize), resample)
    w, h = im.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    im = im.crop((left, top, left + crop, top + crop))
    x = np.asarray(im).astype(np.float32) / np.float32(255)
    x = ((x - MEAN) / STD).transpose(2, 0, 1)
    x = np.ascontiguousarray(x)
    return float(x.reshape(-1)[::97].sum(dtype=np.float64))


def bench_pillow(paths, workers, repeats, resize, crop, resample):
    jobs = [(p, resize, crop, resample) for p in paths]
    best = float("inf")
    with mp.Pool(workers) as pool:
        for i in range(repeats + 1):
            t = time.perf_counter()
            list(pool.imap(pillow_one, jobs, chunksize=4))
            dt = time.perf_counter() - t
            if i > 0:
                best = min(best, dt)
    return best


def list_images(inputs):
    out = []
    for p in inputs:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p)
                          if f.lower().endswith((".jpg", ".jpeg", ".png", ".webp")))
        else:
            out.append(p)
    return out


def run_set(name, paths, args):
    resize, crop = (int(v) for v in args.recipe[len("resize"):].split("-crop"))
    rows = []
    cmd = [args.bin, "bench-preprocess", "--recipe", args.recipe, "--interpolation", args.interpolation,
           "--threads", ",".join(str(t) for t in args.workers), "--repeats", str(args.repeats),
           "--copies", str(args.copies)] + paths
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    ours = {r["threads"]: r for r in (json.loads(line) for line in out.splitlines() if line.strip())}
    many = paths * args.copies
    for w in args.workers:
        t = bench_pillow(many, w, args.repeats, resize, crop, FILTERS[args.interpolation])
        pil = len(many) / t
        lab = ours[w]["images_per_s"]
        rows.append((name, w, len(many), pil, lab, lab / pil))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--bin", default="target/release/labelscope")
    ap.add_argument("--recipe", default="resize256-crop224")
    ap.add_argument("--interpolation", default="bilinear", choices=sorted(FILTERS))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=4, help="passes over the file list per timing")
    ap.add_argument("--jpeg-copies", metavar="DIR")
    args = ap.parse_args()
    if not args.recipe.startswith("resize"):
        sys.exit("this script benchmarks resize{S}-crop{C} recipes")
    paths = list_images(args.images)
    sets = [("given files", paths)]
    if args.jpeg_copies:
        os.makedirs(args.jpeg_copies, exist_ok=True)
        jp = []
        for p in paths:
            im = Image.open(p).convert("RGB")
            im.thumbnail((500, 500), Image.Resampling.LANCZOS)
            q = os.path.join(args.jpeg_copies, os.path.splitext(os.path.basename(p))[0] + "_q90.jpg")
            im.save(q, quality=90)
            jp.append(q)
        sets.append(("JPEG q90 <=500px", jp))
    rows = []
    for name, ps in sets:
        rows += run_set(name, ps, args)
    print(f"recipe {args.recipe}, {args.interpolation}; decode + resize + crop + normalise (float32 CHW)")
    print(f"| image set | workers | images | Pillow+numpy img/s | labelscope img/s | speed-up |")
    print(f"|---|---|---|---|---|---|")
    for name, w, n, pil, lab, r in rows:
        print(f"| {name} | {w} | {n} | {pil:.1f} | {lab:.1f} | {r:.2f}x |")


if __name__ == "__main__":
    main()
