"""Evaluation of classifiers against multi-label ground truth (ImageNet-ReaL, INv2-ML, expert
labels, any label sets) on numpy arrays or torch tensors.

Predictions are ``[N, C]`` scores (float16/32/64; float32 C-contiguous arrays are read in place,
others are converted once) or ``[N, k]`` top-k class indices (integers, best first). Labels are a
:class:`labelscope.LabelSets` (from :func:`labelscope.labels.load`), a list of lists of class
indices, a dict ``{name: [class, ...]}`` or a CSR pair ``(indices, offsets)``. With ``names=`` the
prediction rows are joined to the labels by image name (file name without folder or extension);
without it the rows must be the labels' images in order. Images with an empty label set are left
out, as ReaL does. The heavy work runs in Rust with the GIL released.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._arrays import label_sets, predictions, scores as _scores

__all__ = [
    "Metric",
    "SetMetrics",
    "EvalRow",
    "Evaluation",
    "topk_accuracy",
    "accuracy",
    "mean_average_precision",
    "average_precision_per_class",
    "average_precision_per_sample",
    "set_metrics",
    "clopper_pearson",
    "evaluate",
    "ReaLAccumulator",
]


@dataclass(frozen=True)
class Metric:
    """A metric value with its counts (for rates) and interval (Clopper–Pearson for rates,
    bootstrap percentile for mAP; NaN when not computed)."""

    value: float
    correct: Optional[int] = None
    total: Optional[int] = None
    ci_low: float = math.nan
    ci_high: float = math.nan

    @property
    def interval(self) -> Tuple[float, float]:
        return (self.ci_low, self.ci_high)

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class SetMetrics:
    """Metrics of predicted label sets (scores thresholded; an image with nothing above the
    threshold predicts its top-1)."""

    images: int
    subset_accuracy: float
    exact: int
    mean_iou: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    macro_classes: int


@dataclass(frozen=True)
class EvalRow:
    """One result row of :func:`evaluate`, as in ``labelscope eval --json``."""

    model: str
    dataset: str
    metric: str
    subset: str
    value: float
    correct: Optional[int]
    total: Optional[int]
    ci_low: Optional[float]
    ci_high: Optional[float]


@dataclass(frozen=True)
class Evaluation:
    """Rows and notes of :func:`evaluate`."""

    rows: List[EvalRow]
    notes: List[str]

    def get(self, metric: str, subset: str = "all") -> EvalRow:
        """The row of ``metric`` on ``subset`` (KeyError naming the metrics there are)."""
        for r in self.rows:
            if r.metric == metric and r.subset == subset:
                return r
        have = sorted({r.metric for r in self.rows if r.subset == subset})
        raise KeyError(f"no row {metric!r} on subset {subset!r}; metrics there: {', '.join(have)}")

    def to_dicts(self) -> List[Dict[str, Any]]:
        return [r.__dict__.copy() for r in self.rows]


def _names(names: Optional[Iterable[Any]]) -> Optional[List[str]]:
    return None if names is None else [str(n) for n in names]


def topk_accuracy(pred: Any, labels: Any, k: int = 1, *, names: Optional[Sequence[str]] = None,
                  alpha: float = 0.05) -> Metric:
    """Share of images whose top-``k`` predictions contain a correct label (ReaL accuracy for k=1
    with ReaL labels), with a Clopper–Pearson interval at level ``1 - alpha``."""
    c, t, v, lo, hi = _native.topk_accuracy(predictions(pred), label_sets(labels), int(k), _names(names), alpha)
    return Metric(v, c, t, lo, hi)


def accuracy(pred: Any, labels: Any, *, names: Optional[Sequence[str]] = None, alpha: float = 0.05) -> Metric:
    """Top-1 accuracy against label sets (ReaL accuracy with ReaL labels)."""
    return topk_accuracy(pred, labels, 1, names=names, alpha=alpha)


def average_precision_per_class(scores: Any, labels: Any, *, names: Optional[Sequence[str]] = None,
                                voc: bool = False) -> np.ndarray:
    """AP of every class (scikit-learn's ``average_precision_score`` on the class column, or the
    PASCAL VOC all-points interpolated AP with ``voc=True``); NaN for classes without a positive.
    Images with an empty label set are neither positives nor negatives."""
    ap, ap_voc, _ = _native.per_class_ap(_scores(scores), label_sets(labels), _names(names))
    return ap_voc if voc else ap


def average_precision_per_sample(scores: Any, labels: Any, *, names: Optional[Sequence[str]] = None) -> np.ndarray:
    """AP of every image's labels ranked by its scores (NaN for images with an empty set)."""
    return _native.per_sample_ap(_scores(scores), label_sets(labels), _names(names))


