"""labelscope.eval against the published ReaL anchor, the CLI's JSON, scikit-learn and scipy."""
import json
import subprocess
import threading

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import average_precision_score, f1_score, jaccard_score, precision_score, recall_score

import labelscope as ls
from labelscope import eval as lse


def test_real_top1_anchor_and_accumulator(shared, val_names, resnet50):
    real = ls.labels.load(shared / "imagenet" / "real.json")
    assert len(real) == 50000 and real.empty_count == 3163 and real.format == "real"
    m = lse.accuracy(resnet50, real, names=val_names)
    assert (m.correct, m.total) == (38855, 46837)  # the data README's anchor
    lo, hi = scipy.stats.beta.ppf([0.025, 0.975], [38855, 38856], [46837 - 38855 + 1, 46837 - 38855])
    assert m.ci_low == pytest.approx(lo, abs=1e-9) and m.ci_high == pytest.approx(hi, abs=1e-9)
    # The same, batch by batch in a validation loop keyed by file name, in the files' row order.
    acc = lse.ReaLAccumulator(real, ks=(1, 5))
    for s in range(0, 50000, 256):
        acc.add(resnet50[s:s + 256], val_names[s:s + 256])
    r = acc.result()
    assert (r[1].correct, r[1].total) == (38855, 46837)
    top5 = lse.topk_accuracy(resnet50, real, 5, names=val_names)
    assert (r[5].correct, r[5].total) == (top5.correct, top5.total)
    assert acc.count == 50000 and acc.missing() == []
    assert acc.get_accuracy(1) == pytest.approx(100 * 38855 / 46837)


def test_accumulator_refuses_mismatched_order_duplicates_and_unknown_names(shared, val_names, resnet50):
    real = ls.labels.load(shared / "imagenet" / "real.json")
    acc = lse.ReaLAccumulator(real, ks=(1,), order=val_names)
    acc.add(resnet50[:8])  # rows taken from the order
    with pytest.raises(ValueError, match=r"batch 1, row 0: .* but the order has"):
        acc.add(resnet50[8:16], val_names[9:17])  # a loader that skipped one image
    acc2 = lse.ReaLAccumulator(real, ks=(1,))
    acc2.add(resnet50[:4], val_names[:4])
    with pytest.raises(ValueError, match="already added"):
        acc2.add(resnet50[:1], val_names[:1])
    with pytest.raises(KeyError, match="not_an_image"):
        acc2.add(resnet50[:1], ["not_an_image.JPEG"])
    with pytest.raises(ValueError, match="2 names for 1 prediction rows"):
        acc2.add(resnet50[:1], val_names[5:7])
    with pytest.raises(ValueError, match="names= is required"):
        acc2.add(resnet50[:1])
    # A refused batch leaves nothing behind: its earlier rows can be added again.
    with pytest.raises(KeyError, match="batch 1, row 2"):
        acc2.add(resnet50[4:7], val_names[4:6] + ["not_an_image"])
    with pytest.raises(ValueError, match="batch 1, row 1: .* already added"):
        acc2.add(resnet50[4:6], [val_names[4], val_names[4]])
    acc2.add(resnet50[4:6], val_names[4:6])
    assert acc2.count == 6
    r = acc2.result()[1]
    labels6 = [real.get(n) for n in val_names[:6]]
    want = sum(int(resnet50[i][0] in s) for i, s in enumerate(labels6) if s)  # rows: top-5 indices
    assert (r.correct, r.total) == (want, sum(1 for s in labels6 if s))


def test_accumulator_ranks_ties_refuses_nan_and_takes_any_names():
    # Coarse scores (many ties, -0.0 beside 0.0), float64 and non-contiguous batches, names as
    # numpy strings, pathlib paths and a tuple; the hits against a stable argsort in numpy.
    import pathlib
    rng = np.random.default_rng(7)
    n, c = 500, 30
    scores = (rng.integers(-4, 5, size=(n, c)) / 4).astype(np.float32)
    scores[scores == 0] = np.where(rng.random((scores == 0).sum()) < 0.5, -0.0, 0.0)
    sets = [sorted(set(rng.integers(0, c, size=rng.integers(0, 4)).tolist())) for _ in range(n)]
    names = [f"d/{i:04d}.JPEG" for i in range(n)]
    acc = lse.ReaLAccumulator(ls.labels.from_lists(sets, names), ks=(1, 2, 5))
    batches = [(0, 100, lambda s, nm: (s, nm)),
               (100, 200, lambda s, nm: (s.astype(np.float64), np.array(nm))),
               (200, 300, lambda s, nm: (np.asfortranarray(s), [pathlib.PurePosixPath(x) for x in nm])),
               (300, 500, lambda s, nm: (s, tuple(x.split("/")[1] for x in nm)))]
    for a, b, conv in batches:
        acc.add(*conv(scores[a:b], names[a:b]))
    order = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")  # ties: lower column first
    res = acc.result()
    for k in (1, 2, 5):
        want = sum(bool(set(order[i, :k].tolist()) & set(s)) for i, s in enumerate(sets) if s)
        assert (res[k].correct, res[k].total) == (want, sum(1 for s in sets if s))
    acc2 = lse.ReaLAccumulator(ls.labels.from_lists(sets, names), ks=(1,))
    bad = scores[:4].copy()
    bad[2, 7] = np.inf
    with pytest.raises(ValueError, match="batch 0, row 2, column 7: score inf is not finite"):
        acc2.add(bad, names[:4])
    assert acc2.count == 0  # the refused batch left nothing behind
    acc2.add(scores[:4], names[:4])
    assert acc2.count == 4


