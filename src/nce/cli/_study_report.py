"""Tables and figures of the contrastive-learning studies (:mod:`nce.contrastive.studies`), for
``nce study`` and ``benchmarks/study_contrastive.py``: the library computes the rows, this module
renders them as Markdown and draws them with matplotlib (the ``plot`` extra)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nce.cli._plot import pyplot

__all__ = ["PERCENT", "markdown_table", "plot_study"]


def _format(value) -> str:
    if isinstance(value, float):
        if 0 <= value <= 1 and not math.isclose(value, 0):
            return f"{value:.4f}"
        return f"{value:.4g}"
    return str(value)


PERCENT = ("linear_probe", "linear_probe_10", "knn")


def markdown_table(rows: list[dict]) -> str:
    """Rows as a Markdown table; accuracies in percent."""
    columns = list(rows[0])
    header = [c + (" (%)" if c in PERCENT else "") for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [f"{100 * row[c]:.1f}" if c in PERCENT else _format(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_study(name: str, rows: list[dict], path: str | Path, save: Callable | None = None):
    """Draw the study's figure to ``path`` (PNG); ``save(fig, path)`` overrides ``savefig``.

    Raises:
        InputError: matplotlib is not installed (``pip install nce[plot]``).
    """
    plt = pyplot("drawing a study")

    def accuracies(ax, labels, positions):
        for key, label in zip(
            PERCENT, ("linear probe", "linear probe, 10/class", "5-NN"), strict=True
        ):
            ax.plot(positions, [100 * r[key] for r in rows], "o-", label=label)
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)

    if name == "temperature":
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        taus = [r["temperature"] for r in rows]
        accuracies(a, taus, taus)
        a.set_xscale("log")
        a.set_xlabel("temperature τ")
        b.plot([r["uniformity"] for r in rows], [r["alignment"] for r in rows], "o-")
        for r in rows:
            b.annotate(f"τ={r['temperature']:g}", (r["uniformity"], r["alignment"]), fontsize=8)
        b.set_xlabel("uniformity (lower: more spread)")
        b.set_ylabel("alignment (lower: positives closer)")
    elif name == "batch-size":
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 4))
        ns = [r["batch_size"] for r in rows]
        a.loglog(ns, [r["grad_variance"] for r in rows], "o-", label="V(N)")
        a.loglog(
            ns, [r["grad_variance"] * ns[0] / n for r in rows[:1] for n in ns], "k--", label="∝ 1/N"
        )
        a.set_xlabel("batch size N")
        a.set_ylabel("gradient variance")
        a.legend(fontsize=8)
        b.loglog(ns, [r["seconds_per_step"] for r in rows], "o-", label="t(N)")
        b.loglog(ns, [r["noise_per_time"] for r in rows], "s-", label="V(N)·t(N)")
        b.set_xlabel("batch size N")
        b.legend(fontsize=8)
        accuracies(c, ns, ns)
        c.set_xscale("log")
        c.set_xlabel("batch size N (equal wall-clock)")
    else:
        key = {"false-negatives": "method", "noise": "negatives", "features": "training"}.get(name)
        if name == "soft-labels":
            labels = [f"{100 * r['corrupted']:.0f}% {r['targets']}" for r in rows]
        else:
            labels = [r[key] for r in rows]
        extra = name == "features"
        fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(11 if extra else 8, 4))
        a = axes[0] if extra else axes
        x = np.arange(len(rows))
        for k, (col, label) in enumerate(
            zip(PERCENT, ("linear probe", "linear probe, 10/class", "5-NN"), strict=True)
        ):
            a.bar(x + (k - 1) * 0.27, [100 * r[col] for r in rows], 0.27, label=label)
        low = min(100 * r[c] for r in rows for c in PERCENT)
        a.set_ylim(max(0, low - 5), 100)
        a.set_xticks(x, labels, rotation=25, ha="right", fontsize=8)
        a.set_ylabel("test accuracy (%)")
        a.legend(fontsize=8)
        if extra:
            b = axes[1]
            b.bar(x - 0.2, [r["effective_rank"] for r in rows], 0.4, label="effective rank")
            b2 = b.twinx()
            b2.bar(x + 0.2, [r["sparsity"] for r in rows], 0.4, color="tab:red", label="sparsity")
            b.set_xticks(x, labels)
            b.set_ylabel("effective rank")
            b2.set_ylabel("sparsity (fraction ≈ 0)")
            b.legend(loc="upper left", fontsize=8)
            b2.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"study: {name}")
    fig.tight_layout()
    if save is not None:
        save(fig, Path(path))
    else:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
