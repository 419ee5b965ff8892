#!/usr/bin/env python3
"""Independent numpy-only reader of a labelscope feature cache (crates/relabel, module `cache`).

Usage: read_feature_cache.py CACHE_DIR EXPECT_JSON OUT_JSON

Reads the cache with numpy (no safetensors package): cache.json, then per shard the
fixed-size safetensors header, the `features` tensor as a read-only memory map, and the
index log. Every record's CRC-32 is checked with zlib.crc32, and every stored value is
compared bit for bit with numpy's float32 -> float16 conversion (round to nearest even)
of the test formula

    x(k, t, c) = (float32((k*131 + t*17 + c*7) % 1000) - 500) * 0.013671875

where k is the image's number from EXPECT_JSON {"images": {id: k}}, t the row within the
record (row 0 is the CLS row when the cache stores one) and c the channel.

Writes OUT_JSON: {"order": [ids in storage order], "grids": {id: [h, w]},
"has_cls": {id: bool}, "checked_values": n, "mismatches": [...], "crc_failures": [...]}.
"""

import json
import sys
import zlib
from pathlib import Path

import numpy as np


def read_feature_cache(folder):
    """Returns (meta, [(id, shard, h, w, crc32, cls_row or None, patches[h, w, dim], raw record bytes)])."""
    folder = Path(folder)
    meta = json.loads((folder / "cache.json").read_text())
    n, cls = meta["shards"], int(meta["cls"])
    out = []
    for i in range(n):
        stem = f"shard-{i:05d}-of-{n:05d}"
        path = folder / f"{stem}.safetensors"
        with open(path, "rb") as f:
            hlen = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(hlen))
        t = header["features"]
        assert t["dtype"] == "F16", t
        rows, dim = t["shape"]
        begin, end = t["data_offsets"]
        assert (begin, end) == (0, rows * dim * 2), t
        if rows == 0:
            continue
        feats = np.memmap(path, dtype="<f2", mode="r", offset=8 + hlen, shape=(rows, dim))
        for line in (folder / f"{stem}.index.jsonl").read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            s, h, w = r["row"], r["h"], r["w"]
            record = feats[s : s + cls + h * w]
            cls_row = record[0] if cls else None
            patches = record[cls:].reshape(h, w, dim)
            out.append((r["id"], i, h, w, r["crc32"], cls_row, patches, record.tobytes()))
    return meta, out


def expected(k, rows, dim, first_row):
    t = np.arange(first_row, first_row + rows, dtype=np.int64)[:, None]
    c = np.arange(dim, dtype=np.int64)[None, :]
    n = (k * 131 + t * 17 + c * 7) % 1000
    x = (n.astype(np.float32) - np.float32(500)) * np.float32(0.013671875)
    assert x.dtype == np.float32
    return x.astype(np.float16)


def main():
    cache_dir, expect_path, out_path = sys.argv[1:4]
    numbers = json.loads(Path(expect_path).read_text(encoding="utf-8"))["images"]
    meta, records = read_feature_cache(cache_dir)
    dim, cls = meta["dim"], bool(meta["cls"])
    result = {"order": [], "grids": {}, "has_cls": {}, "checked_values": 0, "mismatches": [], "crc_failures": []}
    for image_id, shard, h, w, crc, cls_row, patches, raw in records:
        result["order"].append(image_id)
        result["grids"][image_id] = [h, w]
        result["has_cls"][image_id] = cls_row is not None
        if zlib.crc32(raw) != crc:
            result["crc_failures"].append(image_id)
        k = numbers.get(image_id)
        if k is None:
            result["mismatches"].append(f"{image_id}: not an expected image")
            continue
        want = expected(k, h * w, dim, int(cls)).reshape(h, w, dim)
        got = np.asarray(patches)
        bad = np.argwhere(got.view(np.uint16) != want.view(np.uint16))
        if len(bad):
            y, x, c = bad[0]
            result["mismatches"].append(
                f"{image_id}: {len(bad)} values differ, first at ({y}, {x}, {c}): {got[y, x, c]} vs {want[y, x, c]}"
            )
        result["checked_values"] += int(got.size)
        if cls:
            want_cls = expected(k, 1, dim, 0)[0]
            if not np.array_equal(np.asarray(cls_row).view(np.uint16), want_cls.view(np.uint16)):
                result["mismatches"].append(f"{image_id}: CLS row differs")
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
