"""``nce density``: fit an unnormalized density to a table by NCE, and score new rows with it.

``nce density fit [DATA] --model mlp|gaussian|ica --noise gaussian --noise-ratio 10 -o model.pt``
fits :class:`nce.NCEDensity` to the numeric columns of a CSV (or .npy) file, or, without DATA, to
a built-in 2-D data set (two moons); ``--waymarks K`` fits it by telescoping ratio estimation
across K bridges between the data and the noise. It prints the learned log Z next to an independent
importance-sampling estimate (noise as proposal), writes the model atomically, and for 2-D data
writes a PNG of the learned density beside the data. ``--noise conditional`` (with
``--noise-scale``) fits by conditional NCE and normalizes the model by importance sampling.

``nce density score model.pt DATA.csv -o scores.csv`` copies the table and adds two columns:
``log_density`` (the normalized log density) and ``ood_score`` (the negative learned log ratio
log q(x) − log p(x): large when a row looks more like noise than like the training data).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
from pathlib import Path

import numpy as np
import torch

from nce._validation import first_line
from nce.cli._args import (
    SEED_MAX,
    float_at_most,
    int_at_most,
    refuse_below,
    refuse_non_positive,
)
from nce.cli._output import atomic_save_figure, atomic_write_bytes, check_outputs
from nce.cli._plot import pyplot
from nce.cli._table import InputError, read_table
from nce.density import MODELS, NOISES, FitMemoryError, NCEDensity
from nce.density._checks import check_varying_columns

BUILTIN = "two moons (built-in, 1000 points)"

# The command's flag for each library option a fit can ask the user to lower.
_FLAGS = {
    "noise_ratio": "--noise-ratio",
    "noise_ratio or batch_size": "--noise-ratio or --batch-size",
    "n_samples": "--is-samples",
}


def builtin_moons(n: int = 1000, seed: int = 0) -> np.ndarray:
    """The built-in 2-D data set: scikit-learn's two moons with Gaussian jitter 0.08."""
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n, noise=0.08, random_state=seed)[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="density_command", required=True, metavar="{fit,score}")
    fit = sub.add_parser(
        "fit",
        help="fit an unnormalized density by NCE; prints the learned log Z",
        description="Fit an unnormalized density by NCE, learning its log Z.",
    )
    fit.add_argument(
        "data", nargs="?", help="CSV or .npy of numbers; without it, the built-in two moons"
    )
    fit.add_argument("--model", choices=tuple(MODELS), default="mlp", help="energy model")
    fit.add_argument("--noise", choices=NOISES, default="gaussian", help="noise distribution")
    fit.add_argument(
        "--noise-ratio", type=float_at_most(1e4), default=10.0, help="noise samples per datum"
    )
    fit.add_argument(
        "--noise-scale",
        type=float_at_most(1e6),
        help="with --noise conditional: the noise's standard deviation in each column, in units "
        "of the column's standard deviation (default: chosen from the data)",
    )
    fit.add_argument(
        "--optimizer",
        choices=("auto", "adam", "lbfgs"),
        default="auto",
        help="auto (the default): L-BFGS for models of at most 500 parameters without a "
        "network, Adam otherwise",
    )
    fit.add_argument(
        "--epochs", type=int_at_most(10**6), default=200, help="most epochs (early stopping)"
    )
    fit.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    fit.add_argument("--batch-size", type=int_at_most(10**7), default=256)
    fit.add_argument(
        "--waymarks",
        type=int_at_most(1000),
        default=None,
        help="telescoping ratio estimation across K bridges between data and noise (default: "
        "one ratio)",
    )
    fit.add_argument("--columns", help="comma-separated column names to use (default: all)")
    fit.add_argument("--seed", type=int_at_most(SEED_MAX), default=0, help="random seed")
    fit.add_argument(
        "--is-samples",
        type=int_at_most(10**8),
        default=100_000,
        help="importance samples for the log Z check",
    )
    fit.add_argument("-o", "--output", default="model.pt", help="model file to write")
    fit.add_argument(
        "--plot",
        help="PNG for 2-D data (default: the output with .png, which must not exist yet: an "
        "existing file is overwritten only when named here)",
    )
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    score = sub.add_parser(
        "score",
        help="add log_density and ood_score columns to a table",
        description="Score the rows of a table with a fitted model.",
    )
    score.add_argument("model", help="a model file written by `nce density fit`")
    score.add_argument("data", help="CSV or .npy with the model's columns")
    score.add_argument("-o", "--output", default="scores.csv", help="CSV to write")


