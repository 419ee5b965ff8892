#!/usr/bin/env python3
"""Generates the PyTorch parity fixtures of labelscope-nn's DINOv2 and timm
ViT layouts (needs torch; run once, the outputs are committed, CI does not
need torch):

    /work/venv-torch/bin/python tests/reference/make_vit_family_torch_fixture.py crates/nn/tests/fixtures

writes three folders, each with model.safetensors (the module's state_dict,
official tensor names) and, per input case, `{case}_{name}.npy`:

* vit_dinov2_reg: a tiny DINOv2 (D 24, 2 blocks, 4 heads, patch 4, trained
  grid 4x4) with 4 register tokens, LayerScale (non-trivial gamma), MLP FFN
  and the `*_reg` hub models' position-embedding resampling
  (interpolate_offset=0.0, interpolate_antialias=True);
* vit_dinov2_swiglu: the same without registers, with the fused SwiGLU FFN of
  ViT-g (`mlp.w12`, `mlp.w3`, hidden (int(2*4D/3)+7)//8*8) and the plain
  hub models' resampling (interpolate_offset=0.1, no antialiasing);
* vit_timm_cls: a tiny timm-layout ViT/DeiT classifier (10 classes) with
  `head`, timm's resample_abs_pos_embed (bicubic, size, antialias) for
  other input sizes, and GradCAM on blocks[-1].norm1 with the ViT reshape
  transform (forward hook + autograd) and the input gradient.

The modules follow the structure of facebookresearch/dinov2
(`DinoVisionTransformer.prepare_tokens_with_masks`, `interpolate_pos_encoding`,
`Block`, `LayerScale`, `SwiGLUFFNFused`) and timm's VisionTransformer,
written here from their documented behaviour.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save as save_safetensors  # noqa: E402


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.last_qkv = None

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x)
        self.last_qkv = qkv
        q, k, v = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFNFused(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim, heads, swiglu, layer_scale):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLUFFNFused(dim, 4 * dim) if swiglu else Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """DINOv2 (`family="dinov2"`) or timm classifier (`family="timm"`)."""

    def __init__(self, family, dim, depth, heads, patch, side, registers=0, swiglu=False,
                 interpolate_offset=0.1, interpolate_antialias=False, classes=0):
        super().__init__()
        self.family, self.patch, self.registers = family, patch, registers
        self.interpolate_offset, self.interpolate_antialias = interpolate_offset, interpolate_antialias
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + side * side, dim))
        if registers:
            self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim))
        if family == "dinov2":
            self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, swiglu, family == "dinov2") for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if classes:
            self.head = nn.Linear(dim, classes)

    def interpolate_pos_encoding(self, x, w, h):
        # As DinoVisionTransformer.interpolate_pos_encoding: `w` is dim 2 (rows), `h` dim 3.
        npatch = x.shape[1] - 1
        n = self.pos_embed.shape[1] - 1
        if npatch == n and w == h:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, 0], self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0, h0 = w // self.patch, h // self.patch
        m = int(math.sqrt(n))
        if self.family == "timm":
            # timm resample_abs_pos_embed: size, bicubic, antialias=True.
            kwargs = {"size": (w0, h0)}
            aa = True
        elif self.interpolate_offset:
            kwargs = {"scale_factor": ((w0 + self.interpolate_offset) / m, (h0 + self.interpolate_offset) / m)}
            aa = self.interpolate_antialias
        else:
            kwargs = {"size": (w0, h0)}
            aa = self.interpolate_antialias
        grid = F.interpolate(patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic", antialias=aa, **kwargs)
        assert grid.shape[-2:] == (w0, h0)
        return torch.cat((cls_pos.unsqueeze(0), grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)

    def forward_tokens(self, x):
        _, _, w, h = x.shape
        t = self.patch_embed(x)
        t = torch.cat((self.cls_token.expand(t.shape[0], -1, -1), t), dim=1)
        t = t + self.interpolate_pos_encoding(t, w, h)
        if self.registers:
            t = torch.cat((t[:, :1], self.register_tokens.expand(t.shape[0], -1, -1), t[:, 1:]), dim=1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".gamma"):
                p.copy_(0.3 + 0.7 * torch.rand(p.shape, generator=g))
            elif name in ("cls_token", "pos_embed", "register_tokens", "mask_token"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (0.9 / math.sqrt(fan_in)))


def save_model(model, out):
    os.makedirs(out, exist_ok=True)
    sd = {k: v.detach().numpy().astype("<f4") for k, v in model.state_dict().items()}
    save_safetensors(os.path.join(out, "model.safetensors"), sd)


def backbone_fixture(out, model, cases, seed):
    save_model(model, out)
    g = torch.Generator().manual_seed(seed)
    p = 1 + model.registers
    dim = model.pos_embed.shape[-1]
    for name, (b, hh, ww) in cases.items():
        x = torch.randn(b, 3, hh, ww, generator=g)
        with torch.no_grad():
            tok = model.forward_tokens(x)
            qkv = model.blocks[-1].attn.last_qkv
        res = {
            "input": x,
            "cls": tok[:, 0],
            "registers": tok[:, 1:p],
            "patches": tok[:, p:],
            "queries": qkv[:, p:, :dim],
            "keys": qkv[:, p:, dim : 2 * dim],
            "values": qkv[:, p:, 2 * dim :],
        }
        for k, v in res.items():
            np.save(os.path.join(out, f"{name}_{k}.npy"), v.numpy().astype(np.float32))


def classifier_fixture(out, model, cases, seed):
    save_model(model, out)
    g = torch.Generator().manual_seed(seed)
    for name, (b, hh, ww, classes) in cases.items():
        x = torch.randn(b, 3, hh, ww, generator=g)
        saved = {}

        def hook(_m, _i, o):
            o.retain_grad()
            saved["a"] = o

        handle = model.blocks[-1].norm1.register_forward_hook(hook)
        xg = x.clone().requires_grad_(True)
        tok = model.forward_tokens(xg)
        feats = tok[:, 0]
        logits = model.head(feats)
        score = logits[torch.arange(b), torch.tensor(classes)].sum()
        score.backward()
        handle.remove()
        gh, gw = hh // model.patch, ww // model.patch
        a, gr = saved["a"], saved["a"].grad

        def reshape_transform(t):
            # pytorch-grad-cam's ViT recipe: drop CLS, [B, h, w, C] → [B, C, h, w].
            return t[:, 1:, :].reshape(t.shape[0], gh, gw, t.shape[2]).permute(0, 3, 1, 2)

        a4, g4 = reshape_transform(a.detach()), reshape_transform(gr)
        weights = g4.mean(dim=(2, 3))
        cam = F.relu((weights[:, :, None, None] * a4).sum(1))
        up = F.interpolate(cam[:, None], size=(hh, ww), mode="bilinear", align_corners=False)[:, 0]
        mn = up.flatten(1).min(1).values[:, None, None]
        mx = up.flatten(1).max(1).values[:, None, None]
        res = {
            "input": x,
            "classes": torch.tensor(classes, dtype=torch.float32),
            "logits": logits.detach(),
            "features": feats.detach(),
            "cam_weights": weights,
            "cam": cam,
            "cam_upsampled": (up - mn) / (mx - mn),
            "input_grad": xg.grad,
        }
        for k, v in res.items():
            np.save(os.path.join(out, f"{name}_{k}.npy"), v.detach().numpy().astype(np.float32))


def main():
    root = sys.argv[1]
    torch.manual_seed(0)
    dim, depth, heads, patch, side = 24, 2, 4, 4, 4
    reg = ViT("dinov2", dim, depth, heads, patch, side, registers=4, interpolate_offset=0.0, interpolate_antialias=True)
    randomize(reg, 1)
    # 16x16: the trained 4x4 grid; 24x20: 6x5 (upsampling); 8x12: 2x3 (downsampling, antialiased).
    backbone_fixture(os.path.join(root, "vit_dinov2_reg"), reg, {"square": (1, 16, 16), "interp": (2, 24, 20), "down": (1, 8, 12)}, 11)
    swi = ViT("dinov2", dim, depth, heads, patch, side, swiglu=True, interpolate_offset=0.1, interpolate_antialias=False)
    randomize(swi, 2)
    backbone_fixture(os.path.join(root, "vit_dinov2_swiglu"), swi, {"square": (1, 16, 16), "interp": (1, 24, 20), "down": (1, 12, 8)}, 12)
    cls = ViT("timm", dim, depth, heads, patch, side, classes=10)
    randomize(cls, 3)
    classifier_fixture(os.path.join(root, "vit_timm_cls"), cls, {"square": (2, 16, 16, [3, 7]), "interp": (1, 20, 24, [5])}, 13)
    print(f"torch {torch.__version__}: fixtures written under {root}")


if __name__ == "__main__":
    main()
