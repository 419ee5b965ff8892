"""Object proposals by normalized cuts on self-supervised ViT patch features (MaskCut as in
CutLER, TokenCut), and COCO run-length encoding compatible with pycocotools."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from . import _native
from ._arrays import as_array

__all__ = ["maskcut", "tokencut", "rle_encode", "rle_decode", "rle_area", "rle_to_bbox", "rle_iou"]


def _features(features: Any, grid: Optional[Tuple[int, int]]) -> np.ndarray:
    f = as_array(features, "features")
    if f.ndim == 2:
        if grid is None:
            raise ValueError(f"features of shape {f.shape}: a [h*w, d] array needs grid=(h, w)")
        h, w = grid
        if h * w != f.shape[0]:
            raise ValueError(f"features of shape {f.shape}: grid {grid} has {h * w} patches, not {f.shape[0]}")
        f = f.reshape(h, w, f.shape[1])
    if f.ndim != 3:
        raise ValueError(f"features: expected [h, w, d] (or [h*w, d] with grid=), got shape {f.shape}")
    return np.ascontiguousarray(f, dtype=np.float32)


def maskcut(features: Any, *, max_masks: int = 3, tau: float = 0.15, eps: float = 1e-5,
            grid: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, List[float]]:
    """MaskCut on patch features ``[h, w, d]`` (or ``[h*w, d]`` with ``grid=(h, w)``): up to
    ``max_masks`` disjoint boolean patch masks ``[k, h, w]`` and the eigenvalue of each cut."""
    return _native.maskcut(_features(features, grid), int(max_masks), float(tau), float(eps))


def tokencut(features: Any, *, tau: float = 0.2, eps: float = 1e-5,
             grid: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """TokenCut: one cut; the boolean patch mask ``[h, w]`` and its box (row0, col0, row1, col1)."""
    m, b = _native.tokencut(_features(features, grid), float(tau), float(eps))
    return m, tuple(b)


Rle = Dict[str, Any]


def rle_encode(mask: Any) -> Rle:
    """COCO RLE of a boolean mask ``[h, w]``: ``{"size": [h, w], "counts": bytes}``, the same
    object as ``pycocotools.mask.encode(np.asfortranarray(mask))``."""
    m = as_array(mask, "mask")
    if m.ndim != 2:
        raise ValueError(f"mask: expected a 2-d [h, w] array, got shape {m.shape}")
    counts, h, w = _native.rle_encode(np.ascontiguousarray(m, dtype=bool))
    return {"size": [h, w], "counts": counts.encode("ascii")}


def _rle(rle: Rle) -> Tuple[Any, int, int]:
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"expected a COCO RLE {{'size': [h, w], 'counts': ...}}, got {rle!r:.80}") from None
    return counts, h, w


def rle_decode(rle: Rle) -> np.ndarray:
    """The boolean mask ``[h, w]`` of a COCO RLE (compressed string/bytes or uncompressed list)."""
    return _native.rle_decode(*_rle(rle))


def rle_area(rle: Rle) -> int:
    """Number of foreground pixels (``pycocotools.mask.area``)."""
    return _native.rle_area_bbox(*_rle(rle))[0]


def rle_to_bbox(rle: Rle) -> List[float]:
    """Bounding box ``[x, y, w, h]`` (``pycocotools.mask.toBbox``)."""
    return list(_native.rle_area_bbox(*_rle(rle))[1])


def rle_iou(a: Rle, b: Rle) -> float:
    """Intersection over union of two masks of the same size."""
    ca, ha, wa = _rle(a)
    cb, hb, wb = _rle(b)
    if (ha, wa) != (hb, wb):
        raise ValueError(f"masks of sizes {[ha, wa]} and {[hb, wb]}: expected the same size")
    return _native.rle_iou(ca, cb, ha, wa)