def run(args) -> int:
    if args.density_command == "fit":
        return _fit(args)
    return _score(args)


def _fit(args) -> int:
    output = Path(args.output)
    plot = Path(args.plot) if args.plot else _plot_path(output)
    check_outputs({"-o": output, "--plot": plot}, {"DATA": args.data})
    refuse_below(("--epochs", args.epochs, 1), ("--is-samples", args.is_samples, 2))
    if args.waymarks is not None:
        refuse_below(("--waymarks", args.waymarks, 1))
    if args.noise_scale is not None:
        if args.noise != "conditional":
            raise InputError(
                f"--noise-scale is only used with --noise conditional, not --noise {args.noise}"
            )
        refuse_non_positive(("--noise-scale", args.noise_scale))
    if args.data is None:
        X, columns, source = builtin_moons(), ["x0", "x1"], BUILTIN
    else:
        table = read_table(args.data)
        columns = table.columns
        X = table.values
        if args.columns:
            columns = [c.strip() for c in args.columns.split(",") if c.strip()]
            if len(set(columns)) != len(columns):
                raise InputError(f"--columns {args.columns}: a column is named twice")
            X = table.select(columns, "--columns")
        source = str(table.path)
    if X.shape[0] < 10:
        raise InputError(f"{source}: {X.shape[0]} data row(s); at least 10 are needed")
    if X.shape[1] == 2 and args.plot is None and os.path.lexists(plot):
        raise InputError(
            f"--plot: {plot} exists; name it with --plot to overwrite it, or choose another path"
        )
    try:
        check_varying_columns(torch.as_tensor(X), columns, source)
        estimator = NCEDensity(
            args.model,
            args.noise,
            args.noise_ratio,
            noise_scale=args.noise_scale,
            optimizer=args.optimizer,
            lr=args.lr,
            batch_size=args.batch_size,
            epochs=args.epochs,
            waymarks=args.waymarks,
            progress=not args.no_progress,
            random_state=args.seed,
        )
        estimator.fit(X)
        check = estimator.partition_function(n_samples=args.is_samples, random_state=args.seed)
    except FitMemoryError as err:
        raise InputError(f"{source}: {err.describe(_FLAGS.get(err.option))}") from err
    except (ValueError, TypeError) as err:
        raise InputError(f"{source}: {err}") from err
    except RuntimeError as err:
        raise InputError(f"{source}: the fit failed ({first_line(err)})") from err
    estimator.save(output, metadata={"columns": list(columns), "source": source})
    summary = _summary(estimator, check, X)
    print(
        f"nce density fit: {X.shape[0]} rows x {X.shape[1]} columns from {source}; "
        f"model {args.model}, noise {args.noise}, nu = {args.noise_ratio:g}"
        + ("" if args.waymarks is None else f", {args.waymarks} waymarks")
    )
    _print_summary(summary, estimator)
    print(f"  wrote {output}")
    if X.shape[1] == 2:
        plot_density(plot, X, estimator, columns)
        print(f"  wrote {plot}")
    return 0


def _summary(estimator: NCEDensity, check, X) -> dict:
    learned = estimator.log_partition_
    difference = learned - float(check.log_z)
    stderr = float(check.stderr)
    return {
        "learned_log_z": learned,
        "importance_log_z": float(check.log_z),
        "importance_stderr": stderr,
        "importance_ess": float(check.ess),
        "difference": difference,
        "mean_log_likelihood": float(estimator.score(X)),
        "epochs": estimator.n_iter_,
    }


