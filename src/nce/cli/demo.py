"""``nce demo``: a short version of every capability on built-in data, written as a report.

Writes into ``--out``: ``index.html`` (one self-contained page: per section the numbers against
their target or closed form, a figure and two lines of reading written from this run's numbers),
``summary.json`` (every number on the page) and each section's figure as a PNG. The terminal shows
one progress bar per section and a summary table at the end.

Each section is one entry of :data:`SECTIONS`: ``(key, title, function)``, the function called
as ``function(out_dir, progress, quick=...)`` and returning a
:class:`~nce.cli._report_page.SectionResult`. ``--only`` takes the keys; ``--quick`` runs smaller
sizes and fewer epochs (a first look, and CI).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from nce.cli import align, density, lm, mi, pretrain, retrieve
from nce.cli._memory_demo import memory_section
from nce.cli._output import atomic_save_figure, check_output_folder, check_outputs
from nce.cli._plot import pyplot
from nce.cli._report_page import (
    Measure,
    SectionResult,
    announce,
    format_number,
    one_thread,
    section_bar,
    summary_table,
    write_report,
)
from nce.cli._table import InputError
from nce.density import NCEDensity


class Section(NamedTuple):
    """One section of the report: its ``--only`` key, its title, the function that runs it, and
    the name of the figure that function writes (checked before any section runs)."""

    key: str
    title: str
    run: Callable[..., SectionResult]
    figure: str


TRUE_MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
TRUE_COVARIANCE = torch.tensor([[1.0, 0.8], [0.8, 1.5]], dtype=torch.float64)


def builtin_gaussian_data(n: int = 2000, seed: int = 0) -> torch.Tensor:
    """The built-in 2-D data set: ``n`` draws of a correlated Gaussian, fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(TRUE_COVARIANCE)
    return TRUE_MEAN + torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T


def fit_gaussian_nce(data, noise_ratio=10, seed=0, progress=True) -> NCEDensity:
    """``NCEDensity`` with a ``GaussianEnergy``, Gaussian noise fitted to the data and one fixed
    noise sample of ν · N points, trained by full-batch L-BFGS on all the data."""
    return NCEDensity(
        "gaussian",
        "gaussian",
        noise_ratio,
        optimizer="lbfgs",
        validation_fraction=0.0,
        progress=progress,
        random_state=seed,
    ).fit(data)



def gaussian_section(out_dir: Path, progress: bool, quick: bool = False) -> SectionResult:
    """Binary NCE with a learned log Z on a correlated 2-D Gaussian (Gutmann & Hyvärinen's
    setting), against the closed-form log-partition of the learned model."""
    n = 1000 if quick else 2000
    with one_thread():
        with section_bar("binary NCE", 1, progress) as bar:
            data = builtin_gaussian_data(n)
            estimator = fit_gaussian_nce(data, progress=False)
            bar.update()
    model = estimator.model_
    learned = float(estimator.log_partition_)
    true = float(model.true_log_partition().item())
    data_log_z = 0.5 * math.log(torch.linalg.det(2 * math.pi * TRUE_COVARIANCE).item())
    difference = abs(learned - true)
    noise_x = estimator.noise_.sample((n,), generator=torch.Generator().manual_seed(1))
    _plot_density(out_dir / "density.png", data, noise_x, model)
    f = format_number
    verdict = "matches" if difference < 0.05 else "misses"
    return announce(
        SectionResult(
            measures=(
                Measure(
                    "learned_log_z", "learned log Z", learned, true, "true_log_z",
                    "closed form of the learned model",
                ),
                Measure("abs_difference", "|learned − closed form|", difference),
                Measure("data_log_z", "log Z of the data-generating Gaussian", data_log_z),
                Measure("final_loss", "final NCE loss", float(estimator.loss_curve_[-1])),
            ),
            figure="density.png",
            note=(
                f"density: an unnormalized 2-D Gaussian fitted by binary NCE with its log Z as a "
                f"parameter (ν = 10, {n} points, L-BFGS)."
            ),
            reading=(
                f"The learned log Z = {f(learned)} {verdict} the closed form of the learned "
                f"model, {f(true)}, to {f(difference)} ({f(100 * difference / abs(true))} %).",
                f"The data-generating Gaussian has log Z = {f(data_log_z)}: the learned model is "
                f"{f(abs(learned - data_log_z))} from it, after {n} points.",
            ),
        )
    )


