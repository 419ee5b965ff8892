#!/usr/bin/env python3
"""Reference values for the labelscope-relabel math tests (numpy only).

Writes, under crates/relabel/tests/fixtures/math/ (or the folder given as the
first argument):

  fractions.json  mask -> patch-grid covered fractions, by brute force: for
                  every cell and every mask pixel (a unit square), the overlap
                  area of the two rectangles, summed and divided by the cell area.
  roi_align.json  ROI-align of boxes on random feature grids, output 1x1,
                  aligned=True, a plain loop transcription of the torchvision
                  rule (sample points, clamping, bilinear interpolation).
  select.json     label-map scores of masks: the map is densified to [C, h, w],
                  upsampled to the full image size with an explicit per-pixel
                  bilinear (align_corners=False) formula, averaged over the mask
                  pixels and soft-maxed -- the materialised computation that the
                  Rust code avoids.

With --torch (run once with /work/venv-torch/bin/python, not needed in CI) the
numpy values are also checked against torchvision.ops.roi_align and
torch.nn.functional.interpolate(mode="bilinear", align_corners=False); the
script stops with an error if they differ by more than 1e-5. The committed
fixtures were generated with --torch and passed that check
(torch 2.15.0, torchvision 0.29.2).

Usage: relabel_ref.py [OUT_DIR] [--torch]
"""
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = args[0] if args else os.path.join(ROOT, "crates", "relabel", "tests", "fixtures", "math")
USE_TORCH = "--torch" in sys.argv
rng = np.random.default_rng(20261202)


def random_mask(H, W, kind):
    if kind == "blob":
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        ry, rx = rng.uniform(2, H / 2), rng.uniform(2, W / 2)
        yy, xx = np.mgrid[0:H, 0:W]
        m = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0
    elif kind == "noise":
        m = rng.random((H, W)) < 0.3
    elif kind == "full":
        m = np.ones((H, W), bool)
    else:  # a single pixel
        m = np.zeros((H, W), bool)
        m[rng.integers(H), rng.integers(W)] = True
    if not m.any():
        m[H // 2, W // 2] = True
    return m


# ---------------------------------------------------------------- fractions
def brute_fractions(mask, geom, h, w):
    x0, y0, x1, y1 = geom
    cw, ch = (x1 - x0) / w, (y1 - y0) / h
    ys, xs = np.nonzero(mask)
    out = np.zeros((h, w))
    for i in range(h):
        cy0, cy1 = y0 + i * ch, y0 + (i + 1) * ch
        for j in range(w):
            cx0, cx1 = x0 + j * cw, x0 + (j + 1) * cw
            area = 0.0
            for py, px in zip(ys, xs):
                ox = min(px + 1, cx1) - max(px, cx0)
                oy = min(py + 1, cy1) - max(py, cy0)
                if ox > 0 and oy > 0:
                    area += ox * oy
            out[i, j] = area / (cw * ch)
    return out


def fractions_cases():
    cases = []
    specs = [
        # (W, H, geometry or None for the whole image, h, w, mask kind)
        (16, 12, None, 4, 4, "blob"),
        (37, 29, None, 5, 7, "blob"),
        (37, 29, None, 5, 7, "noise"),
        (23, 31, None, 14, 14, "blob"),  # non-integer cell size (1.64 x 2.21 px)
        (10, 8, None, 16, 16, "noise"),  # cells smaller than a pixel
        (41, 33, (4.25, 3.5, 36.75, 30.0), 6, 6, "blob"),  # crop window, fractional edges
        (41, 33, (-3.5, -2.0, 30.0, 28.5), 5, 4, "noise"),  # window partly outside the image
        (20, 20, None, 3, 3, "pixel"),
        (13, 9, None, 2, 3, "full"),
    ]
    for W, H, geom, h, w, kind in specs:
        m = random_mask(H, W, kind)
        g = geom if geom is not None else (0.0, 0.0, float(W), float(H))
        f = brute_fractions(m, g, h, w)
        cases.append({
            "image_w": W, "image_h": H, "geom": list(map(float, g)), "h": h, "w": w,
            "mask": m.astype(int).ravel().tolist(), "fractions": f.ravel().tolist(),
        })
    return cases


# ---------------------------------------------------------------- roi align
def bilinear(feat, y, x):
    h, w, _ = feat.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(feat.shape[2])
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= h - 1:
        yh = yl = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xh = xl = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx
    return hy * hx * feat[yl, xl] + hy * lx * feat[yl, xh] + ly * hx * feat[yh, xl] + ly * lx * feat[yh, xh]


def roi_align_ref(feat, grid_box, sampling_ratio):
    """feat [h, w, dim]; grid_box in grid coordinates (spatial scale already applied)."""
    bx0, by0, bx1, by1 = grid_box
    sx, sy = bx0 - 0.5, by0 - 0.5
    rw, rh = bx1 - bx0, by1 - by0
    gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh)
    gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw)
    acc = np.zeros(feat.shape[2])
    for iy in range(gh):
        y = sy + (iy + 0.5) * rh / gh
        for ix in range(gw):
            x = sx + (ix + 0.5) * rw / gw
            acc += bilinear(feat, y, x)
    return acc / max(gh * gw, 1)


