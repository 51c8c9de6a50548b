"""Forward+backward time of info_nce and nt_xent at every batch size, 32 to 65,536, on one thread.

Next to each loss: the straightforward PyTorch version (F.normalize, q @ k.T / τ, cross_entropy)
and the three-matrix-product floor of `bench_losses.py` (S = A Bᵀ, S B and Sᵀ A into
preallocated outputs; N pairs for InfoNCE, 2N views for NT-Xent), all timed round-robin in the
same process (interleaved repeats, medians of each call's thread CPU time), so that a ratio
compares calls that saw the same machine load. Also: the ATen operations each forward+backward
dispatches (counted with a ``TorchDispatchMode``), at the small sizes; and, up to N = 1024, two
more references in a second table: the bare autograd call ``(q @ k.T).sum().backward()`` (the
same three products through eager autograd and nothing else: the least any eager loss costs)
and the straightforward versions compiled with ``torch.compile`` (Inductor, one compilation per
shape, its time reported).

    python benchmarks/bench_small_batch.py            # prints and updates BENCHMARKS.md
    python benchmarks/bench_small_batch.py --quick    # N = 32 … 1024 only, prints only
    python benchmarks/bench_small_batch.py --no-compile   # without the torch.compile columns

One thread (``torch.set_num_threads(1)``), so that the candidates share the same core budget on
a loaded machine; glibc's malloc thresholds are raised as in `bench_losses.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_losses import (  # noqa: E402
    STEADY_MALLOC,
    TEMPERATURE,
    forward_backward,
    plain_info_nce,
    plain_nt_xent,
    three_matmuls,
)

import nce  # noqa: E402

import _report  # noqa: E402

D = 128
SIZES = [1 << p for p in range(5, 17)]  # 32 … 65,536
PLAIN_SIDE_MAX = 16384  # the straightforward versions hold several side × side matrices at once
COUNT_MAX = 1024
EXTRA_MAX = 1024  # the bare-autograd and torch.compile references


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def dispatched(run) -> int:
    """ATen operations one call dispatches (forward and backward)."""
    with _CountOps() as mode:
        run()
    return mode.count


def medians(candidates: dict, repeats: int) -> dict:
    """Median CPU seconds of this thread per call, each candidate in turn over the repeats (one
    warm-up call each). CPU time leaves out the time the thread waits for a core on a shared
    machine, which would otherwise land on whichever call a context switch interrupts."""
    for run in candidates.values():
        run()
    samples = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            t0 = time.thread_time()
            run()
            samples[name].append(time.thread_time() - t0)
    return {name: sorted(v)[len(v) // 2] for name, v in samples.items()}


def repeats_for(n: int) -> int:
    return 101 if n <= 256 else 21 if n <= 1024 else 5 if n <= 2048 else 3 if n <= 16384 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--quick", action="store_true", help="N = 32 … 1024, no file written")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    args = parser.parse_args()
    if STEADY_MALLOC.keys() - os.environ.keys():
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_MALLOC})
    torch.set_num_threads(1)
    sizes = [n for n in args.sizes if n <= 1024] if args.quick else args.sizes
    g = torch.Generator().manual_seed(0)
    rows = []
    started = time.time(), time.process_time()
    for n in sizes:
        q, k = torch.randn(n, D, generator=g), torch.randn(n, D, generator=g)
        z = torch.cat([q, k])
        candidates = {
            "floor pairs": three_matmuls(q, k),
            "floor views": three_matmuls(z, z),
            "info_nce": forward_backward(
                lambda a, b: nce.info_nce(a, b, temperature=TEMPERATURE), q, k
            ),
            "nt_xent": forward_backward(
                lambda a, b: nce.nt_xent(a, b, temperature=TEMPERATURE), q, k
            ),
        }
        if n <= PLAIN_SIDE_MAX:
            candidates["info_nce plain"] = forward_backward(plain_info_nce, q, k)
        if 2 * n <= PLAIN_SIDE_MAX:
            candidates["nt_xent plain"] = forward_backward(plain_nt_xent, q, k)
        compile_seconds = {}
        if n <= EXTRA_MAX:
            candidates["info_nce bare"] = forward_backward(_bare_pairs, q, k)
            candidates["nt_xent bare"] = forward_backward(_bare_views, q, k)
            if not args.no_compile:
                for name, fn in (("info_nce", plain_info_nce), ("nt_xent", plain_nt_xent)):
                    run = forward_backward(torch.compile(fn, dynamic=False), q, k)
                    t0 = time.perf_counter()
                    run()  # compiles forward and backward for this shape
                    compile_seconds[name] = time.perf_counter() - t0
                    candidates[f"{name} compiled"] = run
        counts = {}
        if n <= COUNT_MAX:
            timed = {name: run for name, run in candidates.items() if name in TABLE_OPS}
            counts = {name: dispatched(run) for name, run in timed.items()}
        t = medians(candidates, repeats_for(n))
        rows.append(
            {"n": n, "repeats": repeats_for(n), "t": t, "ops": counts, "compile": compile_seconds}
        )
        if not args.quick:
            _write(rows, [m for m in SIZES if m > n], started, args.sizes)
        print(
            f"N={n:6d}  "
            + "  ".join(
                f"{name}={v * 1e3:.3f} ms"
                + ("" if "floor" in name else f" ({v / t[_floor(name)]:.2f}x)")
                for name, v in t.items()
            )
            + ("  ops " + str(counts) if counts else ""),
            flush=True,
        )
    print(_table(rows))
    print(_extra_table(rows))


TABLE_OPS = ("info_nce", "nt_xent", "info_nce plain", "nt_xent plain")


def _bare_pairs(q, k):
    """The floor's three products through eager autograd: S = Q Kᵀ forward, S K and Sᵀ Q back."""
    return (q @ k.T).sum()