def test_evaluate_equals_the_cli_json(shared, cli, val_names, resnet50):
    labels = shared / "imagenet" / "real.json"
    out = subprocess.run([cli, "eval", "--labels", str(labels), "--predictions",
                          str(shared / "predictions" / "imagenet-val" / "resnet50.npy"), "--images",
                          str(shared / "imagenet" / "val_original.json"), "--json"],
                         capture_output=True, text=True, check=True)
    want = json.loads(out.stdout)["rows"]
    with open(shared / "imagenet" / "val_original.json") as f:
        wnids = [p[1] for p in json.load(f)["image_filenames"]]
    index = {w: i for i, w, _ in ls.labels.classes()}
    got = lse.evaluate(resnet50, ls.labels.load(labels), val_names, model="resnet50", dataset="real",
                       original=[index[w] for w in wnids])
    assert len(got.rows) == len(want) > 10
    for g, w in zip(got.to_dicts(), want):
        for key in ("metric", "subset", "correct", "total"):
            assert g[key] == w[key], (g, w)
        for key in ("value", "ci_low", "ci_high"):
            assert (g[key] is None) == (w[key] is None) and (g[key] is None or g[key] == pytest.approx(w[key], abs=1e-12)), (g, w)
    assert got.get("top1").correct == 38855
    with pytest.raises(KeyError, match="no row 'top9'"):
        got.get("top9")


def _random_problem(n=600, c=40, seed=0):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((n, c)) * 64) / 64  # many ties
    sets = []
    for i in range(n):
        if i % 37 == 0:
            sets.append([])  # no valid label: left out of everything
        else:
            k = rng.integers(1, 4)
            sets.append(sorted(rng.choice(c - 3, size=k, replace=False).tolist()))  # 3 classes never positive
    return scores.astype(np.float32), sets


def test_map_equals_sklearn_for_every_dtype_and_layout():
    scores, sets = _random_problem()
    keep = np.array([len(s) > 0 for s in sets])
    y = np.zeros(scores.shape, dtype=int)
    for i, s in enumerate(sets):
        y[i, s] = 1
    want = np.array([average_precision_score(y[keep, j], scores[keep, j]) if y[keep, j].any() else np.nan
                     for j in range(scores.shape[1])])
    got = lse.average_precision_per_class(scores, sets)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)
    m = lse.mean_average_precision(scores, sets)
    assert m.value == pytest.approx(np.nanmean(want), abs=1e-12) and (m.correct, m.total) == (37, 40)
    # f16 / f64 copies of the same (f32-representable) values, a Fortran-order and a strided
    # view, CSR labels and a torch-free list input all give the same numbers.
    csr = ls.labels.from_lists(sets).to_csr()
    for variant, lab in [(scores.astype(np.float64), sets), (np.asfortranarray(scores), sets),
                         (np.repeat(scores, 2, axis=1)[:, ::2], csr), (scores.astype(np.float16).astype(np.float32), sets)]:
        ref = want if variant.dtype != np.float16 else None
        g = lse.average_precision_per_class(variant, lab)
        if ref is not None:
            np.testing.assert_allclose(g, ref, atol=1e-12, equal_nan=True)
    f16 = scores.astype(np.float16)
    np.testing.assert_allclose(lse.average_precision_per_class(f16, sets),
                               lse.average_precision_per_class(f16.astype(np.float32), sets), atol=0, equal_nan=True)
    # Per-image AP against sklearn row by row.
    per = lse.average_precision_per_sample(scores, sets)
    for i in range(0, len(sets), 7):
        if sets[i]:
            assert per[i] == pytest.approx(average_precision_score(y[i], scores[i]), abs=1e-12)
        else:
            assert np.isnan(per[i])
    # Bootstrap interval: on informative scores it brackets the value and narrows with n.
    informative = (scores + 0.3 * y).astype(np.float32)
    b = lse.mean_average_precision(informative, sets, bootstrap=200, seed=3)
    assert b.ci_low < b.value < b.ci_high <= 1.0
    half = lse.mean_average_precision(informative[:150], sets[:150], bootstrap=200, seed=3)
    assert half.ci_high - half.ci_low > b.ci_high - b.ci_low


