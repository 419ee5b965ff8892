#!/usr/bin/env python3
"""Generates the end-to-end fixture of `labelscope classify` / `labelscope gradcam`
(needs torch, torchvision and Pillow; run once, the outputs are committed, CI
does not need torch):

    /work/venv-torch/bin/python tests/reference/make_classify_fixture.py crates/cli/tests/fixtures/classify

The peer pipeline is the one PyTorch users run: Pillow decoding
(`Image.open(f).convert("RGB")`), torchvision `Resize(72)` (bilinear, the
shorter side), `CenterCrop(64)`, `ToTensor`, `Normalize(ImageNet mean/std)`,
then a tiny torchvision-layout ResNet (the module tree of
`make_resnet_torch_fixture.py` with stem 4, bottleneck widths 4/8/16/32, one
block per layer, 10 classes; seeded random weights and BatchNorm statistics),
saved with `torch.save(state_dict)` as `model.pth` so that the test runs it
through `labelscope weights convert` first; float64 reference. Images are generated with Pillow (smooth
colour fields with shapes, five sizes and modes: RGB, grey, RGBA, palette
PNGs and a JPEG) and written into `images/`. Expected outputs (.npy, float32):
`logits` [N, 10] in file-name order, `cam` [N, 64, 64] (GradCAM of each
image's top-1 class at layer4, upsampled bilinearly with
align_corners=False and min-max scaled per image).
"""
import os
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_resnet_torch_fixture as tiny  # noqa: E402

# A ResNet the registry's config can describe: stem = width, widths = width * (1, 2, 4, 8).
tiny.STEM, tiny.WIDTHS, tiny.BLOCKS, tiny.CLASSES = 4, (4, 8, 16, 32), (1, 1, 1, 1), 10


def make_images(d, rng):
    os.makedirs(d, exist_ok=True)
    specs = [("a_rgb.png", (97, 75), "RGB"), ("b_grey.png", (64, 64), "L"), ("c_rgba.png", (120, 90), "RGBA"),
             ("d_palette.png", (80, 101), "P"), ("e_photo.jpg", (110, 70), "RGB")]
    for name, (w, h), mode in specs:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(xx / rng.uniform(5, 15) + rng.uniform(0, 6)) * 100 + 128,
                         np.cos(yy / rng.uniform(5, 15)) * 90 + 128,
                         (xx + yy) * 255.0 / (w + h)], -1)
        img = Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
            draw.ellipse([x0, y0, x0 + rng.integers(8, 40), y0 + rng.integers(8, 40)],
                         fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        if mode == "L":
            img = img.convert("L")
        elif mode == "RGBA":
            img = img.convert("RGBA")
            a = np.array(img)
            a[..., 3] = rng.integers(0, 256, (h, w))
            img = Image.fromarray(a, "RGBA")
        elif mode == "P":
            img = img.convert("P", palette=Image.ADAPTIVE, colors=64)
        if name.endswith(".jpg"):
            img.save(os.path.join(d, name), quality=90)
        else:
            img.save(os.path.join(d, name))
    return sorted(s[0] for s in specs)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(5)
    names = make_images(os.path.join(out, "images"), rng)
    torch.manual_seed(3)
    model = tiny.TinyResNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(c))
                m.bias.copy_(0.1 * torch.randn(c))
                m.running_mean.copy_(0.2 * torch.randn(c))
                m.running_var.copy_(1.0 + 2.0 * torch.rand(c))
        model.fc.weight.mul_(3.0)
    model.eval()
    torch.save(model.state_dict(), os.path.join(out, "model.pth"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"labelscope_arch": "resnet50", "layers": [1, 1, 1, 1], "num_classes": 10, "width": 4}, f)
    model = model.double()
    tf = transforms.Compose([transforms.Resize(72), transforms.CenterCrop(64), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = torch.stack([tf(Image.open(os.path.join(out, "images", n)).convert("RGB")) for n in names]).double()
    feats = {}
    model.layer4.register_forward_hook(lambda _m, _i, o: feats.__setitem__("layer4", o))
    logits = model(x)
    top1 = logits.argmax(1)
    a = feats["layer4"]
    a.retain_grad()
    logits[torch.arange(len(names)), top1].sum().backward()
    w = a.grad.mean(dim=(2, 3))
    cam = F.relu((w[:, :, None, None] * a).sum(1))
    up = F.interpolate(cam[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    flat = up.reshape(len(names), -1)
    mn, mx = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    up = ((flat - mn) / (mx - mn)).reshape(up.shape)
    np.save(os.path.join(out, "logits.npy"), logits.detach().numpy().astype("<f4"))
    np.save(os.path.join(out, "cam.npy"), up.detach().numpy().astype("<f4"))
    with open(os.path.join(out, "names.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    print("wrote", out, names, "top1", top1.tolist())


if __name__ == "__main__":
    main()