def _plot_density(path: Path, data, noise_x, model) -> None:
    plt = pyplot("nce demo")
    fig, ax = plt.subplots(figsize=(6, 5))
    lo = torch.minimum(data.min(0).values, noise_x.min(0).values) - 0.5
    hi = torch.maximum(data.max(0).values, noise_x.max(0).values) + 0.5
    xs = torch.linspace(float(lo[0]), float(hi[0]), 200, dtype=data.dtype)
    ys = torch.linspace(float(lo[1]), float(hi[1]), 200, dtype=data.dtype)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        density = model.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).exp()
    ax.scatter(*noise_x.T, s=2, c="tab:gray", alpha=0.3, label="noise (Gaussian fit)")
    ax.scatter(*data.T, s=2, c="tab:blue", alpha=0.5, label="data")
    cs = ax.contour(gx, gy, density.reshape(gx.shape), levels=8, cmap="magma")
    ax.clabel(cs, fontsize=6)
    ax.set_title("NCE-learned normalized density (contours)")
    ax.legend(loc="upper left", markerscale=4)
    atomic_save_figure(fig, path)
    plt.close(fig)


SECTIONS = (
    Section(
        "gaussian", "Binary NCE: learned log Z against the closed form", gaussian_section,
        "density.png",
    ),
    Section(
        "density", "A neural density: log Z checked, anomaly scores", density.demo_section,
        "density_moons.png",
    ),
    Section("lm", "Language model: full softmax against NCE", lm.demo_section, "lm.png"),
    Section(
        "pretrain", "Contrastive pretraining and its probes", pretrain.demo_section,
        "pretrain.png",
    ),
    Section(
        "align", "Image–text alignment and zero-shot accuracy", align.demo_section, "align.png"
    ),
    Section("mi", "Mutual information: the staircase and log N", mi.demo_section, "mi.png"),
    Section(
        "retrieval", "Two-tower retrieval: recall@K against TF-IDF", retrieve.demo_section,
        "retrieval.png",
    ),
    Section(
        "memory", "The memory-efficient loss at a large batch", memory_section, "memory.png"
    ),
)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="folder for the report")
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer epochs (about a minute)"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run, of: {', '.join(s.key for s in SECTIONS)}",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def selected_sections(only: str | None) -> tuple[Section, ...]:
    """The sections ``--only`` names (all when None); an unknown name is refused."""
    if only is None:
        return SECTIONS
    names = [name.strip() for name in only.split(",") if name.strip()]
    known = {s.key for s in SECTIONS}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InputError(
            f"--only: unknown section {', '.join(repr(n) for n in unknown) or repr(only)}; "
            f"the sections are {', '.join(s.key for s in SECTIONS)}"
        )
    return tuple(s for s in SECTIONS if s.key in names)


def run(args) -> int:
    out_dir = Path(args.out)
    check_output_folder(out_dir, "--out")
    sections = selected_sections(args.only)
    names = ("index.html", "summary.json", *(s.figure for s in sections))
    check_outputs({f"--out's {name}": out_dir / name for name in names})
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    results, start = {}, time.perf_counter()
    for section in sections:
        section_start = time.perf_counter()
        result = section.run(out_dir, progress, quick=args.quick)
        if result.figure != section.figure:
            raise RuntimeError(f"section {section.key} drew {result.figure}, not {section.figure}")
        results[section.key] = (section.title, result, time.perf_counter() - section_start)
    meta = {
        "quick": bool(args.quick),
        "seconds": time.perf_counter() - start,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    summary = write_report(results, meta, out_dir)
    print()
    print(summary_table(summary))
    print(f"\nwrote {out_dir / 'index.html'} and {out_dir / 'summary.json'}")
    return 0
