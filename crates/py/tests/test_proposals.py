"""labelscope.proposals: RLE equal to pycocotools; MaskCut/TokenCut find a planted object."""
import numpy as np
import pytest
from pycocotools import mask as cocomask

from labelscope import proposals as lsp


def test_rle_equals_pycocotools():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (7, 13), (64, 48), (100, 1)]:
        m = rng.random((h, w)) < 0.3
        m[0, 0] = True
        ours = lsp.rle_encode(m)
        ref = cocomask.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours == {"size": [h, w], "counts": ref["counts"]}
        assert (lsp.rle_decode(ours) == m).all()
        assert (lsp.rle_decode({"size": [h, w], "counts": ref["counts"].decode()}) == m).all()
        assert lsp.rle_area(ours) == int(cocomask.area(ref))
        np.testing.assert_allclose(lsp.rle_to_bbox(ours), cocomask.toBbox(ref))
        m2 = rng.random((h, w)) < 0.5
        r2 = cocomask.encode(np.asfortranarray(m2.astype(np.uint8)))
        want = cocomask.iou([ref], [r2], [0])[0, 0]
        assert lsp.rle_iou(ours, lsp.rle_encode(m2)) == pytest.approx(want, abs=1e-12)
    # Uncompressed counts (COCO's iscrowd form) decode too; bad input is named.
    assert lsp.rle_decode({"size": [2, 2], "counts": [1, 2, 1]}).tolist() == [[False, True], [True, False]]
    with pytest.raises(ValueError, match="sum|counts"):
        lsp.rle_decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="COCO RLE"):
        lsp.rle_decode({"counts": "x"})


def _planted(h=14, w=14, d=32, seed=0):
    rng = np.random.default_rng(seed)
    obj = np.zeros((h, w), bool)
    obj[4:9, 5:11] = True
    a, b = rng.standard_normal(d), rng.standard_normal(d)
    f = np.where(obj[..., None], a, b) + 0.05 * rng.standard_normal((h, w, d))
    return f.astype(np.float32), obj


def test_maskcut_and_tokencut_find_the_planted_object():
    f, obj = _planted()
    masks, eig = lsp.maskcut(f, max_masks=3, tau=0.15)
    assert masks.dtype == bool and masks.shape[1:] == obj.shape and len(eig) == len(masks) >= 1
    assert (masks[0] == obj).all()
    # Disjoint masks; the same from a [h*w, d] array with grid=, and from a non-contiguous view.
    assert (masks.sum(axis=0) <= 1).all()
    m2, _ = lsp.maskcut(f.reshape(-1, f.shape[2]), grid=(14, 14))
    m3, _ = lsp.maskcut(np.asfortranarray(f))
    assert (m2 == masks).all() and (m3 == masks).all()
    t, box = lsp.tokencut(f, tau=0.15)
    assert t.shape == obj.shape and ((t == obj).all() or (t == ~obj).all())
    with pytest.raises(ValueError, match="grid"):
        lsp.maskcut(f.reshape(-1, 32))
    with pytest.raises(ValueError, match="tau"):
        lsp.maskcut(f, tau=1.5)
