"""Conditional NCE against NCE: ``NCEDensity(noise="conditional")`` next to the default
``noise="gaussian"``, both with every other option at its default (κ = ν = 10).

Setups (data generators imported from the other density benchmarks, not copied):

* Gutmann & Hyvärinen's two tasks of ``benchmarks/density.py``: a 5-D Gaussian and a 4-D
  Laplacian ICA model, T = 10,000 training and 10,000 held-out rows;
* the made-up correlated Gaussians of ``benchmarks/density_defaults.py`` (D = 2, 4, 10, 20),
  20,000 training and 20,000 held-out rows;
* 64-D digits (scikit-learn's 8×8 images, dequantized by adding U(0, 1) to the integer pixels so
  that no column is constant, standardized with the training rows' moments), 70/30 split, the
  default MLP energy.

Per setup, method and seed (3 seeds: the data or split and the fit change): the held-out mean
log-likelihood after normalization (nats/row; against the truth where it is known), the
log-partition (NCE: learned vs a fresh importance-sampling estimate; CNCE: the estimate made at
the end of the fit vs a fresh one), ``n_iter_``, ``converged_``, and the fit's CPU and wall
seconds. Then a sweep of ``noise_scale`` around the automatic choice (seed 0).

    python benchmarks/cnce.py            # prints, and writes the cnce section of BENCHMARKS.md
    python benchmarks/cnce.py --quick    # one seed, the small setups: prints only

No dependency beyond the project's own (scikit-learn is already needed by
``benchmarks/density_defaults.py``). One thread.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from density import (  # noqa: E402
    GaussianTask,
    ICATask,
    fit_mle,
    fit_nce,
    make_noise,
    ratio_ci,
    squared_error,
    timed,
)
from density_defaults import made_up_gaussian  # noqa: E402

from nce import NCEDensity  # noqa: E402
from nce.models import GaussianEnergy, ICAEnergy  # noqa: E402
from nce.noise import Gaussian  # noqa: E402

import _report  # noqa: E402

SEEDS = (0, 1, 2)
IS_SAMPLES = 100_000
METHODS = {"NCE": "gaussian", "CNCE": "conditional"}
SWEEP = (0.25, 0.5, 1.0, 2.0, 4.0)  # noise_scale as multiples of the automatic choice
MSE_SEEDS = 5


class Setup:
    """Training and held-out rows for one seed, a model factory, the true log density (or None)
    and options of ``NCEDensity`` that differ from the defaults."""

    def __init__(self, name, train, test, model, truth=None, options=None):
        self.name, self.train, self.test, self.model, self.truth = name, train, test, model, truth
        self.options = options or {}


def gh_gaussian(seed: int) -> Setup:
    task = GaussianTask()
    train = task.sample(10_000, torch.Generator().manual_seed(seed))
    test = task.sample(10_000, torch.Generator().manual_seed(10_000 + seed))
    truth = torch.distributions.MultivariateNormal(task.mean, task.covariance).log_prob
    return Setup(task.name + " (G&H)", train, test, lambda: GaussianEnergy(5).double(), truth)


def gh_ica(seed: int) -> Setup:
    task = ICATask()
    train = task.sample(10_000, torch.Generator().manual_seed(seed))
    test = task.sample(10_000, torch.Generator().manual_seed(10_000 + seed))

    def truth(x):
        return -math.sqrt(2) * (x @ task.demixing.T).abs().sum(1) - task.true_log_z

    return Setup(task.name + " (G&H)", train, test, lambda: ICAEnergy(4).double(), truth)


def made_up(dim: int):
    def build(seed: int) -> Setup:
        truth = made_up_gaussian(dim, seed=dim)
        torch.manual_seed(100 * seed + dim)
        train, test = truth.sample((20_000,)), truth.sample((20_000,))
        name = f"made-up Gaussian, D = {dim}"
        return Setup(name, train, test, lambda: GaussianEnergy(dim).double(), truth.log_prob)

    return build


def digits(seed: int) -> Setup:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    pixels = datasets.load_digits().data
    X = pixels + np.random.default_rng(seed).uniform(size=pixels.shape)
    train, test = train_test_split(X, test_size=0.3, random_state=seed)
    mean, std = train.mean(0), train.std(0)
    return Setup("digits, 64-D", (train - mean) / std, (test - mean) / std, lambda: "mlp")


def digits_fixed_budget(seed: int) -> Setup:
    """Digits without early stopping: 60 epochs on all the training rows."""
    setup = digits(seed)
    setup.name = "digits, 64-D, 60 epochs"
    setup.options = {"validation_fraction": 0.0, "epochs": FIXED_EPOCHS, "patience": FIXED_EPOCHS}
    return setup


FIXED_EPOCHS = 60
SETUPS = [
    gh_gaussian,
    gh_ica,
    *(made_up(d) for d in (2, 4, 10, 20)),
    digits,
    digits_fixed_budget,
]


def fit(setup: Setup, noise: str, seed: int, noise_scale=None) -> dict:
    est = NCEDensity(
        setup.model(),
        noise,
        noise_scale=noise_scale,
        progress=False,
        random_state=seed,
        **setup.options,
    )
    cpu, wall = time.process_time(), time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(setup.train)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    test = torch.as_tensor(setup.test)
    log_lik = float(est.score(test))
    check = est.partition_function(n_samples=IS_SAMPLES, random_state=10_000 + seed)
    row = {
        "log_lik": log_lik,
        "log_lik_is": log_lik + float(check.difference),
        "log_z_gap": float(check.difference),
        "stderr": float(check.stderr),
        "n_iter": est.n_iter_,
        "converged": est.converged_,
        "noise_scale": getattr(est, "noise_scale_", None),
        "cpu": cpu,
        "wall": wall,
        "warnings": sorted({type(w.message).__name__ for w in caught}),
    }
    if setup.truth is not None:
        row["truth"] = float(setup.truth(test).mean())
    return row


def gaussian_reference(setup: Setup) -> float:
    """The held-out log-likelihood of the Gaussian fitted to the training rows (its MLE)."""
    train = torch.as_tensor(setup.train, dtype=torch.float64)
    return float(Gaussian.fit(train).log_prob(torch.as_tensor(setup.test)).mean())


def mean_sd(values, digits: int = 3) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def median(values) -> float:
    return statistics.median(list(values))


def main_table(setups, seeds, log) -> tuple[list[str], dict]:
    rows = [
        "| setup | method | held-out log-lik | truth − held-out | with a fresh IS log Z | "
        "log Z: stored − fresh IS | IS stderr | noise_scale_ | n_iter_ | converged_ | CPU s | "
        "wall s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: |",
    ]
    autos = {}
    for build in setups:
        results = {method: [] for method in METHODS}
        for seed in seeds:
            setup = build(seed)
            for method, noise in METHODS.items():
                results[method].append(fit(setup, noise, seed))
                log(f"  {setup.name} {method} seed {seed}: {results[method][-1]}")
        reference = ""
        if setup.truth is None:
            reference = f" (Gaussian MLE {gaussian_reference(setup):.3f}, seed {seeds[-1]})"
        for method, found in results.items():
            gap = "—"
            if "truth" in found[0]:
                gap = mean_sd((r["truth"] - r["log_lik"] for r in found), 4)
            scale = "—"
            if method == "CNCE":
                scale = f"{median(r['noise_scale'] for r in found):.3g}"
                autos[setup.name] = (build, found[0]["noise_scale"])
            rows.append(
                f"| {setup.name}{reference if method == 'NCE' else ''} | {method} | "
                f"{mean_sd(r['log_lik'] for r in found)} | {gap} | "
                f"{mean_sd(r['log_lik_is'] for r in found)} | "
                f"{mean_sd((r['log_z_gap'] for r in found), 4)} | "
                f"{median(r['stderr'] for r in found):.4f} | {scale} | "
                f"{median(r['n_iter'] for r in found):g} | "
                f"{sum(r['converged'] for r in found)}/{len(found)} | "
                f"{median(r['cpu'] for r in found):.1f} | {median(r['wall'] for r in found):.1f} |"
            )
            log(rows[-1])
    return rows, autos


def sweep_table(autos, names, log) -> list[str]:
    head = " | ".join(f"{m:g}× auto" for m in SWEEP)
    rows = [
        f"| setup (seed 0) | auto noise_scale | {head} |",
        "| --- | ---: |" + " ---: |" * len(SWEEP),
    ]
    for name in names:
        build, auto = autos[name]
        setup = build(0)
        cells = []
        for factor in SWEEP:
            found = fit(setup, "conditional", 0, noise_scale=factor * auto)
            truth = f"{found['truth'] - found['log_lik']:.4f}" if "truth" in found else None
            value = truth if truth is not None else f"{found['log_lik']:.3f}"
            cells.append(f"{value} ({found['n_iter']} it, {found['cpu']:.1f} s)")
            log(f"  sweep {name} {factor}: {found}")
        rows.append(f"| {name} | {auto:.3g} | " + " | ".join(cells) + " |")
        log(rows[-1])
    return rows


def mse_table(seeds: int, log) -> list[str]:
    """Gutmann & Hyvärinen's protocol of ``benchmarks/density.py`` (its data seeds, fixed noise,
    L-BFGS to convergence): the parameters' MSE of NCE and CNCE (ν = κ = 10) over MLE's."""
    rows = [
        "| task | MSE MLE | NCE: MSE / MSE MLE (95 % CI) | CNCE: MSE / MSE MLE (95 % CI) | "
        "NCE CPU s | CNCE CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task in (GaussianTask(), ICATask()):
        found = {"MLE": [], "NCE": [], "CNCE": []}
        times = {"NCE": [], "CNCE": []}
        for seed in range(seeds):
            X = task.sample(10_000, torch.Generator().manual_seed(seed))
            found["MLE"].append({"seed": seed, "se": squared_error(task, fit_mle(task, X))})
            for method, noise in (("NCE", make_noise("gaussian", X)), ("CNCE", "conditional")):
                cpu = time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model, _ = timed(fit_nce, task, X, noise, 10, seed)
                times[method].append(time.process_time() - cpu)
                found[method].append({"seed": seed, "se": squared_error(task, model)})
            errors = {method: r[-1]["se"] for method, r in found.items()}
            log(f"  mse {task.name} seed {seed}: {errors}")
        mle = statistics.fmean(r["se"] for r in found["MLE"])
        cells = []
        for method in ("NCE", "CNCE"):
            ratio, low, high = ratio_ci(found[method], found["MLE"])
            cells.append(f"**{ratio:.3f}** ({low:.3f}–{high:.3f})")
        rows.append(
            f"| {task.name} | {mle:.3g} | {cells[0]} | {cells[1]} | "
            f"{median(times['NCE']):.1f} | {median(times['CNCE']):.1f} |"
        )
        log(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, small setups, no write")
    args = parser.parse_args()
    torch.set_num_threads(1)
    setups, seeds = SETUPS, SEEDS
    if args.quick:
        setups, seeds = [gh_gaussian, made_up(4), digits_fixed_budget], (0,)
    commit = _report.commit()
    start = time.perf_counter()
    mse = mse_table(2 if args.quick else MSE_SEEDS, print)
    rows, autos = main_table(setups, seeds, print)
    swept = ("made-up Gaussian, D = 10", "digits, 64-D, 60 epochs")
    sweep_names = [name for name in autos if name in swept]
    sweep = sweep_table(autos, sweep_names or list(autos)[:1], print)
    print(f"total {time.perf_counter() - start:.0f} s wall")
    if args.quick:
        return
    body = "\n".join(
        [
            '## Conditional NCE against NCE (`NCEDensity(noise="conditional")`)',
            "",
            f"Command: `python benchmarks/cnce.py` — commit `{commit}` — {_report.machine()}; "
            "the machine was shared with other jobs, so wall seconds are inflated and CPU "
            "seconds (this process) are the comparable time. Every option at its default "
            '(κ = ν = 10, optimizer "auto", early stopping on 10 % held out), 3 seeds (data or '
            "split, and fit). Held-out log-likelihood in nats/row, mean ± sd over seeds, with "
            "the estimator's own log Z (NCE: learned; CNCE: importance-sampled at the end of the "
            f"fit) and with a fresh importance-sampling estimate ({IS_SAMPLES:,} draws of the "
            "Gaussian fitted to the data, another seed); 'truth − held-out' where the true "
            "density is known. Digits: 8×8 pixels + U(0, 1) (dequantized), standardized with "
            "the training rows, 70/30 split; the NCE row names the held-out log-likelihood of "
            "the Gaussian fitted to the training rows for scale. The second digits setup trains "
            f"for {FIXED_EPOCHS} epochs on all training rows without early stopping (so "
            "converged_ is False by design). Times are medians.",
            "",
            *rows,
            "",
            "**Parameter error in Gutmann & Hyvärinen's protocol** (the reproduction above: its "
            f"data seeds 0–{MSE_SEEDS - 1}, T = 10,000, a fixed noise sample, full-batch L-BFGS "
            "to convergence, tol 1e-10; CNCE with the automatic noise scale): mean squared error "
            "of the parameters over MLE's, paired-bootstrap 95 % interval; median CPU seconds.",
            "",
            *mse,
            "",
            "**The automatic noise scale, measured.** CNCE refitted with `noise_scale` at "
            "multiples of the automatic choice (seed 0): truth − held-out log-likelihood (or the "
            "held-out log-likelihood on digits), epochs and CPU seconds.",
            "",
            *sweep,
        ]
    )
    _report.write_section("cnce", body)
    print("wrote the cnce section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