def roi_cases():
    cases = []
    specs = [
        # (h, w, dim, image W, H, geometry or None)
        (7, 9, 5, 90, 70, None),
        (14, 14, 3, 224, 224, None),
        (6, 4, 4, 61, 83, (3.0, 5.5, 58.0, 80.0)),
    ]
    for h, w, dim, W, H, geom in specs:
        feat = rng.standard_normal((h, w, dim)).astype(np.float32)
        g = geom if geom is not None else (0.0, 0.0, float(W), float(H))
        boxes = []
        for _ in range(6):
            x0, x1 = sorted(rng.uniform(-0.1 * W, 1.1 * W, 2))
            y0, y1 = sorted(rng.uniform(-0.1 * H, 1.1 * H, 2))
            boxes.append([x0, y0, x1, y1])
        boxes.append([0.0, 0.0, float(W), float(H)])
        boxes.append([W * 0.4, H * 0.4, W * 0.4 + 0.7, H * 0.4 + 0.3])  # smaller than a cell
        boxes.append([W * 1.2, H * 0.5, W * 1.4, H * 0.6])  # outside: zeros
        outs = []
        for b in boxes:
            sxs, sys_ = w / (g[2] - g[0]), h / (g[3] - g[1])
            gb = [(b[0] - g[0]) * sxs, (b[1] - g[1]) * sys_, (b[2] - g[0]) * sxs, (b[3] - g[1]) * sys_]
            for sr in (0, 2):
                outs.append({"box": [float(v) for v in b], "sampling_ratio": sr,
                             "grid_box": gb,
                             "pooled": roi_align_ref(feat.astype(np.float64), gb, sr).tolist()})
        cases.append({"h": h, "w": w, "dim": dim, "image_w": W, "image_h": H, "geom": list(map(float, g)),
                      "features": feat.ravel().tolist(), "boxes": outs})
    return cases


def check_roi_torch(cases):
    import torch
    from torchvision.ops import roi_align
    worst = 0.0
    for c in cases:
        feat = torch.tensor(np.array(c["features"], np.float32).reshape(c["h"], c["w"], c["dim"])).permute(2, 0, 1)[None]
        for b in c["boxes"]:
            boxes = torch.tensor([[0.0] + b["grid_box"]], dtype=torch.float32)
            sr = b["sampling_ratio"] if b["sampling_ratio"] > 0 else -1
            t = roi_align(feat, boxes, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=sr, aligned=True)
            worst = max(worst, float(np.abs(t.numpy().ravel() - np.array(b["pooled"])).max()))
    assert worst < 1e-5, f"numpy roi_align differs from torchvision by {worst}"
    print(f"roi_align: numpy vs torchvision max diff {worst:.2e}", file=sys.stderr)


