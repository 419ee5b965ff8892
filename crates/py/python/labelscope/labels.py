"""Label files: load every format labelscope reads (ReaL ``real.json``, INv2-ML, ImageNetV2
dataset JSON, generic JSON, CSV/TSV, expert correct/wrong/unclear labels), save, compare, and
class co-occurrence."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _native
from ._arrays import label_sets
from ._native import LabelSets

__all__ = ["LabelSets", "load", "save", "from_lists", "from_csr", "compare", "cooccurrence", "classes"]

PathLike = Union[str, "os.PathLike[str]"]


def load(path: PathLike, format: Optional[str] = None, classes: Optional[PathLike] = None) -> LabelSets:
    """Reads a label file; the format is detected from the content unless given (``real``,
    ``inv2-ml``, ``dataset``, ``json``, ``csv``, ``expert``). ``classes`` is a class-list file
    (default: the 1000 ImageNet classes). Errors name the file and the entry."""
    return _native.load_labels(os.fspath(path), format, None if classes is None else os.fspath(classes))


def save(labels: Any, path: PathLike, format: str = "json") -> None:
    """Writes label sets atomically (temp file + rename) as ``json`` ({name: [index, ...]}),
    ``inv2-ml``, ``csv`` (name,label rows) or ``real`` (ReaL's list, in the sets' order)."""
    label_sets(labels).save(os.fspath(path), format)


def from_lists(sets: Sequence[Sequence[int]], names: Optional[Sequence[str]] = None) -> LabelSets:
    """Label sets from lists of class indices (names default to "0", "1", ...)."""
    return LabelSets.from_lists([list(map(int, s)) for s in sets], None if names is None else list(names))


def from_csr(indices: Any, offsets: Any, names: Optional[Sequence[str]] = None) -> LabelSets:
    """Label sets from CSR arrays: image i has ``indices[offsets[i]:offsets[i+1]]``."""
    return label_sets((indices, offsets), names)


def compare(a: Any, b: Any, top: int = 10) -> Dict[str, Any]:
    """Image-by-image comparison of two label sources joined by name: how many images have the
    same set, a subset, a superset, an overlap or disjoint sets, with examples."""
    return _native.compare_labels(label_sets(a), label_sets(b), int(top))


def cooccurrence(labels: Any, min_count: int = 1) -> List[Dict[str, Any]]:
    """Class pairs that occur together in at least ``min_count`` label sets, most frequent first."""
    return _native.cooccurrence(label_sets(labels), int(min_count))


def classes(path: Optional[PathLike] = None) -> List[Tuple[int, str, str]]:
    """(index, wnid, name) of the 1000 ImageNet classes, or of a class-list file."""
    return _native.class_names(None if path is None else os.fspath(path))
