"""Pillow + numpy reference for labelscope-vision's decoding and preprocessing.

Usage:
  preprocess_ref.py gen OUTDIR          write generated test images (Pillow) to OUTDIR
  preprocess_ref.py ref OUTDIR IMG...   decode and preprocess IMG... with Pillow; write
                                        raw little-endian outputs and OUTDIR/manifest.json

The reference pipeline is the one of torchvision on PIL images, written out with
Pillow and numpy only (torchvision is not needed):
  decode    Image.open(p); ImageOps.exif_transpose; .convert("RGB")
  resize    torchvision Resize(int): shorter side -> S, longer int(S * long / short)
  crop      torchvision CenterCrop: top = int(round((h - ch) / 2.0)), zero padding if larger
  tensor    ToTensor + Normalize: (float32(v) / 255 - mean) / std, float32, CHW
For every image the manifest lists the decoded RGB pixels and, for each recipe and
interpolation, the u8 RGB result of the geometry (computed from Pillow's decoded
image) and, for each recipe's default interpolation, the normalised f32 tensor.
"""

import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
# (recipe, default interpolation)
RECIPES = [
    ("resize256-crop224", "bilinear"),
    ("square256-crop224", "bilinear"),
    ("fixed480", "lanczos"),
    ("fixed896", "lanczos"),
]
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load(path):
    im = Image.open(path)
    im = ImageOps.exif_transpose(im)
    return im.convert("RGB")


def resize_shorter(im, size, resample):
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return im.resize((new_w, new_h), resample)


def center_crop(arr, ch, cw):
    """torchvision.transforms.functional.center_crop on an HxWx3 uint8 array."""
    h, w = arr.shape[:2]
    if cw > w or ch > h:
        pl = (cw - w) // 2 if cw > w else 0
        pt = (ch - h) // 2 if ch > h else 0
        pr = (cw - w + 1) // 2 if cw > w else 0
        pb = (ch - h + 1) // 2 if ch > h else 0
        arr = np.pad(arr, ((pt, pb), (pl, pr), (0, 0)))
        h, w = arr.shape[:2]
        if (h, w) == (ch, cw):
            return arr
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return arr[top:top + ch, left:left + cw]


def geometry(im, recipe, resample):
    if recipe.startswith("resize"):
        s, c = recipe[len("resize"):].split("-crop")
        return center_crop(np.asarray(resize_shorter(im, int(s), resample)), int(c), int(c))
    if recipe.startswith("square"):
        s, c = recipe[len("square"):].split("-crop")
        return center_crop(np.asarray(im.resize((int(s), int(s)), resample)), int(c), int(c))
    n = int(recipe[len("fixed"):])
    return np.asarray(im.resize((n, n), resample))


def to_tensor(arr):
    x = arr.astype(np.float32) / np.float32(255)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype="<f4")


def write(outdir, name, arr):
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(np.ascontiguousarray(arr).tobytes())
    return name


def ref(outdir, images):
    manifest = []
    for k, path in enumerate(images):
        im = load(path)
        dec = np.asarray(im)
        entry = {
            "file": path,
            "width": im.size[0],
            "height": im.size[1],
            "decoded": write(outdir, f"{k}_decoded.u8", dec),
            "outputs": [],
            "normalized": [],
        }
        for recipe, default in RECIPES:
            for fname, resample in FILTERS.items():
                g = geometry(im, recipe, resample)
                entry["outputs"].append({
                    "recipe": recipe, "filter": fname, "width": g.shape[1], "height": g.shape[0],
                    "path": write(outdir, f"{k}_{recipe}_{fname}.u8", g),
                })
                if fname == default:
                    entry["normalized"].append({
                        "recipe": recipe, "filter": fname,
                        "path": write(outdir, f"{k}_{recipe}_{fname}.f32", to_tensor(g)),
                    })
        manifest.append(entry)
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f)


# ---------------------------------------------------------------- generated images

def content(w, h, seed=0):
    """Deterministic test content: gradients, a sharp-edged disc and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin(x / 3.0) * np.cos(y / 5.0)
    disc = (x - w * 0.4) ** 2 + (y - h * 0.6) ** 2 < (min(w, h) * 0.25) ** 2
    rgb = np.stack([r, g, b], axis=-1)
    rgb[disc] = 255 - rgb[disc]
    rgb += rng.normal(0, 12, rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png16(arr, color_type):
    """Minimal 16-bit PNG writer (Pillow cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def gen(outdir):
    os.makedirs(outdir, exist_ok=True)
    rgb = Image.fromarray(content(301, 217))
    rgb.save(os.path.join(outdir, "rgb_q90.jpg"), quality=90)
    rgb.save(os.path.join(outdir, "rgb_444.jpg"), quality=95, subsampling=0)
    rgb.save(os.path.join(outdir, "progressive.jpg"), quality=85, progressive=True)
    rgb.convert("L").save(os.path.join(outdir, "grey.jpg"), quality=90)
    rgb.convert("CMYK").save(os.path.join(outdir, "cmyk.jpg"), quality=90)
    small = Image.fromarray(content(37, 23, seed=1))
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        small.save(os.path.join(outdir, f"exif_{o}.jpg"), quality=95, exif=exif.tobytes())
    rgb.save(os.path.join(outdir, "rgb.png"))
    a = content(129, 77, seed=2)
    alpha = np.linspace(0, 255, 129 * 77).reshape(77, 129, 1).astype(np.uint8)
    Image.fromarray(np.concatenate([a, alpha], axis=-1), "RGBA").save(os.path.join(outdir, "rgba.png"))
    Image.fromarray(a).convert("LA").save(os.path.join(outdir, "grey_alpha.png"))
    Image.fromarray(a).convert("L").save(os.path.join(outdir, "grey.png"))
    Image.fromarray(a).quantize(64).save(os.path.join(outdir, "palette.png"))
    p = Image.fromarray(a).quantize(16)
    p.info["transparency"] = 3
    p.save(os.path.join(outdir, "palette_trns.png"), transparency=3)
    rng = np.random.default_rng(3)
    with open(os.path.join(outdir, "rgb16.png"), "wb") as f:
        f.write(png16(rng.integers(0, 65536, (45, 61, 3)), 2))
    with open(os.path.join(outdir, "grey16.png"), "wb") as f:
        # mostly small values: Pillow clips 16-bit grey to 255 on conversion to RGB
        f.write(png16(rng.integers(0, 400, (33, 50)), 0))
    with open(os.path.join(outdir, "rgba16.png"), "wb") as f:
        f.write(png16(rng.integers(0, 65536, (20, 31, 4)), 6))
    rgb.save(os.path.join(outdir, "lossless.webp"), lossless=True)
    Image.fromarray(content(1, 1, seed=4)).save(os.path.join(outdir, "one.png"))
    Image.fromarray(content(1, 1, seed=5)).save(os.path.join(outdir, "one.jpg"), quality=95)
    Image.fromarray(content(257, 13, seed=6)).save(os.path.join(outdir, "wide_odd.png"))
    Image.fromarray(content(3, 1001, seed=7)).save(os.path.join(outdir, "tall_odd.jpg"), quality=90)
    Image.fromarray(content(225, 224, seed=8)).save(os.path.join(outdir, "near_crop.png"))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("gen", "ref"):
        sys.exit(__doc__)
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        ref(sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
