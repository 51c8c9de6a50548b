"""Telescoping ratio estimation of densities (``NCEDensity(waymarks=K)``) where single-ratio NCE
fails: data far from the noise, and the noise's tails.

Three tasks, each with a known true density, so that a fit's held-out mean log-likelihood is
compared with the truth's on the same rows ('truth − held-out', nats per row, 0 is perfect):

* **far Gaussian**: 4-D data N(μ, I) with μ = (10, 0, 0, 0), 10 data standard deviations from
  the noise N(0, 2² I), which is given (not fitted to the data); model ``GaussianEnergy``;
* **narrow Gaussian in a box**: 4-D data N(0, 0.05² I) inside the box noise [−5, 5]⁴ (100
  standard deviations wide); model ``GaussianEnergy``;
* **ICA tails**: the 4-D Laplacian ICA task of ``benchmarks/density.py`` with the default noise
  (a Gaussian fitted to the data, whose tails are too light); model ``ICAEnergy``.

Each task: N = 500 training rows (10 % of them held out for early stopping), 5000 test rows,
ν = 10, every other setting the ``NCEDensity`` default, float64, one thread; single-ratio NCE
(``waymarks=None``) against K = 2, 4 and 8 waymarks (linear mixing). 'log Z error' is the
learned log Z minus the closed-form log Z of the fitted parameters (the normalization error alone).

    python benchmarks/tre_density.py            # 2 seeds; prints and updates BENCHMARKS.md
    python benchmarks/tre_density.py --seeds 1  # a quick look, prints only
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from density import ICATask  # noqa: E402

from nce.density import NCEDensity  # noqa: E402
from nce.models import GaussianEnergy, ICAEnergy  # noqa: E402
from nce.noise import Box, Gaussian  # noqa: E402

import _report  # noqa: E402

DTYPE = torch.float64
N_TEST = 5000
WAYMARKS = (None, 2, 4, 8)


class FarGaussian:
    name = "far Gaussian (10 σ from N(0, 2² I))"

    def __init__(self):
        self.mean = torch.tensor([10.0, 0.0, 0.0, 0.0], dtype=DTYPE)
        self.truth = torch.distributions.MultivariateNormal(self.mean, torch.eye(4, dtype=DTYPE))

    def sample(self, n, g):
        return self.mean + torch.randn(n, 4, generator=g, dtype=DTYPE)

    def log_prob(self, X):
        return self.truth.log_prob(X)

    def model(self):
        return GaussianEnergy(4).to(DTYPE)

    def noise(self, X):
        return Gaussian(torch.zeros(4, dtype=DTYPE), 4 * torch.eye(4, dtype=DTYPE))


class BoxGaussian(FarGaussian):
    name = "narrow Gaussian in a box (N(0, 0.05² I) in [−5, 5]⁴)"

    def __init__(self):
        self.truth = torch.distributions.MultivariateNormal(
            torch.zeros(4, dtype=DTYPE), 0.05**2 * torch.eye(4, dtype=DTYPE)
        )

    def sample(self, n, g):
        return 0.05 * torch.randn(n, 4, generator=g, dtype=DTYPE)

    def noise(self, X):
        return Box(torch.full((4,), -5.0, dtype=DTYPE), torch.full((4,), 5.0, dtype=DTYPE))


class ICATails:
    name = "ICA tails (Laplace sources, fitted Gaussian noise)"

    def __init__(self):
        self.task = ICATask()

    def sample(self, n, g):
        return self.task.sample(n, g)

    def log_prob(self, X):
        return -math.sqrt(2) * (X @ self.task.demixing.T).abs().sum(1) - self.task.true_log_z

    def model(self):
        return ICAEnergy(4).to(DTYPE)

    def noise(self, X):
        return "gaussian"


def fit(task, X, waymarks, seed):
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = NCEDensity(
            task.model(), task.noise(X), 10, waymarks=waymarks, progress=False, random_state=seed
        ).fit(X)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    warned = any("converg" in str(w.message) for w in caught)
    return est, wall, cpu, warned


def run(task, seeds, n_train, rows):
    """Fits every K on ``seeds`` data sets of ``task``; appends to ``rows[(task, K)]``."""
    for seed in range(seeds):
        g = torch.Generator().manual_seed(1000 + seed)
        X, X_test = task.sample(n_train, g), task.sample(N_TEST, g)
        truth = float(task.log_prob(X_test).mean())
        for waymarks in WAYMARKS:
            est, wall, cpu, warned = fit(task, X, waymarks, seed)
            held_out = float(est.score(X_test))
            exact = float(est.model_.true_log_partition().detach())
            row = {
                "gap": truth - held_out,
                "log_z_error": est.log_partition_ - exact,
                "wall": wall,
                "cpu": cpu,
                "epochs": est.n_iter_,
                "converged": est.converged_ and not warned,
            }
            rows.setdefault((task.name, waymarks), []).append(row)
            print(
                f"{task.name[:24]:24s} seed {seed} K={waymarks}: gap {row['gap']:.4f} "
                f"log Z err {row['log_z_error']:+.4f} {wall:.1f} s wall {cpu:.1f} s CPU "
                f"{row['epochs']} epochs",
                flush=True,
            )


def mean_sd(values, digits=3):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def report(tasks, rows, seeds, n_train, load, command):
    lines = [
        "### Telescoping ratio estimation of densities: data far from the noise\n",
        f"Command: `{command}` — commit `{_report.commit()}` — "
        f"{_report.machine()}; machine load (1-minute average) {load[0]:.1f} at the start, "
        f"{load[1]:.1f} at the end, on 2 cores shared with other jobs: wall seconds are "
        "inflated, CPU seconds are the fairer cost. "
        f"N = {n_train} training rows, {N_TEST} test rows, ν = 10, `NCEDensity` defaults "
        "(L-BFGS for these small models, 10 % held out for early stopping), float64; mean ± sd "
        f"over {seeds} seeds (new data and fit). 'truth − held-out': the true density's mean "
        "test log-likelihood minus the fit's (nats/row); 'log Z error': learned log Z minus "
        "the closed-form log Z of the fitted parameters.\n",
    ]
    for task in tasks:
        lines += [
            f"**{task.name}**\n",
            "| waymarks | truth − held-out | log Z error | epochs | converged | wall s | CPU s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for waymarks in WAYMARKS:
            got = rows[(task.name, waymarks)]
            label = "none (single ratio)" if waymarks is None else f"K = {waymarks}"
            lines.append(
                f"| {label} | {mean_sd([r['gap'] for r in got])} | "
                f"{mean_sd([r['log_z_error'] for r in got])} | "
                f"{statistics.median(r['epochs'] for r in got):.0f} | "
                f"{sum(r['converged'] for r in got)}/{len(got)} | "
                f"{statistics.median(r['wall'] for r in got):.1f} | "
                f"{statistics.median(r['cpu'] for r in got):.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--tasks", default="far,ica,box")
    parser.add_argument("--n", type=int, default=500, help="training rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    known = {"far": FarGaussian, "box": BoxGaussian, "ica": ICATails}
    tasks = [known[name]() for name in args.tasks.split(",")]
    command = "python benchmarks/tre_density.py" + "".join(
        f" {flag} {value}"
        for flag, value, default in (
            ("--seeds", args.seeds, 2),
            ("--tasks", args.tasks, "far,ica,box"),
            ("--n", args.n, 500),
        )
        if value != default
    )
    start, rows = _load(), {}
    for done, task in enumerate(tasks, 1):  # the section grows task by task
        run(task, args.seeds, args.n, rows)
        body = report(tasks[:done], rows, args.seeds, args.n, (start, _load()), command)
        print(body, flush=True)
        if args.seeds >= 2:
            _report.write_section("tre-density", body)
            print("wrote BENCHMARKS.md", flush=True)


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return math.nan


if __name__ == "__main__":
    main()
