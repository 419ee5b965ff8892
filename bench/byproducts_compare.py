"""Side-by-side benchmark: `labelscope byproducts analyse` vs a plain Python
script (json / tarfile + xml.etree) computing the click accuracy.

The Python reference (tests/reference/byproducts_ref.py, also used by
the tests) is what a researcher would write against the released files: load
the COCO-AB JSON with json.load, walk the ImageNet-AB tar.gz with tarfile and
parse every member with xml.etree. It computes

* ImageNet-AB: the final click of each image (the click of its last selected
  showing) and whether it is inside a ground-truth box of the image's class,
  the centre-click baseline, and the click accuracy where the centre fails;
* COCO-AB: the last `add` position of each icon class and whether it is
  inside a box of that class (the tests also check masks with pycocotools).

Both sides run as separate processes; wall time and peak RSS come from
os.wait4. The counts of the two sides must agree exactly.

Usage:
  python3 bench/byproducts_compare.py [--bin target/release/labelscope] [--dir /tmp/ab]
      [--imagenet-images 1281167] [--coco-images 118287]
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "..", "tests", "reference", "byproducts_ref.py")
DEFAULT_CLASS_INFO = os.path.join(HERE, "..", "..", "shared", "data", "imagenet", "class_info.json")


def measured(cmd):
    t = time.perf_counter()
    pid = os.posix_spawnp(cmd[0], cmd, dict(os.environ, PYTHONUNBUFFERED="1"),
                          file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/tmp/byproducts_bench.out",
                                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                                        (os.POSIX_SPAWN_OPEN, 2, "/tmp/byproducts_bench.err",
                                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    out = open("/tmp/byproducts_bench.out").read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{open('/tmp/byproducts_bench.err').read()}")
    return wall, ru.ru_maxrss / 1024.0, out


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--class-info", default=DEFAULT_CLASS_INFO)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "labelscope"))
    ap.add_argument("--dir", default="/tmp/byproducts-bench")
    ap.add_argument("--imagenet-images", type=int, default=1281167)
    ap.add_argument("--coco-images", type=int, default=118287)
    ap.add_argument("--threads", default="1,0")
    a = ap.parse_args()

    os.makedirs(a.dir, exist_ok=True)
    inr, inb = os.path.join(a.dir, "imagenet_ab.tar.gz"), os.path.join(a.dir, "boxes.tsv")
    cor, coi = os.path.join(a.dir, "coco_ab.json"), os.path.join(a.dir, "instances.json")
    if not (os.path.exists(inr) and os.path.exists(inb)):
        subprocess.run([a.bin, "byproducts", "synth", "--imagenet-ab", inr, "--boxes", inb,
                        "--images", str(a.imagenet_images), "--classes", "1000", "--workers", "400", "-q"], check=True)
    if not (os.path.exists(cor) and os.path.exists(coi)):
        subprocess.run([a.bin, "byproducts", "synth", "--coco-ab", cor, "--instances", coi,
                        "--images", str(a.coco_images), "--classes", "80", "--workers", "200", "-q"], check=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for p in (inr, cor):
        print(f"{p}: {os.path.getsize(p) / 1e6:.1f} MB")

    rows = []
    ref_in = measured([sys.executable, REFERENCE, "imagenet", inr, inb, a.class_info])
    ref_co = measured([sys.executable, REFERENCE, "coco", cor, coi, "boxes"])
    py_in, py_co = json.loads(ref_in[2]), json.loads(ref_co[2])
    rows.append(("ImageNet-AB", "Python tarfile + xml.etree (click accuracy only)", ref_in[0], ref_in[1], None))
    rows.append(("COCO-AB", "Python json (click accuracy only)", ref_co[0], ref_co[1], None))
    for th in a.threads.split(","):
        out = os.path.join(a.dir, f"out-in-{th}")
        w, rss, _ = measured([a.bin, "byproducts", "analyse", "--imagenet-ab", inr, "--boxes", inb, "-o", out,
                              "--threads", th, "-q", "--no-png"])
        acc = read_csv(os.path.join(out, "imagenet_click_accuracy.csv"))
        final = next(r for r in acc if r[0] == "final click")
        centre = next(r for r in acc if r[0] == "centre click")
        assert (int(final[1]), int(final[2])) == (py_in["scored"], py_in["hits"]), (final, py_in)
        assert int(centre[2]) == py_in["centre_hits"], (centre, py_in)
        rows.append(("ImageNet-AB", f"labelscope analyse (all analyses), --threads {th}", w, rss, ref_in[0] / w))
        out = os.path.join(a.dir, f"out-co-{th}")
        w, rss, _ = measured([a.bin, "byproducts", "analyse", "--coco-ab", cor, "--instances", coi, "-o", out,
                              "--threads", th, "-q", "--no-png"])
        summ = read_csv(os.path.join(out, "coco_summary.csv"))
        boxp = next(r for r in summ if r[0] == "icon precision (boxes)")
        assert int(boxp[1]) == py_co["icons"], (boxp, py_co)
        assert abs(float(boxp[2]) * py_co["icons"] - py_co["box_hits"]) < 0.5, (boxp, py_co)
        rows.append(("COCO-AB", f"labelscope analyse (all analyses), --threads {th}", w, rss, ref_co[0] / w))
    print(f"ImageNet-AB: {py_in['scored']} clicks scored, {py_in['hits']} inside (both sides agree)")
    print(f"COCO-AB: {py_co['icons']} icons, {py_co['box_hits']} inside a box (both sides agree)")
    print()
    print("| release | program | wall (s) | peak RSS (MiB) | speed-up |")
    print("|---|---|---:|---:|---:|")
    for rel, prog, w, rss, sp in rows:
        print(f"| {rel} | {prog} | {w:.2f} | {rss:.0f} | {'' if sp is None else f'{sp:.1f}×'} |")


if __name__ == "__main__":
    main()