def _bare_views(v1, v2):
    """The same for the 2N views Z = [V₁; V₂]: Z Zᵀ forward, two products back."""
    z = torch.cat([v1, v2])
    return (z @ z.T).sum()


def _extra_table(rows) -> str:
    lines = [
        "| N | `info_nce` | bare autograd (N pairs) | plain InfoNCE compiled | `nt_xent` "
        "| bare autograd (2N views) | plain NT-Xent compiled |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["t"]
        if "info_nce bare" not in t:
            continue

        def cell(name, t=t, r=r):
            if name not in t:
                return "not run"
            text = f"{t[name] * 1e3:.3g} ms (**{t[name] / t[_floor(name)]:.2f}×**)"
            loss = name.split()[0]
            if name.endswith("compiled"):
                text += f", compiled in {r['compile'][loss]:.1f} s"
            return text

        lines.append(
            f"| {r['n']} | {cell('info_nce')} | {cell('info_nce bare')} "
            f"| {cell('info_nce compiled')} | {cell('nt_xent')} | {cell('nt_xent bare')} "
            f"| {cell('nt_xent compiled')} |"
        )
    return "\n".join(lines)


def _write(rows, missing, started, sizes) -> None:
    """Write the section for the sizes measured so far (the largest take the longest)."""
    wall, cpu = time.time() - started[0], time.process_time() - started[1]
    note = ""
    if missing:
        note = (
            "\n\nNot measured in this run (the floor's preallocated 2N × 2N product alone takes "
            "16 GB and more at these sizes, and one repeat minutes of CPU time): N = "
            + ", ".join(str(m) for m in missing)
            + "."
        )
    _report.write_section(
        "bench_small_batch",
        "### Loss speed at every batch size: forward + backward on one CPU thread "
        f"(D = 128, float32, τ = {TEMPERATURE})\n\n"
        "Command: `python benchmarks/bench_small_batch.py"
        + ("" if sizes == SIZES else " --sizes " + " ".join(map(str, sizes)))
        + f"` — commit `{_report.commit()}` — "
        f"{_report.machine()}; glibc malloc thresholds raised (see `bench_losses.py`). "
        "`torch.set_num_threads(1)` on a machine that may run other jobs (the rows below "
        f"took {wall:.0f} s of wall time for {cpu:.0f} s of CPU time: the closer the two, the "
        "quieter the machine). Each cell is the median over its repeats of the CPU time of "
        "one call (the "
        "thread's own CPU clock: waiting for a core is left out), the candidates timed in turn "
        "within each repeat; a ratio divides two medians of the same run. "
        "The floor is `bench_losses.py`'s: the three matrix products of an exact gradient "
        "(N pairs for InfoNCE, 2N views for NT-Xent). The straightforward versions are "
        "F.normalize, q @ k.T / τ and cross_entropy; they are run while their similarity "
        f"matrix has at most {PLAIN_SIDE_MAX} rows (InfoNCE: N ≤ {PLAIN_SIDE_MAX}; NT-Xent: "
        f"2N ≤ {PLAIN_SIDE_MAX}): beyond, each of the several such matrices they hold at once "
        "takes 4 GB or more, and together they outgrow this 24 GB machine. ops: ATen "
        "operations dispatched per forward + backward, "
        "counted with a TorchDispatchMode.\n\n" + _table(rows) + "\n\nThe same runs, up to "
        f"N = {EXTRA_MAX}, against two more references (× the same floor): the bare autograd "
        "call `(q @ k.T).sum().backward()` (for NT-Xent `(z @ z.T).sum()` of the 2N views), the "
        "floor's products through eager autograd with no loss around them, which is the least an "
        "eager PyTorch loss costs; and the straightforward versions compiled by `torch.compile` "
        "(Inductor's CPU backend, `dynamic=False`, compiled once per batch size; the compile "
        "time of its first call, forward and backward, is given).\n\n"
        + _extra_table(rows)
        + note,
    )


def _floor(name: str) -> str:
    return "floor pairs" if name.startswith("info") else "floor views"


def _table(rows) -> str:
    lines = [
        "| N | repeats | floor (N pairs) | `info_nce` | plain InfoNCE | floor (2N views) "
        "| `nt_xent` | plain NT-Xent |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t, ops = r["t"], r["ops"]

        def cell(name, t=t, ops=ops):
            if name not in t:
                return "not run"
            text = f"{t[name] * 1e3:.3g} ms (**{t[name] / t[_floor(name)]:.2f}×**)"
            return text + (f", {ops[name]} ops" if name in ops else "")

        lines.append(
            f"| {r['n']} | {r['repeats']} | {t['floor pairs'] * 1e3:.3g} ms | {cell('info_nce')} "
            f"| {cell('info_nce plain')} | {t['floor views'] * 1e3:.3g} ms | {cell('nt_xent')} "
            f"| {cell('nt_xent plain')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
