#!/usr/bin/env python3
"""Generates the checkpoint fixtures of labelscope-weights with real PyTorch
(run once; the outputs are committed and CI does not need torch):

    /work/venv-torch/bin/python tests/reference/make_pth.py crates/weights/tests/fixtures

Needs torch, torchvision and timm (pretrained=False: no weights are
downloaded; big models are built on the "meta" device, which allocates
nothing). Every checkpoint is written by `torch.save` itself; every expected
tensor by `safetensors.torch.save_file` (an independent writer).

Outputs:
  tiny_dino_teacher.pth          a DINO training checkpoint of a tiny ViT (D 8, 2 blocks, patch 4,
                                 image 16): {"student", "teacher": {"module.backbone.*", "module.head.*"},
                                 "optimizer": a real SGD state dict, "epoch", "args": argparse.Namespace,
                                 "dino_loss": {"center"}}; cls_token float16, attn.proj.weight a
                                 transposed view, pos_embed a view at an offset of a larger storage,
                                 qkv weight and bias views of one shared storage, norm.* nn.Parameters
  tiny_dino_teacher_legacy.pth   the same with _use_new_zipfile_serialization=False
  tiny_dino_expected.safetensors the teacher backbone after the DINO key mapping, contiguous
  tiny_dino_expected_{f16,bf16}.safetensors  the same converted by torch's .half() / .bfloat16()
  tiny_dtypes.pth                {name: tensor} in f32/f16/bf16/f64/i64/i32/i16/i8/u8/bool, with a
                                 transposed f16 view, a channels_last conv weight, a stride-0
                                 expanded tensor, a 0-d scalar, an empty tensor, an f64 view at an
                                 offset, and an nn.Parameter
  tiny_dtypes_legacy.pth         the same, legacy format
  tiny_dtypes_bigendian.pth      tiny_dtypes.pth as a big-endian machine writes it (byteorder "big",
                                 storages byte-swapped; made by rewriting the zip)
  tiny_dtypes_expected.safetensors
  tiny_deit.pth                  {"model": a tiny timm VisionTransformer state dict (with head), "epoch"}
  tiny_deit_expected.safetensors
  evil.pth                       torch.save of an object whose __reduce__ is os.system (must be refused)
  <model>_expanded.pth           real-shaped checkpoints of registry models whose tensors are all
                                 stride-0 views of one small storage (tensor k of the list has every
                                 element equal to k + 0.5), so that a 100 MB model is a few KB:
                                 resnet50 (torchvision resnet50().state_dict(), num_batches_tracked
                                 kept), dino_vits16 (a DINO training checkpoint with a DINO head),
                                 deit_small_patch16_224 ({"model": ...}), dinov2_vits14_reg (flat)
  dino_vits16_missing.pth / _badshape.pth / _intdtype.pth
                                 flat dino_vits16 checkpoints without blocks.11.mlp.fc2.bias / with
                                 blocks.5.attn.qkv.weight of shape [1152, 383] / with norm.bias int64
  expanded.json                  {fixture: {name after mapping: value}} for the expanded files
  layouts.json                   {"models": {registry name: {"layout": key, "parameters": n}},
                                 "layouts": {key: [[name, shape, is_buffer], ...]}} (identical layouts
                                 stored once) from the reference implementations (torchvision
                                 resnet50; timm deit/vit; timm vit_*_patch16_224 without head for
                                 DINO; timm vit_*_patch14_dinov2 for DINOv2, renamed to the official
                                 dinov2 names, see dinov2_layout)
"""
import argparse
import collections
import io
import json
import os
import sys
import zipfile

import torch
import timm
import torchvision
from safetensors.torch import save_file