def _print_summary(summary: dict, estimator: NCEDensity) -> None:
    se = summary["importance_stderr"]
    ratio = abs(summary["difference"]) / se if se > 0 else math.inf
    if estimator.noise == "conditional":
        print(
            f"  log Z = {summary['learned_log_z']:.4f}, importance-sampled after the conditional "
            f"fit (noise scale {estimator.noise_scale_:.4g}, {summary['epochs']} epochs)"
        )
    else:
        print(
            f"  learned log Z = {summary['learned_log_z']:.4f} (after {summary['epochs']} epochs)"
        )
    print(
        f"  importance-sampling check: log Z = {summary['importance_log_z']:.4f} "
        f"± {se:.4f} (noise as proposal, ESS {summary['importance_ess']:.0f}); "
        f"|difference| = {abs(summary['difference']):.4f} ({ratio:.1f} standard errors)"
    )
    print(f"  mean normalized log-likelihood = {summary['mean_log_likelihood']:.4f}")


def plot_density(path: Path, X: np.ndarray, estimator: NCEDensity, columns) -> None:
    """Two panels: the data, and the learned normalized density on a grid around it."""
    plt = pyplot("nce density fit's plot of 2-D data")

    low, high = X.min(0), X.max(0)
    pad = 0.15 * (high - low)
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], 160)
    ys = np.linspace(low[1] - pad[1], high[1] + pad[1], 160)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    density = np.exp(estimator.score_samples(grid)).reshape(gx.shape)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True)
    axes[0].scatter(X[:, 0], X[:, 1], s=3, alpha=0.5)
    axes[0].set_title(f"data ({X.shape[0]} rows)")
    mesh = axes[1].pcolormesh(gx, gy, density, shading="auto", cmap="magma")
    fig.colorbar(mesh, ax=axes[1], label="learned density")
    axes[1].set_title(f"NCE-learned density, log Z = {estimator.log_partition_:.3f}")
    for ax in axes:
        ax.set_xlabel(columns[0])
    axes[0].set_ylabel(columns[1])
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


def _plot_path(output: Path) -> Path:
    """Where the density plot goes beside the model file ``output`` (never ``output`` itself)."""
    plot = output.with_suffix(".png")
    return output.with_name(output.stem + "_density.png") if plot == output else plot


def _default_names(columns: list[str]) -> bool:
    """True for the names a header-less table gets (x0, x1, ...)."""
    return list(columns) == [f"x{j}" for j in range(len(columns))]


def _score(args) -> int:
    check_outputs({"-o": args.output}, {"MODEL": args.model, "DATA": args.data})
    model_path = Path(args.model)
    if not model_path.is_file():
        raise InputError(f"{model_path}: no such file")
    try:
        estimator = NCEDensity.load(model_path)
    except (ValueError, TypeError, KeyError) as err:
        raise InputError(f"{model_path}: cannot load the model ({first_line(err)})") from err
    table = read_table(args.data)
    columns = list(estimator.metadata_.get("columns", []))
    n = estimator.n_features_in_
    named = columns and not _default_names(columns) and not _default_names(table.columns)
    missing = [c for c in columns if c not in table.columns]
    if columns and not missing and table.columns != columns:
        X = table.select(columns, "model columns")
    elif named and missing:
        raise InputError(
            f"{table.path}: no column {', '.join(repr(c) for c in missing)}; the model "
            f"{model_path} was fitted on columns {', '.join(columns)}"
        )
    elif table.values.shape[1] == n:
        X = table.values
    else:
        fitted = f" ({', '.join(columns)})" if columns else ""
        raise InputError(
            f"{table.path}: the table has {table.values.shape[1]} column(s) but the model "
            f"{model_path} was fitted on {n}{fitted}"
        )
    log_density = estimator.score_samples(X)
    # Outside the noise's support (a box) log q = -inf: such a row is as far out as it gets; a
    # row too far out for both densities has a log ratio of -inf, so its score is +inf too.
    ood = -estimator.log_ratio(X)
    ood[np.isneginf(ood)] = np.inf
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*table.columns, "log_density", "ood_score"])
    for row, a, b in zip(table.values, log_density, ood, strict=True):
        writer.writerow([*(_number(v) for v in row), _number(a), _number(b)])
    output = Path(args.output)
    atomic_write_bytes(output, buffer.getvalue().encode())
    print(
        f"nce density score: {len(log_density)} rows of {table.path} scored with {model_path}; "
        f"mean log_density = {float(np.mean(log_density)):.4f}"
    )
    print(f"  wrote {output}")
    return 0