def mean_average_precision(scores: Any, labels: Any, *, average: str = "classes",
                           names: Optional[Sequence[str]] = None, bootstrap: int = 0, seed: int = 0,
                           alpha: float = 0.05) -> Metric:
    """mAP: the mean AP over the classes that have a positive (``average="classes"``, as
    ``sklearn.metrics.average_precision_score(y, s, average="macro")`` on those classes) or over
    the images with labels (``"samples"``). ``bootstrap=R`` adds a percentile interval from ``R``
    resamples of the images (class-wise only). ``correct`` / ``total``: the classes (or images)
    averaged and all of them."""
    s = _scores(scores)
    ls = label_sets(labels)
    nm = _names(names)
    if average == "classes":
        ap, _, _ = _native.per_class_ap(s, ls, nm)
    elif average == "samples":
        ap = _native.per_sample_ap(s, ls, nm)
    else:
        raise ValueError(f"average={average!r}: expected 'classes' or 'samples'")
    defined = ~np.isnan(ap)
    value = float(ap[defined].mean()) if defined.any() else math.nan
    lo = hi = math.nan
    if bootstrap:
        if average != "classes":
            raise ValueError("bootstrap intervals are computed for average='classes' only")
        lo, hi = _native.map_bootstrap(s, ls, nm, int(bootstrap), int(seed), alpha)
    return Metric(value, int(defined.sum()), int(len(ap)), lo, hi)


def set_metrics(scores: Any, labels: Any, *, threshold: Union[float, str] = 0.5, activation: str = "none",
                names: Optional[Sequence[str]] = None) -> SetMetrics:
    """Set metrics (subset accuracy, mean IoU, micro/macro precision, recall, F1) of the label
    sets predicted by thresholding ``activation(scores)`` (``"none"``, ``"sigmoid"``,
    ``"softmax"``) at ``threshold`` (or ``"calibrated"``: per class, as many predictions as it
    has labels)."""
    t = None if threshold == "calibrated" else float(threshold)
    d = _native.set_metrics(_scores(scores), label_sets(labels), _names(names), t, activation)
    return SetMetrics(**d)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> Tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial proportion ``k / n`` at level ``1 - alpha``."""
    return _native.clopper_pearson_interval(int(k), int(n), alpha)


def evaluate(pred: Any, labels: Any, names: Sequence[str], *, model: str = "model", dataset: str = "dataset",
             original: Optional[Sequence[int]] = None, ks: Sequence[int] = (1, 5), alpha: float = 0.05,
             bootstrap: int = 1000, seed: int = 0, scores: Optional[str] = None, activation: str = "sigmoid",
             threshold: Union[float, str] = 0.5, breakdowns: bool = True, allow_partial: bool = False,
             classes: Optional[str] = None) -> Evaluation:
    """Everything ``labelscope eval`` computes for one model: top-k, original-label accuracy
    (``original=``), expert metrics (expert labels), mAP, set metrics (``scores="probs"`` or
    ``"logits"``), per-subset breakdowns and intervals. ``names`` are the images of the rows.
    The rows equal the CLI's JSON rows on the same inputs."""
    ls = label_sets(labels)
    t = None if threshold == "calibrated" else float(threshold)
    orig = None if original is None else [int(v) for v in original]
    rows, notes = _native.evaluate(predictions(pred), ls, [str(n) for n in names], model, dataset, orig,
                                   [int(k) for k in ks], alpha, int(bootstrap), int(seed), scores, activation, t,
                                   breakdowns, allow_partial, classes)
    return Evaluation([EvalRow(**r) for r in rows], notes)


class ReaLAccumulator:
    """Accumulates top-k hits batch by batch during a validation loop, like timm's ``ReaLLabels``,
    but keyed by image name: a name that is unknown or added twice is an error, and with
    ``order=`` (the loader's file list) every batch's names are checked against it, so a
    shuffled or mismatched loader raises instead of silently mis-scoring.

    >>> acc = ReaLAccumulator(labelscope.labels.load("real.json"), ks=(1, 5))
    >>> for images, _, names in loader:
    ...     acc.add(model(images), names)
    >>> acc.result()[1].value
    """

    def __init__(self, labels: Any, ks: Sequence[int] = (1, 5), order: Optional[Sequence[str]] = None):
        self._ks = [int(k) for k in ks]
        self._acc = _native.Accumulator(label_sets(labels), self._ks, _names(order))
        self._alpha = 0.05

    def add(self, output: Any, names: Optional[Sequence[str]] = None) -> None:
        """Adds one batch: ``output`` [B, C] scores/logits or [B, k] top indices (numpy or torch);
        ``names`` the B image names (required without ``order=``)."""
        # The common case (C-contiguous float32 numpy scores, a list of str) goes straight in:
        # this runs once per batch of a validation loop.
        if not (type(output) is np.ndarray and output.dtype == np.float32 and output.ndim == 2
                and output.flags.c_contiguous):
            output = predictions(output, "output")
        try:
            self._acc.add(output, names if type(names) is list else _names(names))
        except TypeError:
            if names is None or all(isinstance(n, str) for n in names):
                raise
            self._acc.add(output, _names(names))  # names that are not str (paths, numbers)

    @property
    def count(self) -> int:
        """Images added so far."""
        return self._acc.count

    def missing(self) -> List[str]:
        """Images of the labels not added yet."""
        return self._acc.missing()

    def result(self, alpha: float = 0.05) -> Dict[int, Metric]:
        """{k: Metric} over the images added (empty label sets left out)."""
        out = {}
        for k, c, t in self._acc.counts():
            lo, hi = clopper_pearson(c, t, alpha) if t else (math.nan, math.nan)
            out[k] = Metric(c / t if t else math.nan, c, t, lo, hi)
        return out

    def get_accuracy(self, k: int = 1) -> float:
        """timm-style: top-``k`` accuracy in percent."""
        return 100.0 * self.result()[k].value