def tiny_vit(g, d=8, depth=2, patch=4, img=16, head=0):
    n = (img // patch) ** 2
    t = collections.OrderedDict()
    t["cls_token"] = torch.randn(1, 1, d, generator=g)
    t["pos_embed"] = torch.randn(1, 1 + n, d, generator=g)
    t["patch_embed.proj.weight"] = torch.randn(d, 3, patch, patch, generator=g)
    t["patch_embed.proj.bias"] = torch.randn(d, generator=g)
    for i in range(depth):
        b = f"blocks.{i}."
        for k, s in [("norm1.weight", (d,)), ("norm1.bias", (d,)), ("attn.qkv.weight", (3 * d, d)),
                     ("attn.qkv.bias", (3 * d,)), ("attn.proj.weight", (d, d)), ("attn.proj.bias", (d,)),
                     ("norm2.weight", (d,)), ("norm2.bias", (d,)), ("mlp.fc1.weight", (4 * d, d)),
                     ("mlp.fc1.bias", (4 * d,)), ("mlp.fc2.weight", (d, 4 * d)), ("mlp.fc2.bias", (d,))]:
            t[b + k] = torch.randn(*s, generator=g)
    t["norm.weight"] = torch.randn(d, generator=g)
    t["norm.bias"] = torch.randn(d, generator=g)
    if head:
        t["head.weight"] = torch.randn(head, d, generator=g)
        t["head.bias"] = torch.randn(head, generator=g)
    return t


def tiny_dino(out):
    g = torch.Generator().manual_seed(1)
    ref = tiny_vit(g)
    d = 8
    stored = collections.OrderedDict()
    for k, v in ref.items():
        if k == "cls_token":
            v = v.half()
            ref[k] = v
            s = v
        elif k == "blocks.0.attn.proj.weight":
            s = v.t().contiguous().t()  # same values, strides (1, 8)
            assert not s.is_contiguous()
        elif k == "pos_embed":
            big = torch.randn(v.numel() + 37, generator=g)
            big[37:] = v.reshape(-1)
            s = big[37:].view(v.shape)
            assert s.storage_offset() == 37
        elif k == "blocks.1.attn.qkv.weight":
            flat = torch.cat([v.reshape(-1), ref["blocks.1.attn.qkv.bias"]])
            s = flat[: v.numel()].view(v.shape)
            stored["module.backbone.blocks.1.attn.qkv.bias"] = flat[v.numel():]
        elif k == "blocks.1.attn.qkv.bias":
            continue
        elif k.startswith("norm."):
            s = torch.nn.Parameter(v.clone())
        else:
            s = v
        stored["module.backbone." + k] = s
    stored["module.head.mlp.0.weight"] = torch.randn(8, d, generator=g)
    stored["module.head.last_layer.weight_g"] = torch.ones(1, 8)
    student = collections.OrderedDict([("module.backbone.cls_token", torch.zeros(1, 1, d))])
    w = torch.nn.Parameter(torch.randn(4, 4, generator=g))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.sum().backward()
    opt.step()
    ckpt = {"student": student, "teacher": stored, "optimizer": opt.state_dict(), "epoch": 7,
            "args": argparse.Namespace(arch="vit_tiny", patch_size=4, out_dim=8, lr=0.0005),
            "dino_loss": {"center": torch.zeros(1, 8)}}
    torch.save(ckpt, os.path.join(out, "tiny_dino_teacher.pth"))
    torch.save(ckpt, os.path.join(out, "tiny_dino_teacher_legacy.pth"), _use_new_zipfile_serialization=False)
    expected = {k: v.contiguous().clone() for k, v in ref.items()}
    save_file(expected, os.path.join(out, "tiny_dino_expected.safetensors"))
    save_file({k: v.half() for k, v in expected.items()}, os.path.join(out, "tiny_dino_expected_f16.safetensors"))
    save_file({k: v.bfloat16() for k, v in expected.items()}, os.path.join(out, "tiny_dino_expected_bf16.safetensors"))
    back = torch.load(os.path.join(out, "tiny_dino_teacher.pth"), weights_only=False)["teacher"]
    for k, v in expected.items():
        assert torch.equal(back["module.backbone." + k], v), k


def tiny_dtypes(out):
    g = torch.Generator().manual_seed(2)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 5, generator=g)
    sd["f16"] = torch.randn(7, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["f64"] = torch.randn(4, generator=g).double()
    sd["i64"] = torch.tensor([1, -2, 3, 2 ** 40], dtype=torch.int64)
    sd["i32"] = torch.tensor([[7, -8]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-5, 6, 7], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["f16_transposed"] = torch.randn(4, 6, generator=g).half().t()
    sd["conv_channels_last"] = torch.randn(5, 3, 2, 2, generator=g).to(memory_format=torch.channels_last)
    assert not sd["conv_channels_last"].is_contiguous()
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    base = torch.randn(20, generator=g).double()
    sd["f64_offset_view"] = base[5:17].view(3, 4)[:, 1:3]
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["bf16_sliced"] = torch.randn(6, 6, generator=g).bfloat16()[1:5:2, ::3]
    torch.save(sd, os.path.join(out, "tiny_dtypes.pth"))
    torch.save(sd, os.path.join(out, "tiny_dtypes_legacy.pth"), _use_new_zipfile_serialization=False)
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()},
              os.path.join(out, "tiny_dtypes_expected.safetensors"))
    big_endian(os.path.join(out, "tiny_dtypes.pth"), os.path.join(out, "tiny_dtypes_bigendian.pth"), sd)


