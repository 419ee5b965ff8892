#!/usr/bin/env python3
"""Independent check of a proposals COCO file against patch-grid masks.

Usage: proposals_ref.py COCO.json CASES.json

CASES.json maps an image file name to {"grid_masks": "masks.npy"} (uint8
[n, h, w], the masks in discovery order as written by `labelscope proposals
--grid-masks`). For every image of the COCO file this script decodes each
annotation with pycocotools, upsamples the corresponding grid mask to the
image size with numpy (pixel (y, x) takes cell (floor(y*h/H), floor(x*w/W))),
and prints JSON: per image, whether every mask is equal, and pycocotools'
area and toBbox next to the file's values.
"""
import json
import sys

import numpy as np
from pycocotools import mask as mask_utils


def upsample(grid, height, width):
    h, w = grid.shape
    rows = (np.arange(height) * h) // height
    cols = (np.arange(width) * w) // width
    return grid[rows][:, cols]


def main():
    coco = json.load(open(sys.argv[1]))
    cases = json.load(open(sys.argv[2]))
    anns = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    out = {}
    for img in coco["images"]:
        case = cases.get(img["file_name"])
        if case is None:
            continue
        grids = np.load(case["grid_masks"])
        mine = anns.get(img["id"], [])
        res = {"count": len(mine), "expected_count": int(grids.shape[0]), "equal": [], "area_ok": [], "bbox_ok": []}
        for a, g in zip(mine, grids):
            rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            m = mask_utils.decode(rle).astype(bool)
            want = upsample(g.astype(bool), img["height"], img["width"])
            res["equal"].append(bool(m.shape == want.shape and (m == want).all()))
            res["area_ok"].append(int(mask_utils.area(rle)) == int(a["area"]))
            res["bbox_ok"].append([float(v) for v in mask_utils.toBbox(rle)] == [float(v) for v in a["bbox"]])
        out[img["file_name"]] = res
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
