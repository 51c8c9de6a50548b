"""``nce demo``'s memory section: InfoNCE at a large batch, in tiles against the dense N × N matrix.

:func:`nce.functional.info_nce` never stores the N × N similarity matrix: it scores tiles of
``chunk_size`` rows (memory O(N·D + chunk_size·N)). The textbook loss builds the whole matrix and
its log-softmax. Both are run on the same N pairs; the page shows the two values and the peak
memory of each: measured on Linux as the growth of the process's peak resident set (reset before
each run through ``/proc/self/clear_refs``), elsewhere computed from the shapes of the largest
intermediates (float32: 4 bytes a number).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nce.cli._output import atomic_save_figure
from nce.cli._plot import pyplot
from nce.cli._report_page import Measure, SectionResult, announce, format_number, section_bar
from nce.functional import info_nce

MIB = 2**20
FLOAT_BYTES = 4


def dense_bytes(n: int) -> int:
    """Bytes of the dense loss's largest intermediates: the N × N logits and their log-softmax."""
    return 2 * n * n * FLOAT_BYTES


def tiled_bytes(n: int, chunk_size: int) -> int:
    """Bytes of one tile of ``chunk_size`` rows of logits and its exponentials."""
    return 2 * min(chunk_size, n) * n * FLOAT_BYTES


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory_growth(compute) -> tuple[float, int | None]:
    """``compute()`` and how far it raised the process's peak resident memory, in bytes (None
    where the peak cannot be reset and read: outside Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM, the peak resident set, to the current one
        before = _status_bytes("VmRSS")
    except OSError:
        return compute(), None
    value = compute()
    return value, max(0, _status_bytes("VmHWM") - before)


def dense_info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """The textbook InfoNCE: cross-entropy over the whole N × N cosine-similarity matrix."""
    logits = F.normalize(query, dim=1) @ F.normalize(key, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(query)))


def memory_section(out_dir: Path, progress: bool, quick: bool = False) -> SectionResult:
    """InfoNCE on N = 16384 pairs (4096 with ``quick``), D = 64, tiles of 1024 rows."""
    n, dim, chunk, temperature = (4096 if quick else 16384), 64, 1024, 0.1
    g = torch.Generator().manual_seed(0)
    query = torch.randn(n, dim, generator=g)
    key = query + 0.5 * torch.randn(n, dim, generator=g)
    with torch.no_grad(), section_bar("memory-efficient loss", 2, progress) as bar:
        start = time.perf_counter()
        tiled, tiled_peak = peak_memory_growth(
            lambda: float(info_nce(query, key, temperature=temperature, chunk_size=chunk))
        )
        tiled_seconds = time.perf_counter() - start
        bar.update()
        start = time.perf_counter()
        dense, dense_peak = peak_memory_growth(
            lambda: float(dense_info_nce(query, key, temperature))
        )
        dense_seconds = time.perf_counter() - start
        bar.update()
    measured = tiled_peak is not None and dense_peak is not None
    if not measured:
        tiled_peak, dense_peak = tiled_bytes(n, chunk), dense_bytes(n)
    how = "measured" if measured else "computed"
    dense_mib, tiled_mib = dense_peak / MIB, max(tiled_peak, 1) / MIB
    difference = abs(tiled - dense)
    _plot(out_dir / "memory.png", n, chunk, tiled_mib, dense_mib, how)
    f = format_number
    agree = "agree" if difference <= 1e-4 * max(1.0, abs(dense)) else "differ"
    return announce(
        SectionResult(
            measures=(
                Measure("tiled_loss", "info_nce, tiled", tiled, dense, "dense_loss", "dense"),
                Measure("abs_difference", "|tiled − dense|", difference),
                Measure(
                    "tiled_mib", f"memory, tiled (MiB, {how})", tiled_mib, dense_mib,
                    "dense_mib", "dense",
                ),
                Measure(
                    "tiled_seconds", "time, tiled (s)", tiled_seconds, dense_seconds,
                    "dense_seconds", "dense",
                ),
                Measure("batch_size", "batch N", n),
                Measure("chunk_size", "tile rows", chunk),
            ),
            figure="memory.png",
            note=(
                f"memory: InfoNCE on N = {n} pairs (D = {dim}, τ = {temperature}) in tiles of "
                f"{chunk} rows, against the dense N × N matrix; memory "
                + (
                    "measured as the growth of the peak resident set."
                    if measured
                    else "computed from the shapes of the largest intermediates."
                )
            ),
            reading=(
                f"The tiled loss {f(tiled)} and the dense loss {f(dense)} {agree}: they differ "
                f"by {f(difference)}.",
                f"The tiles hold {f(tiled_mib)} MiB at a time against {f(dense_mib)} MiB for the "
                f"dense matrix, {f(dense_mib / tiled_mib)} times less, in {f(tiled_seconds)} s "
                f"against {f(dense_seconds)} s.",
            ),
        )
    )


def _plot(path: Path, n: int, chunk: int, tiled_mib: float, dense_mib: float, how: str) -> None:
    plt = pyplot("nce demo")
    sizes = [2**k for k in range(8, 18)]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.loglog(sizes, [dense_bytes(s) / MIB for s in sizes], "o-", label="dense N × N")
    ax.loglog(
        sizes, [tiled_bytes(s, chunk) / MIB for s in sizes], "s-", label=f"tiles of {chunk} rows"
    )
    ax.plot([n], [dense_mib], "o", ms=11, mfc="none", color="tab:blue", label=f"dense, {how}")
    ax.plot([n], [tiled_mib], "s", ms=11, mfc="none", color="tab:orange", label=f"tiled, {how}")
    ax.set_xlabel("batch size N")
    ax.set_ylabel("MiB (lines: the logits and their exponentials)")
    ax.set_title("InfoNCE: memory of the similarity matrix")
    ax.legend()
    atomic_save_figure(fig, path)
    plt.close(fig)