def big_endian(src, dst, sd):
    """Rewrites a torch.save zip as a big-endian machine writes it: byteorder "big" and
    every storage byte-swapped per element. torch exposes no storage keys, so each
    data/<key> member is matched to its tensor by its bytes (all distinct here)."""
    with zipfile.ZipFile(src) as z:
        names = z.namelist()
        data = {n: z.read(n) for n in names}
    size = {}
    for t in sd.values():
        raw = bytes(t.detach().untyped_storage())
        hits = [n for n, b in data.items() if "/data/" in n and b == raw]
        assert len(hits) == 1 or len(raw) == 0, (hits, t.dtype)
        for n in hits:
            size[n] = t.element_size()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for n in names:
            b = data[n]
            if n.endswith("/byteorder"):
                b = b"big"
            elif "/data/" in n and not n.endswith("serialization_id"):
                s = size[n]
                b = b"".join(b[i:i + s][::-1] for i in range(0, len(b), s))
            z.writestr(n, b)


def tiny_deit(out):
    g = torch.Generator().manual_seed(3)
    sd = tiny_vit(g, head=5)
    torch.save({"model": sd, "epoch": 299}, os.path.join(out, "tiny_deit.pth"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "tiny_deit_expected.safetensors"))
    m = timm.models.vision_transformer.VisionTransformer(img_size=16, patch_size=4, embed_dim=8, depth=2,
                                                         num_heads=2, num_classes=5)
    ref = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert ref == {k: tuple(v.shape) for k, v in sd.items()}, "the tiny DeiT is timm's layout"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch labelscope_pwned_marker",))


def timm_layout(name, **kw):
    with torch.device("meta"):
        m = timm.create_model(name, pretrained=False, **kw)
    buffers = {k for k, _ in m.named_buffers()}
    tensors = [[k, list(v.shape), k in buffers] for k, v in m.state_dict().items()]
    return tensors, sum(p.numel() for p in m.parameters())


def dinov2_layout(name, registers):
    """timm's DINOv2 layout renamed to the official facebookresearch/dinov2 one: timm's
    checkpoint filter drops mask_token [1, D] (official: a parameter), renames
    register_tokens to reg_token, and maps the fused SwiGLU mlp.w12 / mlp.w3 of ViT-g to
    mlp.fc1 / mlp.fc2 (same shapes); timm's register models also drop the cls row of
    pos_embed, which the official model keeps (registers are added after the position
    embedding), so the layout of the model without registers is used plus register_tokens."""
    tensors, params = timm_layout(name)
    d = tensors[0][1][2]
    swiglu = "giant" in name
    out = []
    for k, s, b in tensors:
        if swiglu:
            k = k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")
        out.append([k, s, b])
        if k == "pos_embed":
            if registers:
                out.append(["register_tokens", [1, registers, d], False])
            out.append(["mask_token", [1, d], False])
    params += d + registers * d
    return out, params