def test_set_metrics_equal_sklearn():
    scores, sets = _random_problem(seed=1)
    keep = [i for i, s in enumerate(sets) if s]
    y = np.zeros(scores.shape, dtype=int)
    for i, s in enumerate(sets):
        y[i, s] = 1
    pred = (scores >= 0.9).astype(int)
    for i in range(len(pred)):  # nothing above the threshold: the top-1 (first maximum)
        if not pred[i].any():
            pred[i, np.argmax(scores[i])] = 1
    yt, yp = y[keep], pred[keep]
    present = yt.any(axis=0)
    m = lse.set_metrics(scores, sets, threshold=0.9)
    assert m.images == len(keep)
    assert m.subset_accuracy == pytest.approx(np.mean((yt == yp).all(axis=1)))
    assert m.mean_iou == pytest.approx(jaccard_score(yt, yp, average="samples", zero_division=0))
    assert m.micro_precision == pytest.approx(precision_score(yt, yp, average="micro"))
    assert m.micro_recall == pytest.approx(recall_score(yt, yp, average="micro"))
    assert m.micro_f1 == pytest.approx(f1_score(yt, yp, average="micro"))
    assert m.macro_f1 == pytest.approx(f1_score(yt[:, present], yp[:, present], average="macro", zero_division=0))
    assert m.macro_classes == present.sum()


def test_inputs_are_checked_with_clear_errors():
    scores, sets = _random_problem(n=50, c=10)
    with pytest.raises(ValueError, match="50 prediction rows but 49 label sets"):
        lse.mean_average_precision(scores, sets[:49])
    bad = scores.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="row 3, column 4"):
        lse.mean_average_precision(bad, sets)
    with pytest.raises(ValueError, match="image 2: class 12 is not below the 10 classes"):
        lse.accuracy(scores, sets[:2] + [[12]] + sets[3:])
    with pytest.raises(KeyError, match="x9"):
        lse.accuracy(scores[:2], {"a": [1], "b": [2]}, names=["a", "x9"])
    with pytest.raises(TypeError, match="labels"):
        lse.accuracy(scores, 3)
    with pytest.raises(ValueError, match="k = 6: the predictions hold only 5"):
        lse.topk_accuracy(np.zeros((50, 5), dtype=np.int64), sets, 6)
    with pytest.raises(ValueError, match="expected a 2-d"):
        lse.mean_average_precision(scores[0], sets)


def test_topk_on_indices_and_scores_agree_with_numpy():
    scores, sets = _random_problem(n=300, c=20, seed=4)
    scores = scores + np.arange(20, dtype=np.float32) * 1e-4  # no ties: a unique ranking
    order = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 3):
        hits = [bool(set(order[i, :k]) & set(s)) for i, s in enumerate(sets) if s]
        a = lse.topk_accuracy(scores, sets, k)
        b = lse.topk_accuracy(order[:, :5].astype(np.int32), sets, k)
        assert (a.correct, a.total) == (b.correct, b.total) == (sum(hits), len(hits))


def test_clopper_pearson_equals_scipy():
    for k, n in [(0, 10), (3, 10), (10, 10), (38855, 46837)]:
        lo, hi = lse.clopper_pearson(k, n, 0.05)
        wl = 0.0 if k == 0 else scipy.stats.beta.ppf(0.025, k, n - k + 1)
        wh = 1.0 if k == n else scipy.stats.beta.ppf(0.975, k + 1, n - k)
        assert lo == pytest.approx(wl, abs=1e-9) and hi == pytest.approx(wh, abs=1e-9)


def test_the_gil_is_released_during_heavy_work():
    rng = np.random.default_rng(0)
    scores = rng.random((20000, 1000), dtype=np.float32)
    labels = ls.labels.from_lists([[i % 1000] for i in range(20000)])
    done = []
    t = threading.Thread(target=lambda: done.append([lse.average_precision_per_class(scores, labels) for _ in range(3)]))
    ticks = 0
    t.start()
    while t.is_alive():
        ticks += 1
    t.join()
    # With the GIL held for the whole call the loop above could not run while Rust works.
    assert done and ticks > 10000, ticks
