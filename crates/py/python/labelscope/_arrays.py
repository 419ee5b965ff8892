"""Input normalisation shared by the modules: numpy arrays, torch tensors (array protocol),
lists; float16/32/64 scores, integer top-k indices; C-contiguous or not."""
from __future__ import annotations

from typing import Any

import numpy as np

from ._native import LabelSets


def as_array(x: Any, what: str) -> np.ndarray:
    """`x` as a numpy array without copying when it already is one (torch CPU tensors are viewed
    through `__array__`; tensors that require grad or live on a GPU are detached / moved first)."""
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("torch"):
        x = x.detach()
        if getattr(x, "device", None) is not None and x.device.type != "cpu":
            x = x.cpu()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - numpy's own message is kept
        raise TypeError(f"{what}: cannot be read as an array ({e})") from None


def scores(x: Any, what: str = "scores") -> np.ndarray:
    """[N, C] scores as a C-contiguous float32 array: no copy when they already are one; f16 and
    f64 are converted (f64 values are rounded to f32, as the CLI's files are)."""
    a = as_array(x, what)
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-d [N, C] array, got shape {a.shape}")
    if a.dtype.kind != "f":
        raise TypeError(f"{what}: expected floating-point scores, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def predictions(x: Any, what: str = "predictions") -> np.ndarray:
    """Scores (float, as :func:`scores`) or top-k class indices (integers, best first, as int64)."""
    a = as_array(x, what)
    if a.ndim == 1 and a.dtype.kind in "iu":
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected [N, C] scores or [N, k] class indices, got shape {a.shape}")
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype.kind in "iu":
        if a.size and a.min() < 0:
            r, c = np.argwhere(a < 0)[0]
            raise ValueError(f"{what}: row {r}, column {c}: {a[r, c]} is not a class index")
        return np.ascontiguousarray(a, dtype=np.int64)
    raise TypeError(f"{what}: expected float scores or integer class indices, got dtype {a.dtype}")


def label_sets(labels: Any, names: Any = None) -> LabelSets:
    """A :class:`LabelSets` from itself, a list of lists of class indices, a dict {name: [class,
    ...]}, or a CSR pair ``(indices, offsets)``."""
    if isinstance(labels, LabelSets):
        return labels
    if isinstance(labels, dict):
        return LabelSets.from_lists([list(map(int, v)) for v in labels.values()], [str(k) for k in labels])
    if isinstance(labels, tuple) and len(labels) == 2 and all(hasattr(t, "__len__") for t in labels):
        idx, off = (np.ascontiguousarray(as_array(t, "labels"), dtype=np.int64) for t in labels)
        if idx.ndim == 1 and off.ndim == 1 and (len(off) == 0 or off[0] == 0):
            return LabelSets.from_csr(idx, off, None if names is None else list(names))
    if isinstance(labels, (list, tuple)):
        sets = []
        for i, s in enumerate(labels):
            if isinstance(s, (int, np.integer)):
                sets.append([int(s)])
            else:
                try:
                    sets.append([int(k) for k in s])
                except TypeError:
                    raise TypeError(f"labels[{i}]: expected a list of class indices, got {type(s).__name__}") from None
        return LabelSets.from_lists(sets, None if names is None else [str(n) for n in names])
    raise TypeError(
        "labels: expected a LabelSets, a list of lists of class indices, a dict {name: [class, ...]} "
        f"or a CSR pair (indices, offsets); got {type(labels).__name__}"
    )
