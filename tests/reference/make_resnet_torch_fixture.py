#!/usr/bin/env python3
"""Generates the PyTorch ResNet parity fixture of labelscope-nn (needs torch and
torchvision; run once, the outputs are committed, CI does not need torch):

    /work/venv-torch/bin/python tests/reference/make_resnet_torch_fixture.py crates/nn/tests/fixtures/resnet_torch

A tiny Bottleneck ResNet in the torchvision layout: torchvision's own
`Bottleneck` blocks and `ResNet._forward_impl`, with small widths (stem 8,
bottleneck widths 4, 8, 8, 16, blocks 2, 1, 2, 1, 10 classes) and seeded
random weights; BatchNorm weights, biases and running statistics are
randomised so that BN matters, the model is in eval mode and runs in float64.
Written: model.safetensors (torchvision names, float32, including
num_batches_tracked as the real checkpoints do), and as .npy (float32):
input [2, 3, 64, 80], logits, features (pooled penultimate layer), layer4
(the layer4 output), cam_raw (GradCAM for classes.npy: weights = mean over
h, w of d score / d layer4, ReLU of the weighted channel sum), cam_up (cam_raw
upsampled with F.interpolate bilinear align_corners=False to 64 x 80, then
min-max scaled per image) and input_grad (d score / d input), with
score = sum_b logits[b, classes[b]].
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import Bottleneck, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save as save_safetensors  # noqa: E402

STEM, WIDTHS, BLOCKS, CLASSES = 8, (4, 8, 8, 16), (2, 1, 2, 1), 10


class TinyResNet(nn.Module):
    """torchvision's ResNet module tree with small widths."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = STEM
        for i, (w, n) in enumerate(zip(WIDTHS, BLOCKS)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if j == 0 and (s != 1 or inplanes != w * Bottleneck.expansion):
                    down = nn.Sequential(
                        nn.Conv2d(inplanes, w * 4, kernel_size=1, stride=s, bias=False), nn.BatchNorm2d(w * 4)
                    )
                blocks.append(Bottleneck(inplanes, w, s, down))
                inplanes = w * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, CLASSES)

    def forward(self, x):
        return ResNet._forward_impl(self, x)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = TinyResNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(c))
                m.bias.copy_(0.1 * torch.randn(c))
                m.running_mean.copy_(0.2 * torch.randn(c))
                m.running_var.copy_(1.0 + 2.0 * torch.rand(c))
                m.num_batches_tracked.fill_(7)
        model.fc.weight.mul_(3.0)
    model.eval()
    sd = model.state_dict()
    tensors = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            tensors[k] = ("I64", v.numpy().astype("<i8"))
        else:
            tensors[k] = v.numpy().astype("<f4")
    save_safetensors(os.path.join(out, "model.safetensors"), tensors)
    n_params = sum(p.numel() for p in model.parameters())

    # Reference computation in float64 from the float32 weights as saved.
    model = model.double()
    x = torch.randn(2, 3, 64, 80).float().double()
    classes = [1, 9]
    feats = {}
    model.layer4.register_forward_hook(lambda _m, _i, o: feats.__setitem__("layer4", o))
    model.avgpool.register_forward_hook(lambda _m, _i, o: feats.__setitem__("pool", o))
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    a = feats["layer4"]
    a.retain_grad()
    score = logits[torch.arange(2), torch.tensor(classes)].sum()
    score.backward()
    g = a.grad
    weights = g.mean(dim=(2, 3))
    cam = F.relu((weights[:, :, None, None] * a).sum(1))
    up = F.interpolate(cam[:, None], size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    flat = up.reshape(2, -1)
    mn, mx = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    up = ((flat - mn) / (mx - mn)).reshape(up.shape)

    def npy(name, t):
        np.save(os.path.join(out, f"{name}.npy"), t.detach().numpy().astype("<f4"))

    npy("input", x)
    npy("logits", logits)
    npy("features", feats["pool"].flatten(1))
    npy("layer4", a)
    npy("cam_raw", cam)
    npy("cam_up", up)
    npy("input_grad", xg.grad)
    np.save(os.path.join(out, "classes.npy"), np.array(classes, dtype="<i8"))
    print(f"parameters {n_params}; logits {logits.detach().numpy().round(3).tolist()}")
    print(f"cam_raw {cam.detach().numpy().round(4).tolist()}")


if __name__ == "__main__":
    main()
