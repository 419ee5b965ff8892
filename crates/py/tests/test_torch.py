"""Torch tensors go in through the array protocol (optional: skipped where torch is absent; the
rest of the suite is the PyTorch-free path)."""
import numpy as np
import pytest

from labelscope import eval as lse
from labelscope import proposals as lsp

torch = pytest.importorskip("torch")


def test_tensors_equal_arrays():
    rng = np.random.default_rng(0)
    s = rng.random((200, 30)).astype(np.float32)
    sets = [[i % 30, (3 * i) % 30] for i in range(200)]
    t = torch.from_numpy(s).requires_grad_(True)
    assert lse.mean_average_precision(t, sets).value == lse.mean_average_precision(s, sets).value
    assert lse.accuracy(t.half(), sets).value == lse.accuracy(s.astype(np.float16), sets).value
    idx = torch.topk(torch.from_numpy(s), 5).indices
    assert lse.topk_accuracy(idx, sets, 5).correct == lse.topk_accuracy(s, sets, 5).correct
    acc = lse.ReaLAccumulator(sets, ks=(1,))
    acc.add(t[:100], [str(i) for i in range(100)])
    assert acc.count == 100
    f = torch.randn(8, 8, 16)
    assert lsp.maskcut(f)[0].shape[1:] == (8, 8)
