#!/usr/bin/env python3
"""Generates the PyTorch training-parity fixture of labelscope-nn's region head
(`crates/nn/src/head.rs`, `optim.rs`, `train.rs`). Needs torch; run once, the
outputs are committed (CI does not need torch):

    /work/venv-torch/bin/python tests/reference/make_head_torch_fixture.py crates/nn/tests/fixtures/head

Two heads on D = 8 input features and C = 5 classes, with PyTorch's default
nn.Linear initialisation under torch.manual_seed (the initial weights are
written, the Rust test loads them):

* `mlp`:    fc1 = Linear(8, 16) -> ReLU -> Dropout(0) -> fc2 = Linear(16, 5)
* `linear`: fc  = Linear(8, 5)

Each head is trained for K = 12 steps on explicit batches of row indices
(batch_index.npy, flat int64, split by batch_sizes.npy; the last batch has 5
rows, the others 8) with cross-entropy (torch.nn.functional.cross_entropy,
mean reduction, label_smoothing) under a LambdaLR schedule whose lambda is

    k <  W:  s + (1 - s) * k / W
    k >= W:  m + (1 - m) * 0.5 * (1 + cos(pi * min(1, (k - W) / max(1, T - W))))

(k = the 0-based step, W warm-up steps, s start factor, m minimum factor,
T = K total steps; scheduler.step() after every optimizer.step()). Cases:

* `sgd`:   torch.optim.SGD(lr 0.1, momentum 0.9, nesterov, weight_decay 0.01),
           weight decay on every parameter; W 3, s 0, m 0.1; smoothing 0.1.
* `adamw`: torch.optim.AdamW(lr 0.01, betas (0.9, 0.999), eps 1e-8,
           weight_decay 0.05) with the biases in a second parameter group with
           weight_decay 0 ("no decay on biases"); W 3, s 0.1, m 0; smoothing 0.2.

The reference runs in float64 (inputs and initial weights are float32 values,
so both sides start from the same numbers). Written per case
`<head>_<opt>`: `<case>_final.safetensors` (final weights, float32),
`<case>_losses.npy` (the loss of every step, before its update, float64) and
`<case>_lrs.npy` (the learning rate each step used, read from the parameter
group, float64); shared: x.npy [40, 8] float32, y.npy [40] int64,
batch_index.npy, batch_sizes.npy, init_<head>.safetensors. The script also
prints how far a float32 torch run lands from the float64 one (the inherent
float32 noise the Rust tolerance has to cover).
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

N, D, H, C, K = 40, 8, 16, 5, 12


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, H)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.0)
        self.fc2 = nn.Linear(H, C)

    def forward(self, x):
        return self.fc2(self.drop(self.relu(self.fc1(x))))


class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(D, C)

    def forward(self, x):
        return self.fc(x)


def lam(W, s, m, T):
    def f(k):
        if k < W:
            return s + (1.0 - s) * k / W
        prog = min(1.0, (k - W) / max(1, T - W))
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * prog))

    return f


CASES = {
    "sgd": dict(W=3, s=0.0, m=0.1, smoothing=0.1),
    "adamw": dict(W=3, s=0.1, m=0.0, smoothing=0.2),
}


def make_optimizer(name, model):
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.01,
        betas=(0.9, 0.999),
        eps=1e-8,
    )


def train(model_cls, init, opt_name, x, y, batches, dtype):
    model = model_cls().to(dtype)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.from_numpy(init[n]).to(dtype))
    model.train()
    case = CASES[opt_name]
    opt = make_optimizer(opt_name, model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam(case["W"], case["s"], case["m"], K))
    xt = torch.from_numpy(x).to(dtype)
    yt = torch.from_numpy(y)
    losses, lrs = [], []
    for idx in batches:
        idx = torch.from_numpy(idx)
        opt.zero_grad()
        logits = model(xt[idx])
        loss = F.cross_entropy(logits, yt[idx], label_smoothing=case["smoothing"])
        loss.backward()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(loss.item())
    final = {n: p.detach().to(torch.float64).numpy() for n, p in model.named_parameters()}
    return final, np.array(losses), np.array(lrs)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20260502)
    x = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.integers(0, C, N).astype(np.int64)
    sizes = [8] * (K - 1) + [5]
    batches = [rng.choice(N, size=s, replace=False).astype(np.int64) for s in sizes]
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "y.npy"), y)
    np.save(os.path.join(out, "batch_index.npy"), np.concatenate(batches))
    np.save(os.path.join(out, "batch_sizes.npy"), np.array(sizes, dtype=np.int64))

    torch.manual_seed(7)
    heads = {"mlp": Mlp, "linear": Lin}
    for head, cls in heads.items():
        init = {n: p.detach().numpy().astype(np.float32) for n, p in cls().named_parameters()}
        save_safetensors(os.path.join(out, f"init_{head}.safetensors"), init)
        for opt_name in CASES:
            final, losses, lrs = train(cls, init, opt_name, x, y, batches, torch.float64)
            f32, losses32, _ = train(cls, init, opt_name, x, y, batches, torch.float32)
            noise = max(float(np.abs(final[n] - f32[n]).max()) for n in final)
            moved = max(float(np.abs(final[n] - init[n]).max()) for n in final)
            case = f"{head}_{opt_name}"
            save_safetensors(
                os.path.join(out, f"{case}_final.safetensors"), {n: v.astype(np.float32) for n, v in final.items()}
            )
            np.save(os.path.join(out, f"{case}_losses.npy"), losses)
            np.save(os.path.join(out, f"{case}_lrs.npy"), np.array(lrs, dtype=np.float64))
            print(
                f"{case}: loss {losses[0]:.5f} -> {losses[-1]:.5f}, weights moved up to {moved:.4f}, "
                f"float32 torch vs float64: {noise:.2e} (losses {np.abs(losses - losses32).max():.2e})"
            )


if __name__ == "__main__":
    main()
