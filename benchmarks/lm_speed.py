"""Output-layer speed and memory at scale: NCE (k = 100 noise words, shared) against the full
softmax, forward + backward, on a synthetic Zipfian vocabulary of V words (D = 256, N = 512).

Each (loss, V) runs in a fresh process: time is the median of repeats, and memory is the growth of
the peak resident set size over the process with its layer built (the (V, D) weights and biases
are made before the baseline). "nce, sparse" keeps sparse gradients (only the rows read).

    python benchmarks/lm_speed.py            # prints and updates BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.output import NCEOutput  # noqa: E402
from nce.text import zipf_corpus  # noqa: E402

import _report  # noqa: E402

D, N, K = 256, 512, 100
MODES = {
    "full": {"loss": "full"},
    "nce": {"loss": "nce"},
    "nce, sparse": {"loss": "nce", "sparse": True},
}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, v: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(zipf_corpus(20 * v, v, generator=g), minlength=v).double() + 1
    layer = NCEOutput(v, D, counts, K, **MODES[mode])
    hidden = torch.randn(N, D, generator=g).requires_grad_()
    targets = zipf_corpus(N, v, generator=g)
    base = peak_mib()
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        layer(hidden, targets, generator=g).backward()
        times.append(time.perf_counter() - t0)
        layer.zero_grad(set_to_none=True)
        hidden.grad = None
    return {"seconds": statistics.median(times[1:]), "peak_growth_mib": peak_mib() - base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "V"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.repeats)))
        return
    rows = []
    for v in args.sizes:
        row = {"v": v}
        for mode in MODES:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    str(v),
                    "--repeats",
                    str(args.repeats if v < 1_000_000 else 3),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            row[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "| V | weights (V×D + V) | full | nce (× faster) | nce, sparse (× faster) "
        "| peak growth: full | nce | nce, sparse |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        full = r["full"]["seconds"]
        weights = r["v"] * (D + 1) * 4 / 2**20
        lines.append(
            f"| {r['v']:,} | {weights:.0f} MiB | {full * 1e3:.1f} ms "
            f"| {r['nce']['seconds'] * 1e3:.1f} ms ({full / r['nce']['seconds']:.0f}×) "
            f"| {r['nce, sparse']['seconds'] * 1e3:.1f} ms "
            f"({full / r['nce, sparse']['seconds']:.0f}×) "
            + " ".join(f"| {r[m]['peak_growth_mib']:.0f} MiB" for m in MODES)
            + " |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        _report.write_section(
            "lm_speed",
            "### Output layer at scale: NCE vs full softmax (D = 256, N = 512, k = 100 shared)\n\n"
            f"Command: `python benchmarks/lm_speed.py` — commit `{_report.commit()}` — "
            f"{_report.machine()}. Forward + backward of the output layer alone, median of "
            "repeats after one warm-up, each cell a fresh process. Peak growth is the rise of the "
            "peak resident set size over the process with its layer built.\n\n" + table,
        )


if __name__ == "__main__":
    main()