# ---------------------------------------------------------------- select
def upsample(dense, H, W):
    """dense [C, h, w] -> [C, H, W], bilinear, align_corners=False, one output pixel at a time."""
    C, h, w = dense.shape
    out = np.zeros((C, H, W))
    for Y in range(H):
        sy = max((Y + 0.5) * h / H - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), h - 1)
        y1 = y0 + 1 if y0 < h - 1 else y0
        ly = sy - y0
        for X in range(W):
            sx = max((X + 0.5) * w / W - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), w - 1)
            x1 = x0 + 1 if x0 < w - 1 else x0
            lx = sx - x0
            out[:, Y, X] = ((1 - ly) * (1 - lx) * dense[:, y0, x0] + (1 - ly) * lx * dense[:, y0, x1]
                            + ly * (1 - lx) * dense[:, y1, x0] + ly * lx * dense[:, y1, x1])
    return out


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def select_cases():
    cases = []
    specs = [("relabel", 12, 5, 4, 37, 29), ("relabel", 20, 15, 15, 64, 48), ("dense", 6, 3, 5, 17, 23),
             ("relabel", 10, 6, 6, 5, 4)]  # map larger than the image
    for kind, C, h, w, W, H in specs:
        if kind == "relabel":
            k = 5
            logits = rng.normal(2.0, 3.0, (k, h, w)).astype(np.float32)
            cls = np.zeros((k, h, w), np.float32)
            for y in range(h):
                for x in range(w):
                    cls[:, y, x] = rng.choice(C, k, replace=False)
            data = np.stack([logits, cls])  # [2, k, h, w]
            dense = np.zeros((C, h, w))
            for r in range(k):
                for y in range(h):
                    for x in range(w):
                        dense[int(cls[r, y, x]), y, x] = logits[r, y, x]
            shape = [2, k, h, w]
        else:
            data = rng.normal(0.0, 2.0, (C, h, w)).astype(np.float32)
            dense = data.astype(np.float64)
            shape = [C, h, w]
        up = upsample(dense, H, W)
        masks = []
        for kind_m in ("blob", "blob", "noise", "pixel", "full"):
            m = random_mask(H, W, kind_m)
            probs = softmax(up[:, m].mean(axis=1))
            masks.append({"mask": m.astype(int).ravel().tolist(), "probs": probs.tolist()})
        cases.append({"kind": kind, "classes": C, "shape": shape, "image_w": W, "image_h": H,
                      "data": data.ravel().tolist(), "masks": masks, "_dense": dense})
    return cases


def check_select_torch(cases):
    import torch
    import torch.nn.functional as F
    worst = 0.0
    for c in cases:
        d = torch.tensor(c["_dense"], dtype=torch.float64)[None]
        t = F.interpolate(d, size=(c["image_h"], c["image_w"]), mode="bilinear", align_corners=False)[0].numpy()
        worst = max(worst, float(np.abs(t - upsample(c["_dense"], c["image_h"], c["image_w"])).max()))
    assert worst < 1e-9, f"numpy upsample differs from F.interpolate by {worst}"
    print(f"bilinear upsample: numpy vs F.interpolate max diff {worst:.2e}", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    fr = fractions_cases()
    roi = roi_cases()
    sel = select_cases()
    if USE_TORCH:
        check_roi_torch(roi)
        check_select_torch(sel)
    for c in sel:
        del c["_dense"]
    for name, obj in (("fractions.json", fr), ("roi_align.json", roi), ("select.json", sel)):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(obj, f, separators=(",", ":"))
            f.write("\n")
    print(json.dumps({"written": ["fractions.json", "roi_align.json", "select.json"]}))


if __name__ == "__main__":
    main()
