"""``nce demo``: the library's main jobs on built-in data, each printing what it learned.

Density estimation: an unnormalized 2-D Gaussian fitted by binary NCE (:class:`nce.NCEDensity`)
with a learned log Z, noise a Gaussian fitted to the data (Gutmann & Hyvärinen's setting). Prints
the learned log Z next to the true log-partition of the learned model and writes ``density.png``
(data, noise, learned density).
Then one short job per capability: an MLP energy on two moons (``nce density``), SimCLR on digits
(``nce pretrain``), an NCE language model on the King James Bible (``nce lm``) and an InfoNCE
mutual-information estimate of known truth (``nce mi``).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch

from nce.cli._output import (
    atomic_save_figure,
    atomic_write_json,
    check_output_folder,
    check_outputs,
)
from nce.density import NCEDensity

# Each further job: (key in demo.json, command module providing ``demo_section(out, progress)``).
SECTIONS = (
    ("density_mlp", "density"),
    ("contrastive", "pretrain"),
    ("language_model", "lm"),
    ("mutual_information", "mi"),
)

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


def run_density(out: Path, progress: bool = True) -> dict:
    data = builtin_gaussian_data()
    estimator = fit_gaussian_nce(data, progress=progress)
    model = estimator.model_
    learned = estimator.log_partition_
    true = model.true_log_partition().item()
    data_log_z = 0.5 * math.log(torch.linalg.det(2 * math.pi * TRUE_COVARIANCE).item())
    print("density: unnormalized 2-D Gaussian fitted by binary NCE (nu = 10, 2000 points)")
    print(
        f"  learned log Z = {learned:.4f}   true log Z of the learned model = {true:.4f}   "
        f"|difference| = {abs(learned - true):.4f}"
    )
    print(f"  (log Z of the data-generating Gaussian = {data_log_z:.4f})")
    noise_x = estimator.noise_.sample((2000,), generator=torch.Generator().manual_seed(1))
    _plot_density(out / "density.png", data, noise_x, model)
    print(f"  wrote {out / 'density.png'}")
    return {
        "learned_log_z": learned,
        "true_log_z": true,
        "data_log_z": data_log_z,
        "final_loss": estimator.loss_curve_[-1],
    }


def _plot_density(path: Path, data, noise_x, model) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    lo = torch.minimum(data.min(0).values, noise_x.min(0).values) - 0.5
    hi = torch.maximum(data.max(0).values, noise_x.max(0).values) + 0.5
    xs = torch.linspace(float(lo[0]), float(hi[0]), 200, dtype=data.dtype)
    ys = torch.linspace(float(lo[1]), float(hi[1]), 200, dtype=data.dtype)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        density = model.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).exp()
    ax.scatter(*noise_x[:2000].T, s=2, c="tab:gray", alpha=0.3, label="noise (Gaussian fit)")
    ax.scatter(*data.T, s=2, c="tab:blue", alpha=0.5, label="data")
    cs = ax.contour(gx, gy, density.reshape(gx.shape), levels=8, cmap="magma")
    ax.clabel(cs, fontsize=6)
    ax.set_title("NCE-learned normalized density (contours)")
    ax.legend(loc="upper left", markerscale=4)
    atomic_save_figure(fig, path)
    plt.close(fig)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="folder for the PNG and JSON outputs")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args) -> int:
    out_dir = Path(args.out)
    check_output_folder(out_dir, "--out")
    written = ("density.png", "density_moons.png", "encoder.pt", "demo.json")
    check_outputs({f"--out's {name}": out_dir / name for name in written})
    progress = not args.no_progress
    results = {"density": run_density(out_dir, progress)}
    for key, command in SECTIONS:
        print()
        module = importlib.import_module(f"nce.cli.{command}")
        results[key] = module.demo_section(out_dir, progress)
    atomic_write_json(out_dir / "demo.json", results)
    print(f"wrote {out_dir / 'demo.json'}")
    return 0
