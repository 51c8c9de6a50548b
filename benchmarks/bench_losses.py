"""Forward+backward time of nt_xent and info_nce against a three-matrix-product floor.

For in-batch InfoNCE over N pairs the exact gradient needs three (N, D)x(D, N)-sized products:
the similarity Q K^T and the two backward products G K and G^T Q. That is the floor ("3 matmul").
NT-Xent works on 2N views, so its floor is three products of the 2N-view shapes; its similarity
matrix is symmetric, so an exact implementation can get by with fewer.

Each row reports the median time over repeats and ratios to the floor measured in the same run,
next to a straightforward PyTorch implementation and, where installed, pytorch-metric-learning.

    python benchmarks/bench_losses.py            # prints and updates BENCHMARKS.md
    python benchmarks/bench_losses.py --quick    # the two smallest sizes, prints only

glibc returns freed blocks of a few hundred kilobytes and more to the OS, and every new tensor of
that size then page-faults afresh; the time this takes depends on what ran before, and it blurs
the comparison by ±50 % at N = 1024. The script therefore re-runs itself with glibc's mmap and
trim thresholds raised (the same for every candidate), unless ``--system-allocator`` is given.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nce  # noqa: E402

import _report  # noqa: E402

D = 128
TEMPERATURE = 0.1
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def median_times(candidates: dict, repeats: int, warmup: int = 2) -> dict:
    """Median seconds of each candidate, timed round-robin so that drift hits all alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in samples.items()}


def three_matmuls(a, b):
    """The floor: S = A Bᵀ, S B and Sᵀ A into preallocated outputs (pure arithmetic)."""
    s = a.new_empty(a.shape[0], b.shape[0])
    da, db = torch.empty_like(a), torch.empty_like(b)

    def run():
        torch.matmul(a, b.T, out=s)
        torch.matmul(s, b, out=da)
        torch.matmul(s.T, a, out=db)

    return run


def forward_backward(loss_fn, *inputs):
    leaves = [x.detach().requires_grad_() for x in inputs]

    def run():
        loss = loss_fn(*leaves)
        loss.backward()
        for x in leaves:
            x.grad = None

    return run


def plain_info_nce(q, k):
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.T / TEMPERATURE
    return F.cross_entropy(logits, torch.arange(q.shape[0]))


def plain_nt_xent(v1, v2):
    z = F.normalize(torch.cat([v1, v2]), dim=1)
    logits = (z @ z.T / TEMPERATURE).fill_diagonal_(float("-inf"))
    n = v1.shape[0]
    return F.cross_entropy(logits, torch.arange(2 * n).roll(n))


def pml_nt_xent():
    try:
        from pytorch_metric_learning.losses import NTXentLoss
    except ImportError:
        return None
    loss = NTXentLoss(temperature=TEMPERATURE)

    def fn(v1, v2):
        labels = torch.arange(v1.shape[0]).repeat(2)
        return loss(torch.cat([v1, v2]), labels)

    return fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument(
        "--pml-max",
        type=int,
        default=256,
        help="largest N to run pytorch-metric-learning at (its memory grows as N^3)",
    )
    parser.add_argument("--quick", action="store_true", help="two smallest N, no file written")
    parser.add_argument(
        "--system-allocator", action="store_true", help="keep glibc's default malloc thresholds"
    )
    args = parser.parse_args()
    if not args.system_allocator and STEADY_MALLOC.keys() - os.environ.keys():
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_MALLOC})
    sizes = args.sizes[:2] if args.quick else args.sizes
    g = torch.Generator().manual_seed(0)
    pml = pml_nt_xent()

    rows = []
    for n in sizes:
        repeats = args.repeats if n <= 1024 else max(5, args.repeats // 2)
        q, k = torch.randn(n, D, generator=g), torch.randn(n, D, generator=g)
        z = torch.cat([q, k])
        candidates = {
            "floor_pairs": three_matmuls(q, k),
            "floor_views": three_matmuls(z, z),
            "info_nce": forward_backward(
                lambda a, b: nce.info_nce(a, b, temperature=TEMPERATURE), q, k
            ),
            "info_nce plain": forward_backward(plain_info_nce, q, k),
            "nt_xent": forward_backward(
                lambda a, b: nce.nt_xent(a, b, temperature=TEMPERATURE), q, k
            ),
            "nt_xent plain": forward_backward(plain_nt_xent, q, k),
        }
        t = median_times(candidates, repeats)
        floor_pairs, floor_views = t.pop("floor_pairs"), t.pop("floor_views")
        if pml is not None and n <= args.pml_max:
            t["nt_xent pml"] = median_times({"pml": forward_backward(pml, q, k)}, 3, 1)["pml"]
        row = {"n": n, "floor_pairs": floor_pairs, "floor_views": floor_views, **t}
        rows.append(row)
        print(
            f"N={n:5d}  floor(N)={floor_pairs * 1e3:8.2f} ms  "
            f"floor(2N)={floor_views * 1e3:8.2f} ms  "
            + "  ".join(
                f"{name}={v * 1e3:.2f} ms "
                f"({v / (floor_pairs if 'info' in name else floor_views):.2f}x)"
                for name, v in t.items()
            ),
            flush=True,
        )

    table = [
        "| N | 3-matmul floor | `info_nce` | plain PyTorch InfoNCE | 3-matmul floor (2N views) "
        "| `nt_xent` | plain PyTorch NT-Xent | pytorch-metric-learning NTXentLoss |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:

        def cell(key, floor, r=r):
            return f"{r[key] * 1e3:.1f} ms (**{r[key] / floor:.2f}×**)" if key in r else "not run"

        table.append(
            f"| {r['n']} | {r['floor_pairs'] * 1e3:.1f} ms | {cell('info_nce', r['floor_pairs'])} "
            f"| {cell('info_nce plain', r['floor_pairs'])} | {r['floor_views'] * 1e3:.1f} ms "
            f"| {cell('nt_xent', r['floor_views'])} | {cell('nt_xent plain', r['floor_views'])} "
            f"| {cell('nt_xent pml', r['floor_views'])} |"
        )
    text = "\n".join(table)
    print(text)
    if not args.quick:
        _report.write_section(
            "bench_losses",
            (
                "### Loss speed: forward + backward on CPU (D = 128, float32, τ = 0.1)\n\n"
                f"Command: `python benchmarks/bench_losses.py` — commit `{_report.commit()}` — "
                f"{_report.machine()}; glibc malloc thresholds "
                f"{'as installed' if args.system_allocator else 'raised (see the script)'}. "
                "Median of repeats, candidates timed round-robin; ratios are to the "
                "three-matrix-product floor of the same shapes measured in the same run "
                "(N pairs for InfoNCE, 2N views for NT-Xent). pytorch-metric-learning builds "
                "N³-sized tensors and is run only up to "
                f"N = {args.pml_max}.\n\n" + text
            ),
        )


if __name__ == "__main__":
    main()
