#!/usr/bin/env python3
"""Independent numpy/scipy reference for labelscope-vision's `mask::fill_holes`.

Usage: mask_ref.py OUT.txt

Writes deterministic test cases (random masks of several densities and
structured masks: rings, nested rings, spirals, checkerboards, shapes that
touch the border, single rows and columns, empty and full masks) with the
answer of `scipy.ndimage.binary_fill_holes` (default structure: 4-connected
cross). One case per line:

    NAME H W INPUT EXPECTED

where INPUT and EXPECTED are H*W characters '0'/'1' in row-major order.
The output is read by crates/vision/tests/fill_holes_reference.rs from
crates/vision/tests/data/fill_holes_cases.txt.
"""
import sys

import numpy as np
from scipy import ndimage


def ring(h, w, top, left, bottom, right):
    m = np.zeros((h, w), bool)
    m[top:bottom + 1, left] = True
    m[top:bottom + 1, right] = True
    m[top, left:right + 1] = True
    m[bottom, left:right + 1] = True
    return m


def spiral(n):
    m = np.zeros((n, n), bool)
    y, x, dy, dx = 0, 0, 0, 1
    lo, hi = 0, n - 1
    # Draw a rectangular spiral wall with a one-pixel corridor.
    for layer in range(0, n // 2, 2):
        a, b = layer, n - 1 - layer
        if a > b:
            break
        m[a, a:b + 1] = True
        m[a:b + 1, b] = True
        m[b, a:b + 1] = True
        m[a + 2:b + 1, a] = True
    return m


def cases():
    rng = np.random.default_rng(20260101)
    out = []
    for i, (h, w, p) in enumerate([(8, 8, 0.5), (16, 12, 0.6), (20, 20, 0.7), (31, 17, 0.55),
                                    (40, 40, 0.65), (25, 33, 0.45), (12, 50, 0.75), (60, 45, 0.6),
                                    (7, 9, 0.8), (50, 50, 0.58)]):
        out.append((f"random{i}_p{p}", rng.random((h, w)) < p))
    # Random masks made blobby by a few dilations of sparse seeds.
    for i in range(4):
        seeds = rng.random((36, 28)) < 0.08
        out.append((f"blobby{i}", ndimage.binary_dilation(seeds, iterations=2) ^ ndimage.binary_dilation(seeds, iterations=1)))
    out.append(("ring", ring(9, 11, 2, 2, 6, 8)))
    nested = ring(15, 15, 1, 1, 13, 13) | ring(15, 15, 4, 4, 10, 10)
    nested[7, 7] = True
    out.append(("nested_rings", nested))
    open_ring = ring(9, 11, 2, 2, 6, 8)
    open_ring[2, 5] = False
    out.append(("open_ring", open_ring))
    diag = ring(9, 9, 1, 1, 7, 7)
    diag[1, 1] = False  # corner gap: still closed for 4-connectivity
    out.append(("corner_gap", diag))
    out.append(("spiral", spiral(21)))
    out.append(("checker", (np.indices((10, 13)).sum(0) % 2) == 0))
    border = np.zeros((10, 10), bool)
    border[0:6, 0:6] = True
    border[1:5, 1:5] = False
    border[0, 2] = True
    out.append(("touching_border_hole", border))
    u = np.zeros((8, 10), bool)
    u[:, 3] = True
    u[:, 7] = True
    u[7, 3:8] = True
    out.append(("u_open_to_top", u))
    out.append(("row", rng.random((1, 30)) < 0.5))
    out.append(("column", rng.random((25, 1)) < 0.5))
    out.append(("empty", np.zeros((6, 7), bool)))
    out.append(("full", np.ones((6, 7), bool)))
    out.append(("single", np.ones((1, 1), bool)))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    bits = lambda a: "".join("1" if v else "0" for v in a.ravel())
    with open(sys.argv[1], "w") as f:
        for name, m in cases():
            filled = ndimage.binary_fill_holes(m)
            f.write(f"{name} {m.shape[0]} {m.shape[1]} {bits(m)} {bits(filled)}\n")


if __name__ == "__main__":
    main()
