#!/usr/bin/env python3
"""pycocotools answers for the RLE test: MANIFEST.json lists .npy files
(uint8 [h, w] masks). Prints JSON: per mask, pycocotools' compressed counts
string, area and toBbox, and the iou (iscrowd=0) of each mask with the next
one of the same size (null when sizes differ or a mask is empty)."""
import json
import sys

import numpy as np
from pycocotools import mask as mask_utils


def main():
    files = json.load(open(sys.argv[1]))
    out = []
    rles = []
    for f in files:
        m = np.load(f).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(m))
        rles.append((m, rle))
        out.append({
            "counts": rle["counts"].decode("ascii"),
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        })
    for k in range(len(rles)):
        iou = None
        if k + 1 < len(rles):
            (a, ra), (b, rb) = rles[k], rles[k + 1]
            if a.shape == b.shape and a.any() and b.any():
                iou = float(mask_utils.iou([ra], [rb], [0])[0][0])
        out[k]["iou_next"] = iou
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
