"""The tiled losses with and without the max-free exponentials, timed in one process.

With unit rows every base-2 logit lies in [-log2(e)/tau, log2(e)/tau]; for tau >= 0.029 the CPU
tiles of ``info_nce`` and ``nt_xent`` exponentiate the logits as they are (no row maxima) and the
backward passes take one exp2 per tile instead of two. This script times forward + backward at
D = 128, tau = 0.1, with that switch on and off (``unshifted_ok`` forced to False), interleaved
call by call so that both see the same machine state, and prints the medians.

    python benchmarks/bench_unshifted.py            # N = 256, 1024, 4096, 2 threads
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import nce
import nce.functional._tiled_softmax as tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    switch_on = tiles.unshifted_ok
    losses = {"info_nce": nce.info_nce, "nt_xent": nce.nt_xent}
    print("| N | loss | with maxima | without | speed-up |")
    print("|---:|---|---:|---:|---:|")
    for n in args.sizes:
        gen = torch.Generator().manual_seed(n)
        q = torch.randn(n, 128, generator=gen, requires_grad=True)
        k = torch.randn(n, 128, generator=gen, requires_grad=True)
        times = {}
        for _ in range(args.repeats):
            for on in (False, True):
                tiles.unshifted_ok = switch_on if on else (lambda scale, like: False)
                for name, loss in losses.items():
                    start = time.perf_counter()
                    loss(q, k, temperature=0.1).backward()
                    times.setdefault((name, on), []).append(time.perf_counter() - start)
        tiles.unshifted_ok = switch_on
        for name in losses:
            off, on = (statistics.median(times[(name, flag)]) * 1e3 for flag in (False, True))
            print(f"| {n} | `{name}` | {off:.2f} ms | {on:.2f} ms | {off / on:.2f}× |")


if __name__ == "__main__":
    main()
