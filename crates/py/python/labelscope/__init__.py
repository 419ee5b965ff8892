"""labelscope: multi-label evaluation, label-set tools, object proposals and annotation-byproduct
targets for ImageNet-style datasets, on numpy arrays (and torch tensors through the array
protocol), computed by a Rust core.

Modules: :mod:`labelscope.eval`, :mod:`labelscope.labels`, :mod:`labelscope.proposals`,
:mod:`labelscope.byproducts`.
"""
from . import byproducts, eval, labels, proposals
from ._native import LabelSets, __version__

__all__ = ["eval", "labels", "proposals", "byproducts", "LabelSets", "__version__"]
