#!/usr/bin/env python3
"""Expected ImageNet-ReaL co-occurrence counts for the relabel ambiguity test.

Counts, with plain Python sets (no labelscope code), over ../shared/data/imagenet/real.json
(one list of class indices per validation image; duplicates within a list counted once):
N_a = images holding a, N_ab = images holding both, for a few hand-picked pairs, and
the top candidate ambiguous pairs with N_ab >= MIN_COUNT ranked by
N_ab / min(N_a, N_b) (decreasing), then N_ab (decreasing), then (a, b).

Writes crates/relabel/tests/fixtures/math/real_pairs.json (or the path given as the
first argument).
"""
import itertools
import json
import os
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REAL = os.path.join(ROOT, "..", "shared", "data", "imagenet", "real.json")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "crates", "relabel", "tests", "fixtures", "math",
                                                         "real_pairs.json")
MIN_COUNT = 20
TOP = 15
# notebook/laptop, sunglass/sunglasses, maillot/maillot, monitor/screen, desktop computer/monitor,
# tusker/African elephant, tench/goldfish (rare together)
PAIRS = [(620, 681), (836, 837), (638, 639), (664, 782), (527, 664), (101, 386), (0, 1)]

sets = [sorted(set(s)) for s in json.load(open(REAL))]
freq = Counter(c for s in sets for c in s)
pair = Counter(p for s in sets for p in itertools.combinations(s, 2))


def stats(a, b, n_ab):
    return {"a": a, "b": b, "n_a": freq[a], "n_b": freq[b], "n_ab": n_ab}


cands = [(n / min(freq[a], freq[b]), n, a, b) for (a, b), n in pair.items() if n >= MIN_COUNT]
cands.sort(key=lambda t: (-t[0], -t[1], t[2], t[3]))
out = {
    "images": len(sets),
    "empty": sum(1 for s in sets if not s),
    "min_count": MIN_COUNT,
    "pairs": [stats(a, b, pair[(a, b)]) for a, b in PAIRS],
    "top": [dict(stats(a, b, n), score=s) for s, n, a, b in cands[:TOP]],
    "candidates": len(cands),
}
with open(OUT, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(json.dumps({"written": OUT, "candidates": len(cands)}))
