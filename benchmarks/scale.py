"""Memory and time of in-batch InfoNCE as the batch grows: dense logits against nce's tiles.

Each (implementation, N) runs in a fresh process, so that its peak resident set size is its own;
the table reports the peak growth over the process's state just before the loss (inputs made).

* dense: the straightforward PyTorch loss (cross-entropy over the materialized N x N logits).
* chunked: ``nce.info_nce`` (tiles of at most 2M logits, or ``--chunk-size``).
* floor: the three matrix products an exact gradient needs (S = Q Kᵀ, S K, Sᵀ Q) into
  preallocated outputs; in row tiles when N x N would not fit in memory.

It also compares a 2-process gloo run (``gather=True``, 1 thread each) with one process (2
threads) on the same global batch.

    python benchmarks/scale.py            # prints and updates BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nce  # noqa: E402

import _report  # noqa: E402

D = 128
TEMPERATURE = 0.1
DENSE_LIMIT = 16384  # dense logits at 65536 would take 16 GiB, and their gradient as much again


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dense_loss(q, k):
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / TEMPERATURE
    return F.cross_entropy(logits, torch.arange(q.shape[0]))


def floor_buffers(q, k, tile):
    """Outputs of the floor's products, made once so that timing never pays for fresh pages."""
    return q.new_empty(min(tile, q.shape[0]), k.shape[0]), torch.empty_like(q), torch.empty_like(k)


def floor(q, k, tile, buffers):
    s, dq, dk = buffers
    dk.zero_()
    for r0 in range(0, q.shape[0], tile):
        r1 = min(r0 + tile, q.shape[0])
        block = torch.matmul(q[r0:r1], k.T, out=s[: r1 - r0])
        torch.matmul(block, k, out=dq[r0:r1])
        dk.addmm_(block.T, q[r0:r1])


def child(kind: str, n: int, repeats: int, chunk_size: int | None) -> dict:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(n, D, generator=g).requires_grad_()
    k = torch.randn(n, D, generator=g).requires_grad_()
    base = peak_rss_mib()
    tile = n if n <= DENSE_LIMIT else 1024
    buffers = floor_buffers(q.detach(), k.detach(), tile) if kind == "floor" else None

    def step():
        if kind == "floor":
            floor(q.detach(), k.detach(), tile, buffers)
            return
        if kind == "dense":
            loss = dense_loss(q, k)
        else:
            loss = nce.info_nce(q, k, temperature=TEMPERATURE, chunk_size=chunk_size)
        loss.backward()
        q.grad = k.grad = None

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "peak_growth_mib": peak_rss_mib() - base}


def run_child(kind, n, repeats, chunk_size):
    cmd = [sys.executable, __file__, "--child", kind, str(n), "--repeats", str(repeats)]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ddp_worker(rank, port, n_global, steps, out):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    g = torch.Generator().manual_seed(rank)
    q = torch.randn(n_global // 2, D, generator=g).requires_grad_()
    k = torch.randn(n_global // 2, D, generator=g).requires_grad_()
    times = []
    for _ in range(steps):
        dist.barrier()
        t0 = time.perf_counter()
        nce.info_nce(q, k, temperature=TEMPERATURE, gather=True).backward()
        dist.barrier()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps({"seconds": min(times)}))
    dist.destroy_process_group()


def throughput(n_global: int, steps: int) -> tuple[float, float]:
    """Seconds per step: 2 gloo processes (1 thread each) vs 1 process (2 threads)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = Path(f"/tmp/nce_scale_{os.getpid()}.json")
    mp.spawn(_ddp_worker, args=(port, n_global, steps, str(out)), nprocs=2, join=True)
    two = json.loads(out.read_text())["seconds"]
    out.unlink()
    one = run_child("chunked", n_global, steps, None)["seconds"]
    return two, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        print(json.dumps(child(kind, n, args.repeats, args.chunk_size)))
        return

    rows = []
    for n in args.sizes:
        repeats = args.repeats if n <= 16384 else 1
        row = {"n": n}
        for kind in ("floor", "chunked", "dense"):
            if kind == "dense" and n > DENSE_LIMIT:
                row[kind] = {"error": f"not run: the logits alone take {n * n * 4 / 2**30:.0f} GiB"}
                continue
            row[kind] = run_child(kind, n, repeats, args.chunk_size)
        rows.append(row)
        print(json.dumps(row), flush=True)
    two, one = throughput(4096, 5)
    print(f"2 gloo processes: {two * 1e3:.1f} ms/step, 1 process: {one * 1e3:.1f} ms/step")

    def cell(r, kind, what):
        v = r[kind]
        if "error" in v:
            return v["error"]
        return f"{v['seconds']:.3f} s" if what == "time" else f"{v['peak_growth_mib']:.0f} MiB"

    lines = [
        "| N | floor time | chunked time (× floor) | dense time (× floor) | chunked peak growth "
        "| dense peak growth |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fl = r["floor"]["seconds"]

        def ratio(kind, r=r, fl=fl):
            return "" if "error" in r[kind] else f" ({r[kind]['seconds'] / fl:.2f}×)"

        lines.append(
            f"| {r['n']} | {fl:.3f} s | {cell(r, 'chunked', 'time')}{ratio('chunked')} "
            f"| {cell(r, 'dense', 'time')}{ratio('dense')} | {cell(r, 'chunked', 'mem')} "
            f"| {cell(r, 'dense', 'mem')} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.no_write:
        return
    _report.write_section(
        "scale",
        "### In-batch InfoNCE at scale: memory and time (D = 128, float32, CPU)\n\n"
        f"Command: `python benchmarks/scale.py` — commit `{_report.commit()}` — "
        f"{_report.machine()}. Each cell is a fresh process; time is the best of "
        "3 forward+backward passes (1 at N = 65536); peak growth is the rise of the peak resident "
        "set size over the process with its inputs made. Dense is the straightforward PyTorch "
        "loss over materialized logits; the floor is the three matrix products of the exact "
        "gradient (in row tiles at N = 65536).\n\n"
        + table
        + f"\n\nTwo gloo processes (`gather=True`, 1 thread each) on a global batch of 4096: "
        f"{two * 1e3:.0f} ms per step; one process with 2 threads on the same batch: "
        f"{one * 1e3:.0f} ms: the pair has {one / two:.2f}× the throughput of one process.",
    )


if __name__ == "__main__":
    main()
