#!/usr/bin/env python3
"""Side-by-side benchmark of region pooling + labeler inference and head
training: labelscope (`labelscope bench-relabel`) against numpy + PyTorch on
the same files, in one run.

The Rust side generates everything (see crates/cli/src/bench_relabel.rs) and
writes it to --dir: feature caches (f16 safetensors shards, read here with
numpy memory maps exactly as the cache format documents), the proposal masks
(COCO RLE counts, uncompressed, column-major), the MLP head's weights, and
its own pooled vectors and top-5 of the first images. This script then, on
those files:

* pool: per image, reads the f16 patch features, converts them to float32,
  decodes each RLE mask (numpy), computes the covered fraction of every grid
  cell (exact overlap matrices: Ay @ mask @ Ax.T, the same fraction rule as
  labelscope), and pools  W @ F / W.sum(1)  (float32, numpy's BLAS on one
  thread: faster for these small products). Once in this process
  ("1 process") and once with 2 worker processes (multiprocessing, spawn;
  what a PyTorch DataLoader with 2 workers does), images in batches;
* pool + infer: the same (1 process), plus the PyTorch MLP head
  (Linear-ReLU-Dropout-Linear, the same weights, eval mode, inference_mode)
  with softmax and torch.topk(5) per batch;
* train: SGD steps (Nesterov momentum 0.9, lr 0.1, weight decay 1e-4 not on
  biases, cosine schedule) on random features, batch 256, for the MLP
  (hidden 1024, dropout 0.5) and the linear head, loss.item() every step
  (labelscope's Trainer::step returns the loss too).

Every part is the best of --py-repeats passes after one warm-up pass
(labelscope: best of --repeats). torch.set_num_threads(2).

Checks: the pooled vectors of the first images computed here in float64
against labelscope's (max abs difference), the top-5 probabilities and
classes of the PyTorch head on labelscope's pooled vectors against
labelscope's top-5.

Usage (repository root, after `cargo build --release --locked -p labelscope`):
    /work/venv-torch/bin/python bench/relabel_compare.py --bin target/release/labelscope \
        [--dir bench-out/relabel] [--images 2000] [--configs 384x28,768x28] [--repeats 5] [--py-repeats 3]
    /work/venv-torch/bin/python bench/relabel_compare.py --dir bench-out/relabel   # Python side only,
        on files a previous `labelscope bench-relabel --dir` run left
"""

import os

# The per-image matrix products are tiny ([P, cells] @ [cells, dim]); threaded
# BLAS only adds synchronisation to them (6x slower per image measured on the
# 2-core machine), so numpy's BLAS runs on one thread. PyTorch's threads are
# set separately (--threads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

IMAGENET_TRAIN = 1_281_167


# ---------------------------------------------------------------------------
# Reading what the Rust side wrote


def read_cache(folder):
    """id -> [h*w, dim] f16 memmap view, from the documented cache layout."""
    meta = json.load(open(os.path.join(folder, "cache.json")))
    n, cls, out = meta["shards"], int(meta["cls"]), {}
    for i in range(n):
        stem = os.path.join(folder, f"shard-{i:05d}-of-{n:05d}")
        with open(stem + ".safetensors", "rb") as f:
            hlen = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(hlen))
        rows, dim = header["features"]["shape"]
        if rows == 0:
            continue
        feats = np.memmap(stem + ".safetensors", dtype="<f2", mode="r", offset=8 + hlen, shape=(rows, dim))
        with open(stem + ".index.jsonl") as f:
            for line in f:
                r = json.loads(line)
                s = r["row"] + cls
                out[r["id"]] = (feats[s:s + r["h"] * r["w"]], r["h"], r["w"])
    return meta, out


def read_masks(d):
    counts = np.load(os.path.join(d, "masks.npy"))
    offsets = np.load(os.path.join(d, "mask_offsets.npy"))
    return [counts[offsets[k]:offsets[k + 1]] for k in range(len(offsets) - 1)]


