#!/usr/bin/env python3
"""Independent recall / CorLoc for the proposals eval test.

Usage: corloc_ref.py PROPOSALS_COCO.json BOXES.tsv IOU

Prints JSON {convention: {images, objects, found, corloc_hits}} for the
"continuous" and "pixel-inclusive" box conventions. Ground truth: TSV lines
name, class, x0, y0, x1, y1, keyed by the name without its extension.
Proposals: COCO bbox [x, y, w, h] in file order; the first one per image is
the CorLoc box."""
import json
import os
import sys


def key(name):
    base = os.path.basename(name)
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in (".jpeg", ".jpg", ".png") else base


def iou(a, b, plus):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + plus)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + plus)
    inter = iw * ih
    area_a = (a[2] - a[0] + plus) * (a[3] - a[1] + plus)
    area_b = (b[2] - b[0] + plus) * (b[3] - b[1] + plus)
    u = area_a + area_b - inter
    return inter / u if u > 0 else 0.0


def main():
    coco = json.load(open(sys.argv[1]))
    thr = float(sys.argv[3])
    gt = {}
    for line in open(sys.argv[2]):
        f = line.rstrip("\n").split("\t")
        if len(f) == 6:
            gt.setdefault(key(f[0]), []).append([float(v) for v in f[2:]])
    names = {im["id"]: key(im["file_name"]) for im in coco["images"]}
    out = {}
    for conv, plus in (("continuous", 0.0), ("pixel-inclusive", 1.0)):
        props = {n: [] for n in names.values()}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            props[names[a["image_id"]]].append([x, y, x + w - plus, y + h - plus])
        objects = found = hits = 0
        for n, ps in props.items():
            objs = gt[n]
            objects += len(objs)
            found += sum(1 for o in objs if any(iou(p, o, plus) >= thr for p in ps))
            if ps and any(iou(ps[0], o, plus) >= thr for o in objs):
                hits += 1
        out[conv] = {"images": len(props), "objects": objects, "found": found, "corloc_hits": hits}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
