"""SigLIP's bias: the paper's initial -10 against -log N, at several batch sizes.

Two towers (small MLPs) map a digits image (scikit-learn, 8x8) and a second, noisy view of the
same image — Gaussian pixel noise (sd 0.1 on [0, 1]), a random one-pixel shift and a tenth of the
pixels dropped — into a shared 32-dimensional space, trained with
:class:`nce.losses.SigLIPLoss` (temperature and bias learned, AdamW) for a fixed number of steps.
The bias starts at -10 or at -log N; everything else (seed, data order, initial weights) is the
same. Reported on the held-out images: the loss over batches of N test pairs, the image -> view
top-1 retrieval accuracy among all test pairs, and the learned bias and temperature.

    python benchmarks/siglip_bias.py            # prints and updates BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import nce
from nce.losses import SigLIPLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report  # noqa: E402

DIM = 32


def noisy_view(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A second view of 8x8 images: one-pixel random shift, a tenth of pixels dropped, noise."""
    images = x.view(-1, 8, 8)
    shifts = torch.randint(-1, 2, (x.shape[0], 2), generator=generator)
    shifted = torch.stack(
        [
            torch.roll(img, (int(a), int(b)), (0, 1))
            for img, (a, b) in zip(images, shifts, strict=True)
        ]
    )
    keep = torch.rand(shifted.shape, generator=generator) > 0.1
    noise = 0.1 * torch.randn(shifted.shape, generator=generator)
    return (shifted * keep + noise).reshape(x.shape[0], 64)


def tower() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, DIM))


def data(seed: int):
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(x.shape[0], generator=generator)
    test, train = order[:360], order[360:]
    return x[train], x[test], noisy_view(x[test], generator)


def train(batch_size: int, bias: float, steps: int, seed: int, lr: float):
    x_train, x_test, v_test = data(seed)
    torch.manual_seed(seed)
    image_tower, view_tower = tower(), tower()
    criterion = SigLIPLoss(bias=bias)
    parameters = [*image_tower.parameters(), *view_tower.parameters(), *criterion.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        rows = torch.randint(0, x_train.shape[0], (batch_size,), generator=generator)
        x = x_train[rows]
        loss = criterion(image_tower(x), view_tower(noisy_view(x, generator)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        q, k = image_tower(x_test), view_tower(v_test)
        temperature, learned_bias = criterion.temperature(), criterion.bias
        losses = [
            nce.pairwise_nce(
                q[i : i + batch_size],
                k[i : i + batch_size],
                temperature=temperature,
                bias=learned_bias,
            )
            for i in range(0, q.shape[0] - batch_size + 1, batch_size)
        ]
        scores = nn.functional.normalize(q, dim=1) @ nn.functional.normalize(k, dim=1).T
        accuracy = (scores.argmax(1) == torch.arange(q.shape[0])).float().mean()
    return {
        "loss": float(torch.stack(losses).mean()),
        "accuracy": float(accuracy),
        "bias": float(learned_bias.detach()),
        "temperature": float(temperature),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = []
    for n in args.batch_sizes:
        for name, bias in (("-10", -10.0), ("-log N", -math.log(n))):
            runs = [train(n, bias, args.steps, seed, args.lr) for seed in range(args.seeds)]
            mean = {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}
            rows.append((n, name, bias, mean))
            print(n, name, {k: round(v, 4) for k, v in mean.items()}, flush=True)
    elapsed = time.perf_counter() - start

    lines = [
        "### SigLIP's bias: initial -10 against -log N (digits image vs noisy view, CPU)",
        "",
        f"Command: `python benchmarks/siglip_bias.py` — commit `{_report.commit()}` — "
        f"{_report.machine()}; {args.steps} AdamW steps (lr {args.lr}), temperature learned from "
        f"0.1, mean of {args.seeds} seeds, {elapsed:.0f} s in all. Test: 360 held-out images; "
        "loss over batches of N test pairs, top-1 retrieval of each image's view among all 360.",
        "",
        "| N | initial bias | test loss | test top-1 retrieval | learned bias | learned τ |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n, name, bias, mean in rows:
        lines.append(
            f"| {n} | {name} ({bias:.2f}) | {mean['loss']:.3f} | {mean['accuracy']:.3f} | "
            f"{mean['bias']:.2f} | {mean['temperature']:.4f} |"
        )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _report.write_section("siglip-bias", body)


if __name__ == "__main__":
    main()
