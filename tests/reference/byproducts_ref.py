"""Independent Python reference for the annotation-byproduct analyses
(labelscope byproducts analyse): what a researcher would write against the
released files with the standard library only (json, tarfile, xml.etree),
plus pycocotools for the COCO masks when it is installed.

* imagenet RELEASE.tar.gz BOXES.tsv CLASS_INFO.json: the final click of each
  image (the click of its last selected showing) against the boxes of the
  image's class (val_boxes.tsv layout, pixels; normalised by the record's
  <size>), the centre click, and clicks where the centre fails.
* coco RELEASE.json INSTANCES.json [boxes]: the last `add` position of each
  icon class against the boxes and (pycocotools, unless `boxes` is given)
  masks of that class.

Prints one JSON object of counts.
"""

import json
import sys
import tarfile
import xml.etree.ElementTree as ET


def stem(name):
    base = name.rsplit("/", 1)[-1]
    if "." in base:
        a, ext = base.rsplit(".", 1)
        if ext and len(ext) <= 5:
            return a
    return base


def imagenet(release, boxes_tsv, class_info):
    wnids = [c["wnid"] for c in json.load(open(class_info))]
    boxes = {}
    with open(boxes_tsv) as f:
        for line in f:
            if not line.strip():
                continue
            name, cls, x0, y0, x1, y1 = line.rstrip("\n").split("\t")
            boxes.setdefault(stem(name), []).append((wnids[int(cls)], float(x0), float(y0), float(x1), float(y1)))
    records = with_click = scored = hits = centre = fails = fail_hits = 0
    with tarfile.open(release, "r:*") as tar:
        for m in tar:
            if not m.isfile() or not m.name.endswith(".xml"):
                continue
            root = ET.fromstring(tar.extractfile(m).read())
            records += 1
            fn = root.findtext("filename") or stem(m.name)
            key = stem(fn)
            wnid = key.split("_")[0]
            size = root.find("size")
            click = None
            for md in root.findall("metadata"):
                if md.findtext("selected", "").strip().lower() == "true":
                    r = md.find("selectedRecord")
                    if r is not None and r.findtext("x") is not None:
                        click = (float(r.findtext("x")), float(r.findtext("y")))
            if click is None:
                continue
            with_click += 1
            if size is None or key not in boxes:
                continue
            w, h = float(size.findtext("width")), float(size.findtext("height"))
            bs = [(b[1] / w, b[2] / h, b[3] / w, b[4] / h) for b in boxes[key] if b[0] == wnid]
            if not bs:
                continue
            scored += 1
            inside = any(b[0] <= click[0] <= b[2] and b[1] <= click[1] <= b[3] for b in bs)
            c_in = any(b[0] <= 0.5 <= b[2] and b[1] <= 0.5 <= b[3] for b in bs)
            hits += inside
            centre += c_in
            if not c_in:
                fails += 1
                fail_hits += inside
    return {"records": records, "with_click": with_click, "scored": scored, "hits": hits,
            "centre_hits": centre, "centre_fails": fails, "hits_where_centre_fails": fail_hits}


def coco(release, instances, masks=True):
    recs = json.load(open(release))
    gt = json.load(open(instances))
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    objs = {}
    for a in gt["annotations"]:
        if a.get("iscrowd", 0):
            continue
        objs.setdefault(a["image_id"], []).append(a)
    mask_utils = None
    if masks:
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            pass
    icons = box_hits = mask_hits = 0
    for r in recs:
        last = {}
        for a in r.get("actionHistories", []):
            if a["actionType"] == "add" and a.get("pointTo") is not None:
                if a["iconType"] in last:
                    del last[a["iconType"]]
                last[a["iconType"]] = (a["pointTo"]["x"], a["pointTo"]["y"])
        if r["image_id"] not in sizes:
            continue
        w, h = sizes[r["image_id"]]
        for cls, (x, y) in last.items():
            icons += 1
            mine = [a for a in objs.get(r["image_id"], []) if names[a["category_id"]] == cls]
            box_hits += any(a["bbox"][0] / w <= x <= (a["bbox"][0] + a["bbox"][2]) / w and
                            a["bbox"][1] / h <= y <= (a["bbox"][1] + a["bbox"][3]) / h for a in mine)
            if mask_utils is not None:
                px, py = min(int(x * w), w - 1), min(int(y * h), h - 1)
                on = False
                for a in mine:
                    seg = a["segmentation"]
                    if isinstance(seg, list):
                        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                    elif isinstance(seg["counts"], list):
                        rle = mask_utils.frPyObjects(seg, h, w)
                    else:
                        rle = seg
                    if mask_utils.decode(rle)[py, px]:
                        on = True
                        break
                mask_hits += on
    out = {"records": len(recs), "icons": icons, "box_hits": box_hits}
    if mask_utils is not None:
        out["mask_hits"] = mask_hits
    return out



if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "imagenet":
        print(json.dumps(imagenet(sys.argv[2], sys.argv[3], sys.argv[4])))
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "coco":
        # A fifth argument "boxes" skips the (slow) pycocotools mask check.
        print(json.dumps(coco(sys.argv[2], sys.argv[3], masks=len(sys.argv) == 4)))
    else:
        sys.exit(__doc__)
