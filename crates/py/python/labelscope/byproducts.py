"""Annotation byproducts as training targets: LUAB point targets from ImageNet-AB archives and
the random-resized-crop / flip transform of points (torchvision's crop parameters)."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import _native
from ._arrays import as_array

__all__ = ["imagenet_ab_targets", "coco_ab_targets", "map_points", "map_point"]


def imagenet_ab_targets(path: Union[str, "os.PathLike[str]"], mode: str = "final-click",
                        random_seed: Optional[int] = None) -> Dict[str, Tuple[float, float]]:
    """LUAB point targets ``{image: (x, y)}`` (normalised to the image) from an ImageNet-AB
    archive; ``mode`` is ``"final-click"``, ``"mean-of-clicks"`` or ``"last-trace:N"``; images
    without a selected click get no entry. ``random_seed`` gives the random-point baseline (a
    uniform point for every image that has a target)."""
    names, pts = _native.imagenet_ab_targets(os.fspath(path), mode, random_seed)
    keep = ~np.isnan(pts[:, 0])
    return {n: (float(p[0]), float(p[1])) for n, p, k in zip(names, pts, keep) if k}


def coco_ab_targets(path: Union[str, "os.PathLike[str]"],
                    random_seed: Optional[int] = None) -> Dict[int, Dict[str, Tuple[float, float]]]:
    """Per-class LUAB point targets ``{image_id: {icon class: (x, y)}}`` from a COCO-AB release:
    the last placement of every icon on each record (for multi-label LUAB); ``random_seed``
    gives the random-point baseline."""
    out: Dict[int, Dict[str, Tuple[float, float]]] = {}
    for image, cls, x, y in _native.coco_ab_targets(os.fspath(path), random_seed):
        out.setdefault(image, {})[cls] = (x, y)
    return out


def map_points(points: Any, crops: Any, width: float, height: float) -> Tuple[np.ndarray, np.ndarray]:
    """Maps normalised points ``[n, 2]`` (x, y) of a ``width`` x ``height`` image through crops
    ``[n, 5]`` = (top, left, crop height, crop width, flip) in pixels, as torchvision's
    ``RandomResizedCrop.get_params`` returns them, then an optional horizontal flip. Returns the
    points normalised to their crops (NaN where dropped) and a boolean array of those kept
    (inside the crop, edges included)."""
    p = np.ascontiguousarray(as_array(points, "points"), dtype=np.float64).reshape(-1, 2)
    c = np.ascontiguousarray(as_array(crops, "crops"), dtype=np.float64).reshape(-1, 5)
    return _native.map_points_through_crops(p, c, float(width), float(height))


def map_point(point: Tuple[float, float], crop: Tuple[float, float, float, float], width: float, height: float,
              flip: bool = False) -> Optional[Tuple[float, float]]:
    """One point through one crop (top, left, height, width) and flip; None if it falls outside."""
    q, k = map_points([point], [[*crop, float(flip)]], width, height)
    return (float(q[0, 0]), float(q[0, 1])) if k[0] else None