def layouts():
    res = {}
    m = torchvision.models.resnet50()
    buffers = {k for k, _ in m.named_buffers()}
    t = [[k, list(v.shape), k in buffers] for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")]
    res["resnet50"] = res["resnet50_v2"] = {"tensors": t, "parameters": sum(p.numel() for p in m.parameters())}
    for reg, tn in [("deit_small_patch16_224", "deit_small_patch16_224"), ("deit_base_patch16_224", "deit_base_patch16_224"),
                    ("vit_small_patch16_224", "vit_small_patch16_224"), ("vit_base_patch16_224", "vit_base_patch16_224")]:
        t, p = timm_layout(tn)
        res[reg] = {"tensors": t, "parameters": p}
    for reg, tn, patch in [("dino_vits16", "vit_small_patch16_224", 16), ("dino_vits8", "vit_small_patch8_224", 8),
                           ("dino_vitb16", "vit_base_patch16_224", 16), ("dino_vitb8", "vit_base_patch8_224", 8)]:
        t, p = timm_layout(tn, num_classes=0)
        res[reg] = {"tensors": t, "parameters": p}
    for size, tn in [("s", "vit_small_patch14_dinov2"), ("b", "vit_base_patch14_dinov2"),
                     ("l", "vit_large_patch14_dinov2"), ("g", "vit_giant_patch14_dinov2")]:
        for registers in (0, 4):
            t, p = dinov2_layout(tn, registers)
            res[f"dinov2_vit{size}14" + ("_reg" if registers else "")] = {"tensors": t, "parameters": p}
    return res


def expanded(layout, extra=()):
    """{name: stride-0 view}, tensor k of the list filled with k + 0.5, all views of one storage."""
    names = [k for k, _, _ in layout] + [k for k, _ in extra]
    shapes = [s for _, s, _ in layout] + [s for _, s in extra]
    base = torch.arange(len(names), dtype=torch.float32) + 0.5
    sd = collections.OrderedDict()
    for k, (n, s) in enumerate(zip(names, shapes)):
        sd[n] = base[k:k + 1].view([1] * len(s)).expand(s) if s else base[k]
    values = {n: k + 0.5 for k, n in enumerate(names)}
    return sd, values


def expanded_fixtures(out, lay):
    values = {}
    # ResNet-50: torchvision's own state dict names, with the int64 num_batches_tracked kept.
    m = torchvision.models.resnet50()
    layout = [[k, list(v.shape), False] for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")]
    sd, v = expanded(layout)
    full = collections.OrderedDict()
    for k, t in m.state_dict().items():
        full[k] = torch.tensor(5, dtype=torch.int64) if k.endswith("num_batches_tracked") else sd[k]
    torch.save(full, os.path.join(out, "resnet50_expanded.pth"))
    values["resnet50_expanded.pth"] = v
    # DINO ViT-S/16 as a training checkpoint with a DINO head (out_dim 65536).
    head = [("head.mlp.0.weight", [2048, 384]), ("head.mlp.0.bias", [2048]), ("head.mlp.2.weight", [2048, 2048]),
            ("head.mlp.2.bias", [2048]), ("head.mlp.4.weight", [256, 2048]), ("head.mlp.4.bias", [256]),
            ("head.last_layer.weight_g", [1, 256]), ("head.last_layer.weight_v", [65536, 256])]
    sd, v = expanded(lay["dino_vits16"]["tensors"], head)
    teacher = collections.OrderedDict(("module.backbone." + k if not k.startswith("head.") else "module." + k, t)
                                      for k, t in sd.items())
    torch.save({"student": teacher, "teacher": teacher, "epoch": 100}, os.path.join(out, "dino_vits16_expanded.pth"))
    values["dino_vits16_expanded.pth"] = {k: x for k, x in v.items() if not k.startswith("head.")}
    # DeiT-S: {"model": ...}.
    sd, v = expanded(lay["deit_small_patch16_224"]["tensors"])
    torch.save({"model": sd}, os.path.join(out, "deit_small_patch16_224_expanded.pth"))
    values["deit_small_patch16_224_expanded.pth"] = v
    # DINOv2 ViT-S/14 with registers, flat like the hub files.
    sd, v = expanded(lay["dinov2_vits14_reg"]["tensors"])
    torch.save(sd, os.path.join(out, "dinov2_vits14_reg_expanded.pth"))
    values["dinov2_vits14_reg_expanded.pth"] = v
    # Broken dino_vits16 files.
    layout = lay["dino_vits16"]["tensors"]
    sd, _ = expanded([t for t in layout if t[0] != "blocks.11.mlp.fc2.bias"])
    torch.save(sd, os.path.join(out, "dino_vits16_missing.pth"))
    sd, _ = expanded([[k, [1152, 383] if k == "blocks.5.attn.qkv.weight" else s, b] for k, s, b in layout])
    torch.save(sd, os.path.join(out, "dino_vits16_badshape.pth"))
    sd, _ = expanded(layout)
    sd["norm.bias"] = torch.zeros(384, dtype=torch.int64)
    torch.save(sd, os.path.join(out, "dino_vits16_intdtype.pth"))
    return values


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    tiny_dino(out)
    tiny_dtypes(out)
    tiny_deit(out)
    torch.save({"model": Evil()}, os.path.join(out, "evil.pth"))
    lay = layouts()
    models, unique = {}, {}
    for name, v in lay.items():
        key = next((k for k, t in unique.items() if t == v["tensors"]), name)
        unique.setdefault(key, v["tensors"])
        models[name] = {"layout": key, "parameters": v["parameters"]}
    with open(os.path.join(out, "layouts.json"), "w") as f:
        json.dump({"models": models, "layouts": unique}, f, separators=(",", ":"))
    values = expanded_fixtures(out, lay)
    with open(os.path.join(out, "expanded.json"), "w") as f:
        json.dump(values, f, separators=(",", ":"))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}")


if __name__ == "__main__":
    main()
