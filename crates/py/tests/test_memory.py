"""Large inputs are read in place: mAP over a 200 MB float32 [50000, 1000] array adds far less
than its size to the peak memory, while a float64 input (which must be converted) adds its f32
copy, which shows that the measurement can see a copy."""
import json
import subprocess
import sys

SCRIPT = r"""
import json, resource, sys
import numpy as np
import labelscope as ls
n, c = 50000, 1000
dtype = sys.argv[1]
scores = np.empty((n, c), dtype=dtype)
rng = np.random.default_rng(0)
for s in range(0, n, 5000):
    scores[s:s + 5000] = rng.random((5000, c), dtype=np.float32)
labels = ls.labels.from_lists([[i % c, (7 * i) % c] for i in range(n)])
def peak():
    # VmHWM belongs to this process's own address space. ru_maxrss would not do: Linux carries
    # the RSS of the forked parent (pytest, holding large arrays of other tests) across exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = peak()
m = ls.eval.mean_average_precision(scores, labels)
t = ls.eval.topk_accuracy(scores, labels, 5)
print(json.dumps({"grow": peak() - before, "size": scores.nbytes, "map": m.value, "top5": t.value}))
"""


def run(dtype):
    out = subprocess.run([sys.executable, "-c", SCRIPT, dtype], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_200mb_float32_array_is_not_copied():
    f32 = run("float32")
    assert f32["size"] == 200_000_000
    assert f32["grow"] < 40_000_000, f32  # a copy would add 200 MB
    f64 = run("float64")
    assert f64["grow"] > 150_000_000, f64  # the f32 conversion of a 400 MB f64 array: 200 MB
    assert abs(f32["map"] - f64["map"]) < 1e-12