def read_safetensors(path):
    """name -> float32 array (F32 tensors only, which is what the head file holds)."""
    with open(path, "rb") as f:
        hlen = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(hlen))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} has dtype {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"]).copy()
    return out


# ---------------------------------------------------------------------------
# Pooling (numpy)


def overlap_matrix(cells, pixels):
    """[cells, pixels]: length of pixel [p, p+1) inside cell [k*c, (k+1)*c), c = pixels/cells."""
    c = pixels / cells
    k = np.arange(cells)[:, None]
    p = np.arange(pixels)[None, :]
    return np.clip(np.minimum(p + 1.0, (k + 1) * c) - np.maximum(p, k * c), 0.0, None)


class Pooler:
    """Masked average pooling: covered fraction of every grid cell as
    Ay @ mask @ Ax.T / cell area (exact overlap lengths, any geometry), then
    W @ F / W.sum(1)."""

    def __init__(self, size, grid, dtype=np.float32):
        self.size, self.grid, self.dtype = size, grid, dtype
        self.a = overlap_matrix(grid, size).astype(dtype)
        self.cell_area = dtype((size / grid) ** 2)

    def fractions(self, counts):
        """[grid*grid] covered fraction of each cell (row-major), from COCO RLE counts."""
        vals = np.zeros(len(counts), self.dtype)
        vals[1::2] = 1
        mt = np.repeat(vals, counts).reshape(self.size, self.size)  # column-major: mt[x, y]
        return ((self.a @ mt @ self.a.T).T / self.cell_area).ravel()  # [i, j] = Ay m Ax^T

    def pool(self, feats, masks):
        f = np.asarray(feats, dtype=self.dtype)
        w = np.stack([self.fractions(c) for c in masks])
        return (w @ f) / w.sum(axis=1, keepdims=True)


_W = {}


def _worker_init(cache_dir, d, size, grid, proposals):
    _, feats = read_cache(cache_dir)
    _W.update(feats=feats, masks=read_masks(d), pooler=Pooler(size, grid), proposals=proposals,
              ids=sorted(feats))


def _worker_batch(rng):
    s, e = rng
    return pool_batch(_W["feats"], _W["ids"], _W["masks"], _W["pooler"], _W["proposals"], s, e)


def pool_batch(feats, ids, masks, pooler, proposals, s, e):
    return np.concatenate([pooler.pool(feats[ids[i]][0], masks[i * proposals:(i + 1) * proposals])
                           for i in range(s, e)])


# ---------------------------------------------------------------------------
# PyTorch head


def make_head(torch, dim, classes, hidden, dropout, kind):
    nn = torch.nn

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.relu = nn.ReLU()
            self.drop = nn.Dropout(dropout)
            self.fc2 = nn.Linear(hidden, classes)

        def forward(self, x):
            return self.fc2(self.drop(self.relu(self.fc1(x))))

    class Lin(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(dim, classes)

        def forward(self, x):
            return self.fc(x)

    return Mlp() if kind == "mlp" else Lin()


def best_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[0], times[len(times) // 2]


# ---------------------------------------------------------------------------


def machine_info():
    info = {"python": platform.python_version(), "numpy": np.__version__, "kernel": platform.release(),
            "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "L3"):
                info["lscpu " + k.strip()] = v.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    for name, cmd in [("rustc", ["rustc", "--version"]), ("git", ["git", "rev-parse", "--short", "HEAD"])]:
        try:
            info[name] = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            info[name] = "unavailable"
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def run_python(args, gen, rust):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    d = args.dir
    size, proposals, classes = gen["image_size"], gen["proposals"], args.classes
    n_images = gen["images"]
    masks = read_masks(d)
    batch_images = rust.get("batch_images", 64) if rust else args.batch_images
    out = []
    checks = []
    for name in args.configs.split(","):
        dim, grid = (int(v) for v in name.split("x"))
        cache_dir = os.path.join(d, f"cache-{name}")
        _, feats = read_cache(cache_dir)
        ids = sorted(feats)
        if len(ids) != n_images:
            sys.exit(f"{cache_dir}: {len(ids)} images, expected {n_images}")
        pooler = Pooler(size, grid)
        batches = [(s, min(s + batch_images, n_images)) for s in range(0, n_images, batch_images)]
        res = {"config": name}

        # Checks against labelscope's pooled vectors and top-5.
        stem = os.path.join(d, f"check-{name}")
        ls_pooled = np.load(stem + "-pooled.npy")
        k = ls_pooled.shape[0] // proposals
        p64 = Pooler(size, grid, np.float64)
        ref = np.concatenate([p64.pool(feats[ids[i]][0], masks[i * proposals:(i + 1) * proposals]) for i in range(k)])
        ours32 = pool_batch(feats, ids, masks, pooler, proposals, 0, k)
        tensors = read_safetensors(os.path.join(d, f"head-{dim}.safetensors"))
        hidden = tensors["fc1.weight"].shape[0]
        head = make_head(torch, dim, classes, hidden, 0.5, "mlp")
        head.load_state_dict({n: torch.from_numpy(v) for n, v in tensors.items()})
        head.eval()
        with torch.inference_mode():
            p = torch.softmax(head.double()(torch.from_numpy(ls_pooled.astype(np.float64))), dim=1)
            tv, ti = torch.topk(p, 5, dim=1)
        head.float()
        ls_p, ls_c = np.load(stem + "-top5-p.npy"), np.load(stem + "-top5-c.npy")
        check = {
            "config": name, "regions": int(ls_pooled.shape[0]),
            "pooled_max_abs_diff_vs_f64": float(np.abs(ls_pooled - ref).max()),
            "python_f32_pooled_max_abs_diff_vs_f64": float(np.abs(ours32 - ref).max()),
            "pooled_max_abs": float(np.abs(ref).max()),
            "top5_prob_max_abs_diff": float(np.abs(tv.numpy() - ls_p).max()),
            "top5_class_agreement": float((ti.numpy() == ls_c).mean()),
        }
        checks.append(check)

        # (a) pooling only, 1 process
        def pool_all():
            acc = 0.0
            for s, e in batches:
                acc += float(pool_batch(feats, ids, masks, pooler, proposals, s, e)[:, 0].sum())
            return acc

        # (a') pooling only, 2 worker processes
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers, initializer=_worker_init,
                      initargs=(cache_dir, d, size, grid, proposals)) as wp:
            wp.map(_worker_batch, batches[:args.workers])  # start-up outside the timing

            def pool_workers():
                acc = 0.0
                for a in wp.imap(_worker_batch, batches):
                    acc += float(a[:, 0].sum())
                return acc

            if "pool" in args.parts:
                b, m = best_time(pool_workers, args.py_repeats)
                res["pool_workers"] = {"workers": args.workers, "best_s": b, "median_s": m, "images_per_s": n_images / b}
        if "pool" in args.parts:
            b, m = best_time(pool_all, args.py_repeats)
            res["pool"] = {"best_s": b, "median_s": m, "images_per_s": n_images / b}

        # (b) pooling + MLP top-5, 1 process
        def infer_all():
            acc = 0.0
            with torch.inference_mode():
                for s, e in batches:
                    x = torch.from_numpy(pool_batch(feats, ids, masks, pooler, proposals, s, e))
                    v, _ = torch.topk(torch.softmax(head(x), dim=1), 5, dim=1)
                    acc += float(v[:, 0].sum())
            return acc

        if "infer" in args.parts:
            b, m = best_time(infer_all, args.py_repeats)
            res["pool_infer"] = {"best_s": b, "median_s": m, "images_per_s": n_images / b}

        # (c) training
        if "train" in args.parts:
            res["train"] = {}
            steps, bs = args.train_steps, args.train_batch
            for kind in ("mlp", "linear"):
                model = make_head(torch, dim, classes, 1024, 0.5, kind)
                model.train()
                g = torch.Generator().manual_seed(args.seed)
                x = torch.rand(steps * bs, dim, generator=g) * 2 - 1
                y = torch.randint(0, classes, (steps * bs,), generator=g)
                decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
                no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
                opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=0.1, momentum=0.9, nesterov=True)
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * (args.py_repeats + 1))
                losses = []

                def train_pass():
                    for s in range(steps):
                        opt.zero_grad(set_to_none=True)
                        loss = F.cross_entropy(model(x[s * bs:(s + 1) * bs]), y[s * bs:(s + 1) * bs])
                        loss.backward()
                        opt.step()
                        sched.step()
                        losses.append(loss.item())

                b, m = best_time(train_pass, args.py_repeats)
                res["train"][kind] = {"best_s": b, "median_s": m, "regions_per_s": steps * bs / b,
                                      "first_loss": losses[0], "last_loss": losses[-1]}
        out.append(res)
    return out, checks, {"torch": torch.__version__, "torch threads": torch.get_num_threads()}


def fmt_rate(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def hours(seconds):
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="labelscope binary: run `bench-relabel` first (otherwise only the Python side "
                                  "runs, on the files already in --dir)")
    ap.add_argument("--dir", default="bench-out/relabel")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--configs", default="384x28,768x28")
    ap.add_argument("--image-size", type=int, default=448)
    ap.add_argument("--proposals", type=int, default=4)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--batch-images", type=int, default=64)
    ap.add_argument("--train-batch", type=int, default=256)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5, help="labelscope's timed passes")
    ap.add_argument("--py-repeats", type=int, default=3, help="Python's timed passes")
    ap.add_argument("--parts", default="pool,infer,train")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the multi-process pooling row")
    ap.add_argument("--json-out", help="also write all results here")
    args = ap.parse_args()
    args.parts = args.parts.split(",")

    rust = None
    rust_cmd = None
    if args.bin:
        rust_cmd = [args.bin, "bench-relabel", "--dir", args.dir, "--images", str(args.images),
                    "--configs", args.configs, "--image-size", str(args.image_size),
                    "--proposals", str(args.proposals), "--classes", str(args.classes),
                    "--batch-images", str(args.batch_images), "--train-batch", str(args.train_batch),
                    "--train-steps", str(args.train_steps), "--repeats", str(args.repeats),
                    "--parts", ",".join(args.parts), "--seed", str(args.seed), "--json"]
        p = subprocess.run(rust_cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(rust_cmd)} failed:\n{p.stderr}")
        rust = json.loads(p.stdout)
        with open(os.path.join(args.dir, "labelscope.json"), "w") as f:
            json.dump(rust, f, indent=1)
    elif os.path.exists(os.path.join(args.dir, "labelscope.json")):
        rust = json.load(open(os.path.join(args.dir, "labelscope.json")))
        print(f"note: the labelscope numbers come from an earlier run ({args.dir}/labelscope.json), "
              "not from this one: not a side-by-side comparison")
    gen = json.load(open(os.path.join(args.dir, "generated.json")))

    load_start = os.getloadavg()[0]
    py, checks, versions = run_python(args, gen, rust)
    load_end = os.getloadavg()[0]
    info = machine_info()
    info.update(versions)

    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if rust_cmd:
        print("labelscope command: " + " ".join(rust_cmd))
    print("python command: " + " ".join([sys.executable] + sys.argv))
    print(f"inputs: {gen['images']} images, {gen['proposals']} proposals/image (RLE, {gen['image_size']}x"
          f"{gen['image_size']} px), {args.classes} classes, f16 caches {args.configs} (DIMxGRID)")
    if rust:
        print(f"1-minute load average: labelscope run {rust.get('loadavg_start')} -> {rust.get('loadavg_end')}, "
              f"python run {load_start:.2f} -> {load_end:.2f} (2 = both cores busy)")
    if rust:
        print(f"labelscope: {rust['threads']} threads, best of {rust['repeats']}; mean mask area "
              f"{rust['mask_mean_area']:.3f} of the image; python: torch threads {args.threads}, "
              f"best of {args.py_repeats}")
    print()
    print("checks (labelscope's pooled vectors / top-5 vs this script's float64 numpy / PyTorch):")
    for c in checks:
        print(f"  {c['config']}: {c['regions']} regions, pooled max |diff| {c['pooled_max_abs_diff_vs_f64']:.2e} "
              f"(python f32: {c['python_f32_pooled_max_abs_diff_vs_f64']:.2e}; values up to "
              f"{c['pooled_max_abs']:.2f}), top-5 prob max |diff| {c['top5_prob_max_abs_diff']:.2e}, "
              f"top-5 classes equal {100 * c['top5_class_agreement']:.1f} %")
    print()
    rmap = {r["config"]: r for r in (rust["results"] if rust else [])}
    print("| features (dim x grid) | part | unit | labelscope | Python | labelscope / Python |")
    print("|---|---|---|---:|---:|---:|")
    rows = []
    for r in py:
        lr = rmap.get(r["config"], {})
        items = [
            ("pool (1 process)", "images/s", lr.get("pool", {}).get("images_per_s"), r.get("pool", {}).get("images_per_s")),
            (f"pool (Python: {args.workers} worker processes)", "images/s", lr.get("pool", {}).get("images_per_s"),
             r.get("pool_workers", {}).get("images_per_s")),
            ("pool + MLP top-5", "images/s", lr.get("pool_infer", {}).get("images_per_s"),
             r.get("pool_infer", {}).get("images_per_s")),
        ]
        for kind in ("mlp", "linear"):
            label = f"train {kind}" + (" (hidden 1024)" if kind == "mlp" else "") + f", batch {args.train_batch}, SGD"
            items.append((label, "regions/s", lr.get("train", {}).get(kind, {}).get("regions_per_s"),
                          r.get("train", {}).get(kind, {}).get("regions_per_s")))
        for label, unit, a, b in items:
            if a is None and b is None:
                continue
            ratio = f"{a / b:.2f}x" if a and b else "-"
            print(f"| {r['config']} | {label} | {unit} | {fmt_rate(a) if a else '-'} | {fmt_rate(b) if b else '-'} | {ratio} |")
            rows.append({"config": r["config"], "part": label, "unit": unit, "labelscope": a, "python": b})
    print()
    print(f"projected wall time on this machine (ImageNet train, {IMAGENET_TRAIN:,} images; backbone not included):")
    for r in py:
        lr = rmap.get(r["config"], {})
        a = lr.get("pool_infer", {}).get("images_per_s")
        b = r.get("pool_infer", {}).get("images_per_s")
        if a or b:
            s = f"  {r['config']}: relabel (pool + MLP top-5, {gen['proposals']} proposals/image): "
            s += f"labelscope {IMAGENET_TRAIN:,} / {a:,.1f} = {hours(IMAGENET_TRAIN / a)}" if a else ""
            s += f"; Python {IMAGENET_TRAIN:,} / {b:,.1f} = {hours(IMAGENET_TRAIN / b)}" if b else ""
            print(s)
        for kind in ("mlp", "linear"):
            a = lr.get("train", {}).get(kind, {}).get("regions_per_s")
            b = r.get("train", {}).get(kind, {}).get("regions_per_s")
            regions = IMAGENET_TRAIN * gen["proposals"]
            if a or b:
                s = f"  {r['config']}: train {kind}, one epoch of {regions:,} regions ({gen['proposals']}/image): "
                s += f"labelscope {regions:,} / {a:,.0f} = {hours(regions / a)}" if a else ""
                s += f"; Python {regions:,} / {b:,.0f} = {hours(regions / b)}" if b else ""
                print(s)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": info, "loadavg": [load_start, load_end], "labelscope_command": rust_cmd, "labelscope": rust, "python": py,
                       "checks": checks, "table": rows}, f, indent=1)
    bad = [c for c in checks if c["pooled_max_abs_diff_vs_f64"] > 1e-5 or c["top5_prob_max_abs_diff"] > 1e-5]
    if bad:
        sys.exit("labelscope and the Python reference disagree: " + json.dumps(bad))


if __name__ == "__main__":
    main()