def _number(value: float) -> str:
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def demo_section(out_dir: Path, progress: bool, quick: bool = False):
    """``nce demo``'s density job: an MLP energy on the two moons, its learned log Z checked by
    importance sampling, and its anomaly score (−log p) telling held-out moons from uniform
    points (ROC AUC)."""
    from sklearn.metrics import roc_auc_score

    from nce.cli._report_page import (
        Measure,
        SectionResult,
        announce,
        format_number,
        one_thread,
        section_bar,
    )

    out_dir = Path(out_dir)
    with one_thread():
        with section_bar("neural density", 3, progress) as bar:
            X = builtin_moons()
            # The library's defaults: the fit stops when it has converged (about 200 epochs).
            estimator = NCEDensity("mlp", "gaussian", 10, progress=False, random_state=0).fit(X)
            bar.update()
            check = estimator.partition_function(n_samples=50_000, random_state=0)
            summary = _summary(estimator, check, X)
            bar.update()
            held_out = builtin_moons(500, seed=1)
            rng = np.random.default_rng(1)
            outliers = rng.uniform(X.min(0) - 0.5, X.max(0) + 0.5, size=(500, 2))
            scores = -estimator.score_samples(np.concatenate([held_out, outliers]))
            auc = float(roc_auc_score(np.r_[np.zeros(500), np.ones(500)], scores))
            bar.update()
    path = out_dir / "density_moons.png"
    plot_density(path, X, estimator, ["x0", "x1"])
    f = format_number
    se, difference = summary["importance_stderr"], summary["difference"]
    ratio = abs(difference) / se if se > 0 else math.inf
    within = "within" if ratio <= 3 else "outside"
    return announce(
        SectionResult(
            measures=(
                Measure(
                    "learned_log_z",
                    "learned log Z",
                    summary["learned_log_z"],
                    summary["importance_log_z"],
                    "importance_log_z",
                    "importance-sampled",
                ),
                Measure(
                    "difference",
                    "learned − importance-sampled",
                    difference,
                    se,
                    "importance_stderr",
                    "standard error",
                ),
                Measure("importance_ess", "effective sample size", summary["importance_ess"]),
                Measure("anomaly_auc", "anomaly score ROC AUC", auc, 0.5, "chance_auc", "chance"),
                Measure(
                    "mean_log_likelihood", "mean log-likelihood", summary["mean_log_likelihood"]
                ),
                Measure("epochs", "epochs", int(summary["epochs"])),
            ),
            figure=path.name,
            note=(
                f"density (neural): an MLP energy fitted by NCE to {BUILTIN}, ν = 10, "
                f"default settings ({estimator.n_iter_} epochs, "
                f"{'converged' if estimator.converged_ else 'not converged'}); log Z checked with "
                "50,000 importance samples."
            ),
            reading=(
                f"The learned log Z = {f(summary['learned_log_z'])} is {f(ratio)} standard errors "
                f"from the importance-sampled {f(summary['importance_log_z'])} ± {f(se)}, "
                f"{within} 3 standard errors.",
                f"Its anomaly score −log p ranks uniform points above held-out moons with ROC AUC "
                f"{f(auc)} (chance 0.5).",
            ),
        )
    )


__all__ = ["add_arguments", "builtin_moons", "demo_section", "plot_density", "run"]
