"""labelscope.labels: every reader on the real files, save round trips, compare, co-occurrence."""
import collections
import json

import numpy as np
import pytest

import labelscope as ls


def test_real_and_inv2_ml_load_as_published(shared):
    real = ls.labels.load(shared / "imagenet" / "real.json")
    with open(shared / "imagenet" / "real.json") as f:
        raw = json.load(f)
    assert real.sets == [sorted(set(s)) for s in raw]
    assert real.names[0] == "ILSVRC2012_val_00000001.JPEG" and real.get("ILSVRC2012_val_00000001") == raw[0]
    ml = ls.labels.load(shared / "imagenetv2" / "inv2_ml_labels.json")
    with open(shared / "imagenetv2" / "inv2_ml_labels.json") as f:
        raw = json.load(f)
    assert ml.format == "inv2-ml" and len(ml) == len(raw) and ml.empty_count == 129
    k = next(iter(raw))
    assert ml.get(k) == sorted(int(v) for v in raw[k])
    # The dataset JSON (single labels by wnid) and the class table.
    orig = ls.labels.load(shared / "imagenet" / "val_original.json")
    assert orig.format == "dataset" and len(orig) == 50000 and all(len(s) == 1 for s in orig.sets[:100])
    classes = ls.labels.classes()
    assert classes[0][1] == "n01440764" and len(classes) == 1000


def test_save_round_trips_atomically(tmp_path):
    sets = [[3, 1], [], [999, 0, 0]]
    lab = ls.labels.from_lists(sets, ["a.jpg", "b.jpg", "c.jpg"])
    for fmt in ("json", "inv2-ml", "csv"):
        p = tmp_path / f"l.{fmt.replace('-', '')}"
        ls.labels.save(lab, p, fmt)
        back = ls.labels.load(p, None if fmt != "csv" else "csv")
        got = {n: back.get(n) for n in back.names}
        want = {"a.jpg": [1, 3], "b.jpg": [], "c.jpg": [0, 999]}
        if fmt == "csv":  # a row per label: images without labels have no row
            want.pop("b.jpg")
        assert got == want, fmt
        assert not list(tmp_path.glob("*.tmp*")), "no temporary file is left behind"
    with pytest.raises(ValueError, match='format "xml"' ):
        ls.labels.save(lab, tmp_path / "x", "xml")


def test_bad_files_name_the_file_and_entry(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"a.jpg": [1], "b.jpg": ["zebra-crossing"]}')
    with pytest.raises(ValueError, match=r"bad\.json.*b\.jpg|b\.jpg.*bad\.json"):
        ls.labels.load(p)
    with pytest.raises(ValueError, match='format "nope"' ):
        ls.labels.load(p, "nope")
    with pytest.raises(ValueError):
        ls.labels.load(tmp_path / "missing.json")


def test_compare_and_cooccurrence_against_counting_by_hand():
    a = ls.labels.from_lists([[1], [1, 2], [3], [4, 5], []], list("vwxyz"))
    b = ls.labels.from_lists([[1], [1], [3, 7], [6], [2]], list("vwxyz"))
    c = ls.labels.compare(a, b)
    groups = {g["relation"]: g["count"] for g in c["groups"]}
    # v: equal; w: A has more; x: B has more; z: A empty (B is a superset); y: no class shared.
    assert c["compared"] == 5 and c["disjoint"] == 1
    assert (groups["exact"], groups["a-superset-of-b"], groups["b-superset-of-a"]) == (1, 1, 2)
    assert sum(groups.values()) == 5
    sets = [[1, 2, 3], [1, 2], [2, 3], [5]]
    want = collections.Counter()
    for s in sets:
        for i in range(len(s)):
            for j in range(i + 1, len(s)):
                want[(s[i], s[j])] += 1
    got = ls.labels.cooccurrence(sets, min_count=2)
    pairs = {(r["a"], r["b"]): r["count"] for r in got}
    assert pairs == {k: v for k, v in want.items() if v >= 2}


def test_csr_round_trip_and_checks():
    lab = ls.labels.from_lists([[2, 0], [], [5]])
    idx, off = lab.to_csr()
    assert idx.tolist() == [0, 2, 5] and off.tolist() == [0, 2, 2, 3]
    assert ls.labels.from_csr(idx, off).sets == lab.sets
    with pytest.raises(ValueError, match="offsets"):
        ls.labels.from_csr(idx, np.array([0, 2, 1, 3]))
    with pytest.raises(ValueError, match="class -1"):
        ls.labels.from_lists([[-1]])
