"""labelscope.byproducts: point targets equal to the CLI's; the crop/flip point transform."""
import csv
import subprocess

import numpy as np
import pytest

from labelscope import byproducts as lsb


def test_point_transform_by_hand():
    # A 200 x 100 image (width x height), a crop at top 10, left 50, 50 high, 100 wide.
    pts = np.array([[0.5, 0.3], [0.5, 0.3], [0.1, 0.5], [0.75, 0.6]])
    crops = np.array([[10, 50, 50, 100, 0], [10, 50, 50, 100, 1], [10, 50, 50, 100, 0], [10, 50, 50, 100, 0]])
    q, keep = lsb.map_points(pts, crops, 200, 100)
    # (100, 30) px -> ((100-50)/100, (30-10)/50) = (0.5, 0.4); flipped x -> 0.5; (20, 50) is outside;
    # (150, 60) is on the right and bottom edges: inside.
    np.testing.assert_allclose(q[[0, 1, 3]], [[0.5, 0.4], [0.5, 0.4], [1.0, 1.0]])
    assert keep.tolist() == [True, True, False, True] and np.isnan(q[2]).all()
    assert lsb.map_point((0.3, 0.3), (10, 50, 50, 100), 200, 100, flip=True) == pytest.approx((0.9, 0.4))
    assert lsb.map_point((0.0, 0.0), (10, 50, 50, 100), 200, 100) is None
    with pytest.raises(ValueError, match=r"\[n, 5\]"):
        lsb.map_points(pts, crops[:2], 200, 100)


def test_targets_equal_the_cli(cli, tmp_path):
    ab, boxes = tmp_path / "ab.tar.gz", tmp_path / "boxes.tsv"
    coco, inst = tmp_path / "coco.json", tmp_path / "inst.json"
    subprocess.run([cli, "byproducts", "synth", "--imagenet-ab", str(ab), "--boxes", str(boxes), "--coco-ab", str(coco),
                    "--instances", str(inst), "--images", "60", "--classes", "5", "-q"], check=True)
    for mode, cli_mode in [("final-click", "final"), ("mean-of-clicks", "mean"), ("last-trace:3", "last:3")]:
        out = tmp_path / f"{cli_mode.replace(':', '')}.csv"
        subprocess.run([cli, "byproducts", "targets", "--imagenet-ab", str(ab), "--mode", cli_mode, "-o", str(out)],
                       check=True)
        with open(out) as f:
            rows = {r["image"]: (float(r["x"]), float(r["y"])) for r in csv.DictReader(f) if r["x"]}
        got = lsb.imagenet_ab_targets(ab, mode)
        assert got.keys() == rows.keys() and len(got) > 30
        for k in got:
            assert got[k] == pytest.approx(rows[k], abs=1e-12)
    random = lsb.imagenet_ab_targets(ab, random_seed=7)
    assert random.keys() == lsb.imagenet_ab_targets(ab).keys()
    assert all(0 <= x <= 1 and 0 <= y <= 1 for x, y in random.values())
    out = tmp_path / "coco.csv"
    subprocess.run([cli, "byproducts", "targets", "--coco-ab", str(coco), "-o", str(out)], check=True)
    with open(out) as f:
        rows = {(int(r["image"]), r["class"]): (float(r["x"]), float(r["y"])) for r in csv.DictReader(f)}
    got = lsb.coco_ab_targets(coco)
    flat = {(i, c): p for i, d in got.items() for c, p in d.items()}
    assert flat.keys() == rows.keys() and len(flat) > 30
    for k in flat:
        assert flat[k] == pytest.approx(rows[k], abs=1e-12)
    with pytest.raises(ValueError, match="mode 'best'|mode \"best\""):
        lsb.imagenet_ab_targets(ab, "best")
