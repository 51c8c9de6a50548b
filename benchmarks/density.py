"""Gutmann & Hyvärinen's NCE experiments, reproduced with ``nce.NCEDensity``.

Two unnormalized models whose maximum likelihood is tractable, so MLE is the reference:

* a 5-dim Gaussian (``GaussianEnergy``: mean and precision; 20 parameters),
* a 4-dim Laplacian ICA model (``ICAEnergy``: demixing matrix B; 16 parameters, compared after
  matching rows up to order and sign, which the likelihood cannot see).

T = 10^4 data points, noise a Gaussian fitted to the data, ν ∈ {1, 2, 5, 10, 25, 100}, a fixed
noise sample (the paper's setting) and the same full-batch L-BFGS for every method, run to
convergence. Per seed, the data change; the true parameters are fixed. Reported:

1. MSE of the parameters (NCE vs MLE), |learned log Z − true log Z| and fit time;
2. the same fits with badly matched noise, on the first 5 seeds and ν ∈ {1, 10, 100}: uniform
   on a wide box (3× the data's range on each side) and a Gaussian 5× too wide (25× the
   covariance);
3. NCE (ν = 10) next to score matching (Hyvärinen 2005) and MLE with an importance-sampled log Z
   (S = 10 T draws of the same noise, the sample size of NCE at ν = 10);
4. one PNG: MSE vs ν on log axes, one line per noise, against the MLE line.

    python benchmarks/density.py              # 20 seeds; prints, updates BENCHMARKS.md and the PNG
    python benchmarks/density.py --seeds 2    # a quick look, prints only
    # the two tasks in two processes, then the report from their raw results:
    python benchmarks/density.py --tasks gaussian --save-rows g.json &
    python benchmarks/density.py --tasks ica --save-rows i.json; wait
    python benchmarks/density.py --from-rows g.json,i.json
    python benchmarks/density.py --tails 20   # ICA: Gaussian noise vs Laplace-tailed noise

One thread: the runs are small and sequential, and a second thread only contends.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.density import NCEDensity  # noqa: E402
from nce.models import GaussianEnergy, ICAEnergy  # noqa: E402
from nce.noise import Box, Gaussian, Noise  # noqa: E402

import _report  # noqa: E402

T = 10_000
NUS = (1, 2, 5, 10, 25, 100)
NOISES = ("gaussian", "wide box", "gaussian 5x")
BAD_NUS = (1, 10, 100)  # ν for the badly matched noises
COMMIT = [None]  # the commit the rows were measured on, when reported from saved rows
DTYPE = torch.float64
PNG = Path(__file__).resolve().parent / "results" / "density_mse.png"
BAD_SEEDS = 5  # seeds for the badly matched noises
SM_SHARPNESS = 5.0  # score matching's smooth |u| ≈ log cosh(a u) / a


# ----------------------------------------------------------------------------- tasks


class GaussianTask:
    name = "Gaussian, D = 5"
    dim = 5

    def __init__(self):
        g = torch.Generator().manual_seed(1234)
        q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=DTYPE))
        self.precision = q @ torch.diag(torch.logspace(-0.5, 0.5, 5, dtype=DTYPE)) @ q.T
        self.mean = torch.randn(5, generator=g, dtype=DTYPE)
        self.covariance = torch.linalg.inv(self.precision)
        self.true_log_z = 2.5 * math.log(2 * math.pi) - 0.5 * float(torch.logdet(self.precision))

    def sample(self, n, g):
        chol = torch.linalg.cholesky(self.covariance)
        return self.mean + torch.randn(n, 5, generator=g, dtype=DTYPE) @ chol.T

    def new_model(self, X):
        model = GaussianEnergy(5).to(DTYPE)  # the standard normal, for every method
        with torch.no_grad():
            model.log_z.copy_(model.true_log_partition())
        return model

    def truth(self):
        iu = torch.triu_indices(5, 5)
        return torch.cat([self.mean, self.precision[iu[0], iu[1]]])

    def estimate(self, model):
        iu = torch.triu_indices(5, 5)
        with torch.no_grad():
            return torch.cat([model.mean, model.precision()[iu[0], iu[1]]])

    def score_matching_loss(self, model, X):
        # f = -1/2 |L^T (x - mu)|^2: grad f = -Λ (x - mu), Laplacian f = -tr Λ.
        precision = model.precision()
        grad = (X - model.mean) @ precision
        return -precision.trace() + 0.5 * grad.square().sum(1).mean()


class ICATask:
    name = "ICA, D = 4"
    dim = 4

    def __init__(self):
        g = torch.Generator().manual_seed(4321)
        while True:
            mixing = torch.randn(4, 4, generator=g, dtype=DTYPE)
            if torch.linalg.cond(mixing) < 10:
                break
        self.mixing = mixing
        self.demixing = torch.linalg.inv(mixing)
        self.true_log_z = 2 * math.log(2) - float(torch.linalg.slogdet(self.demixing)[1])

    def sample(self, n, g):
        u = torch.rand(n, 4, generator=g, dtype=DTYPE) - 0.5
        sources = -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)  # unit-variance Laplace
        return sources @ self.mixing.T

    def new_model(self, X):
        return ICAEnergy(4).to(DTYPE).init_from_data(X)  # the data's whitening matrix

    def truth(self):
        return self.demixing.flatten()

    def estimate(self, model):
        with torch.no_grad():
            b = model.demixing.detach().clone()
        cosine = (b / b.norm(dim=1, keepdim=True)) @ (
            self.demixing / self.demixing.norm(dim=1, keepdim=True)
        ).T
        rows, cols = linear_sum_assignment(-cosine.abs().numpy())
        aligned = torch.empty_like(b)
        for r, c in zip(rows, cols, strict=True):
            aligned[c] = b[r] * torch.sign(cosine[r, c])
        return aligned.flatten()

    def score_matching_loss(self, model, X):
        # f = -sqrt2 sum_i rho(b_i x), rho(u) = log cosh(a u) / a (smooth |u|):
        # J = mean[ sum_i g''(u_i) |b_i|^2 + 1/2 |B^T g'(u)|^2 ], g = -sqrt2 rho.
        b, a = model.demixing, SM_SHARPNESS
        u = X @ b.T
        g1 = -math.sqrt(2) * torch.tanh(a * u)
        g2 = -math.sqrt(2) * a / torch.cosh(a * u).square()
        return (g2 @ b.square().sum(1)).mean() + 0.5 * (g1 @ b).square().sum(1).mean()


# ----------------------------------------------------------------------------- fitting


def lbfgs_minimize(model, loss_fn, tol=1e-10, max_epochs=100):
    """The L-BFGS loop of ``NCEDensity(optimizer="lbfgs")``, for the other objectives."""
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        max_iter=20,
        history_size=20,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    best = math.inf
    for _ in range(max_epochs):
        optimizer.step(closure)
        with torch.no_grad():
            loss = float(loss_fn())
        if not loss < best - tol * (1 + abs(loss)):
            break
        best = loss
    return model


def fit_mle(task, X):
    model = task.new_model(X)
    # Exact normalized log-likelihood: mean f(x) - log Z(θ), log Z in closed form.
    lbfgs_minimize(model, lambda: -(model(X).mean() - model.true_log_partition()))
    with torch.no_grad():
        model.log_z.copy_(model.true_log_partition())
    return model


def fit_score_matching(task, X):
    model = task.new_model(X)
    return lbfgs_minimize(model, lambda: task.score_matching_loss(model, X))


def fit_importance_mle(task, X, noise, g):
    model = task.new_model(X)
    y = noise.sample((10 * T,), generator=g)
    log_q = noise.log_prob(y)

    def loss():
        log_z = torch.logsumexp(model(y) - log_q, 0) - math.log(y.shape[0])
        return -(model(X).mean() - log_z)

    lbfgs_minimize(model, loss)
    with torch.no_grad():
        model.log_z.copy_(torch.logsumexp(model(y) - log_q, 0) - math.log(y.shape[0]))
    return model


class WhitenedLaplace(Noise):
    r"""Noise with the data's mean and covariance and Laplace tails: :math:`x = \mu + L s`, with
    :math:`L L^\top = \Sigma` and :math:`s` i.i.d. unit-variance Laplace."""

    def __init__(self, X):
        super().__init__()
        self.register_buffer("mean", X.mean(0))
        self.register_buffer("chol", torch.linalg.cholesky(torch.cov(X.T)))

    @property
    def event_shape(self):
        return self.mean.shape

    def sample(self, shape=(), generator=None):
        shape = torch.Size((shape,) if isinstance(shape, int) else shape)
        u = torch.rand(shape + self.mean.shape, generator=generator, dtype=self.mean.dtype) - 0.5
        s = -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)
        return self.mean + s @ self.chol.T

    def log_prob(self, x):
        s = torch.linalg.solve_triangular(self.chol, (x - self.mean).mT, upper=False).mT
        log_laplace = -math.sqrt(2) * s.abs() - 0.5 * math.log(2)
        return log_laplace.sum(-1) - self.chol.diagonal().log().sum()


def tails(seeds, log):
    """ICA with the fitted Gaussian noise against Laplace-tailed noise of the same moments."""
    task, lines = ICATask(), []
    rows = []
    for seed in range(seeds):
        X = task.sample(T, torch.Generator().manual_seed(seed))
        rows.append(dict(method="MLE", seed=seed, se=squared_error(task, fit_mle(task, X))))
        for kind, noise in (("gaussian", Gaussian.fit(X)), ("laplace", WhitenedLaplace(X))):
            for nu in (10, 100):
                model = fit_nce(task, X, noise, nu, seed)
                rows.append(dict(method="NCE", noise=kind, nu=nu, seed=seed))
                rows[-1]["se"] = squared_error(task, model)
        log(f"  tails: seed {seed + 1}/{seeds} at {time.strftime('%H:%M:%S')}")
    mle = select(rows, method="MLE")
    lines.append("### ICA: the noise's tails\n")
    lines.append(
        f"Command: `python benchmarks/density.py --tails` — commit `{_report.commit()}` — "
        f"{_report.machine()}. The ICA task above, {seeds} seeds, NCE with the fitted Gaussian "
        "noise against a noise with the same mean and covariance but Laplace tails "
        "(x = μ + L s, L Lᵀ = Σ, s i.i.d. unit-variance Laplace). MSE NCE / MSE MLE with a "
        "paired-bootstrap 95 % interval.\n"
    )
    lines.append("| noise | ν = 10 | ν = 100 |")
    lines.append("|---|---:|---:|")
    for kind in ("gaussian", "laplace"):
        cells = []
        for nu in (10, 100):
            ratio, lo, hi = ratio_ci(select(rows, method="NCE", noise=kind, nu=nu), mle)
            cells.append(f"**{ratio:.3f}** ({lo:.3f}–{hi:.3f})")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def make_noise(kind, X):
    if kind == "gaussian":
        return Gaussian.fit(X)
    if kind == "wide box":
        return Box.fit(X, margin=1.0)
    fitted = Gaussian.fit(X)
    return Gaussian(fitted.mean, 25 * fitted.covariance)


def fit_nce(task, X, noise, nu, seed):
    est = NCEDensity(
        task.new_model(X),
        noise,
        nu,
        optimizer="lbfgs",
        epochs=40,
        validation_fraction=0.0,
        tol=1e-10,
        progress=False,
        random_state=seed,
    )
    return est.fit(X).model_


def timed(fn, *args):
    t0 = time.perf_counter()
    try:
        out = fn(*args)
    except FloatingPointError:
        out = None
    return out, time.perf_counter() - t0


def squared_error(task, model):
    if model is None:
        return math.nan
    return float((task.estimate(model) - task.truth()).square().mean())


def run_task(task, seeds, nus, noises, log, bad_seeds=5, save=None):
    """All seeds with the fitted Gaussian noise first, then the badly matched noises on the first
    ``bad_seeds`` seeds; ``save(rows)`` after every seed."""
    rows = []  # dicts: method, noise, nu, seed, se, log_z_err, log_z_self, time
    for seed in range(seeds):
        X = task.sample(T, torch.Generator().manual_seed(seed))
        model, t = timed(fit_mle, task, X)
        rows.append(dict(method="MLE", seed=seed, se=squared_error(task, model), time=t))
        model, t = timed(fit_score_matching, task, X)
        rows.append(dict(method="SM", seed=seed, se=squared_error(task, model), time=t))
        noise = make_noise("gaussian", X)
        model, t = timed(fit_importance_mle, task, X, noise, torch.Generator().manual_seed(seed))
        rows.append(
            dict(
                method="IS-MLE",
                seed=seed,
                se=squared_error(task, model),
                time=t,
                log_z_err=abs(float(model.log_z.detach()) - task.true_log_z),
            )
        )
        rows += nce_rows(task, X, "gaussian", nus, seed)
        log(f"  {task.name}: seed {seed + 1}/{seeds} done at {time.strftime('%H:%M:%S')}")
        if save:
            save(rows)
    for seed in range(min(bad_seeds, seeds)):
        X = task.sample(T, torch.Generator().manual_seed(seed))
        for kind in noises[1:]:
            rows += nce_rows(task, X, kind, [nu for nu in nus if nu in BAD_NUS], seed)
        log(f"  {task.name}: bad noise, seed {seed + 1}/{bad_seeds} at {time.strftime('%H:%M:%S')}")
        if save:
            save(rows)
    return rows


def nce_rows(task, X, kind, nus, seed):
    noise = make_noise(kind, X)
    rows = []
    for nu in nus:
        model, t = timed(fit_nce, task, X, noise, nu, seed)
        row = dict(
            method="NCE", noise=kind, nu=nu, seed=seed, time=t, se=squared_error(task, model)
        )
        if model is not None:
            with torch.no_grad():
                learned = float(model.log_z)
                row["log_z_err"] = abs(learned - task.true_log_z)
                row["log_z_self"] = abs(learned - float(model.true_log_partition()))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- report


def select(rows, **where):
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def mean_of(rows, key):
    values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
    return statistics.fmean(values) if values else math.nan


def ratio_ci(nce_rows, mle_rows):
    """The MSE ratio and a 95 % interval from a paired bootstrap over seeds."""
    by_seed = {r["seed"]: r["se"] for r in mle_rows}
    pairs = np.array([(r["se"], by_seed[r["seed"]]) for r in nce_rows if math.isfinite(r["se"])])
    if len(pairs) == 0:
        return math.nan, math.nan, math.nan
    ratio = pairs[:, 0].mean() / pairs[:, 1].mean()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(pairs), (2000, len(pairs)))
    boot = pairs[idx, 0].mean(1) / pairs[idx, 1].mean(1)
    return ratio, *np.percentile(boot, [2.5, 97.5])


def fmt(x, digits=3):
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}g}" if abs(x) < 1e-2 else f"{x:.{digits}f}"


def report(results, seeds, nus, noises):
    lines = []
    lines.append("### Gutmann & Hyvärinen reproduction: NCE against maximum likelihood\n")
    lines.append(
        "Command: `python benchmarks/density.py` (its two tasks run as two processes, see the "
        f"script) — commit `{COMMIT[0] or _report.commit()}` — "
        f"{_report.machine()}. T = {T} data points, {seeds} seeds (new data per seed, fixed "
        "true parameters), noise a Gaussian fitted to the data, one fixed noise sample of "
        "ν T points, full-batch L-BFGS (strong Wolfe) run to convergence for every method, "
        "float64, one thread. MSE is the mean squared error per parameter (Gaussian: mean and "
        "upper-triangular precision, 20 numbers; ICA: demixing matrix B, 16 numbers, rows "
        "matched in order and sign), averaged over seeds; the ratio's 95 % interval is a paired "
        "bootstrap over seeds. |Δlog Z| is |learned log Z − true log Z of the data-generating "
        "model|; 'self' is |learned log Z − closed-form log Z of the learned parameters|. "
        "Targets: MSE ratio ≤ 1.15 at ν = 100 and falling with ν; |Δlog Z| ≤ 0.05 at ν ≥ 10.\n"
    )
    for task_name, rows in results.items():
        mle = select(rows, method="MLE")
        lines.append(
            f"\n**{task_name}** — MLE: MSE {fmt(mean_of(mle, 'se'))}, "
            f"median fit time {statistics.median(r['time'] for r in mle):.2f} s\n"
        )
        lines.append(
            "| ν | MSE NCE | MSE NCE / MSE MLE (95 % CI) | mean abs Δlog Z | max abs Δlog Z | "
            "mean abs Δlog Z (self) | median fit time |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|")
        for nu in nus:
            sel = select(rows, method="NCE", noise="gaussian", nu=nu)
            ratio, lo, hi = ratio_ci(sel, mle)
            errs = [r["log_z_err"] for r in sel if "log_z_err" in r]
            lines.append(
                f"| {nu} | {fmt(mean_of(sel, 'se'))} | **{ratio:.3f}** ({lo:.3f}–{hi:.3f}) | "
                f"{mean_of(sel, 'log_z_err'):.4f} | {max(errs):.4f} | "
                f"{mean_of(sel, 'log_z_self'):.4f} | "
                f"{statistics.median(r['time'] for r in sel):.2f} s |"
            )
    lines.append("\n#### Badly matched noise (same data, same ν): MSE NCE / MSE MLE\n")
    bad_seeds = {
        name: len({r["seed"] for r in rows if r.get("noise") not in (None, "gaussian")})
        for name, rows in results.items()
    }
    counts = ", ".join(f"{n} seeds for {name}" for name, n in bad_seeds.items())
    lines.append(
        f"The first seeds only ({counts}; the gaps are large); ratios to MLE on the same seeds.\n"
    )
    bad_nus = [nu for nu in nus if nu in BAD_NUS]
    header = "| task | noise | " + " | ".join(f"ν = {nu}" for nu in bad_nus) + " |"
    lines.append(header)
    lines.append("|---|---|" + "---:|" * len(bad_nus))
    for task_name, rows in results.items():
        mle = select(rows, method="MLE")
        for kind in noises:
            cells = []
            for nu in bad_nus:
                sel = select(rows, method="NCE", noise=kind, nu=nu)
                failed = sum(not math.isfinite(r["se"]) for r in sel)
                ratio = ratio_ci(sel, mle)[0]
                cells.append(fmt(ratio, 3) + (f" ({failed} failed)" if failed else ""))
            lines.append(f"| {task_name} | {kind} | " + " | ".join(cells) + " |")
    lines.append("\n#### NCE next to score matching and MLE with an importance-sampled log Z\n")
    lines.append(
        f"Score matching (Hyvärinen 2005) needs a twice-differentiable model: for ICA it fits "
        f"|u| ≈ log cosh({SM_SHARPNESS:g} u) / {SM_SHARPNESS:g}. IS-MLE maximizes "
        "mean f(x) − log Ẑ with Ẑ from S = 10 T fixed draws of the fitted Gaussian noise (the "
        "sample size of NCE at ν = 10).\n"
    )
    lines.append("| task | method | MSE | MSE / MSE MLE | mean abs Δlog Z | median fit time |")
    lines.append("|---|---|---:|---:|---:|---:|")
    for task_name, rows in results.items():
        mle = select(rows, method="MLE")
        for label, sel in (
            ("MLE (exact log Z)", mle),
            ("NCE, ν = 10", select(rows, method="NCE", noise="gaussian", nu=10)),
            ("score matching", select(rows, method="SM")),
            ("IS-MLE, S = 10 T", select(rows, method="IS-MLE")),
        ):
            ratio = ratio_ci(sel, mle)[0]
            lines.append(
                f"| {task_name} | {label} | {fmt(mean_of(sel, 'se'))} | {ratio:.3f} | "
                f"{fmt(mean_of(sel, 'log_z_err'), 3)} | "
                f"{statistics.median(r['time'] for r in sel):.2f} s |"
            )
    return "\n".join(lines)


def plot(results, nus, noises, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2))
    for ax, (task_name, rows) in zip(np.atleast_1d(axes), results.items(), strict=True):
        for kind, color in zip(noises, ("tab:blue", "tab:orange", "tab:green"), strict=False):
            means, errs = [], []
            kind_nus = nus if kind == "gaussian" else [nu for nu in nus if nu in BAD_NUS]
            for nu in kind_nus:
                se = [r["se"] for r in select(rows, method="NCE", noise=kind, nu=nu)]
                se = [s for s in se if math.isfinite(s)]
                means.append(statistics.fmean(se) if se else math.nan)
                errs.append(statistics.stdev(se) / math.sqrt(len(se)) if len(se) > 1 else 0)
            ax.errorbar(
                kind_nus, means, yerr=errs, marker="o", color=color, label=f"NCE, {kind} noise"
            )
        mle = statistics.fmean(r["se"] for r in select(rows, method="MLE"))
        ax.axhline(mle, color="black", linestyle="--", label="MLE")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ν (noise samples per datum)")
        ax.set_ylabel("MSE of the parameters")
        ax.set_title(f"{task_name}, T = {T}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--nus", default=",".join(map(str, NUS)))
    parser.add_argument("--tasks", default="gaussian,ica")
    parser.add_argument("--save-rows", help="write the raw results of the tasks run to this JSON")
    parser.add_argument("--tails", type=int, metavar="SEEDS", help="only the ICA noise-tail study")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md, any seeds")
    parser.add_argument("--from-rows", help="comma-separated JSONs of --save-rows: report only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.optim.LBFGS([torch.zeros(1, requires_grad=True)])  # first use imports; not timed
    nus = tuple(int(v) for v in args.nus.split(","))
    if args.tails:
        body = tails(args.tails, print)
        print(body)
        if args.tails >= 20:
            _report.write_section("density-tails", body)
        return
    tasks = {"gaussian": GaussianTask, "ica": ICATask}
    results = {}
    t0 = time.perf_counter()
    if args.from_rows:
        for path in args.from_rows.split(","):
            saved = json.loads(Path(path).read_text())
            results.update(saved["results"])
            args.seeds = min(args.seeds, saved["seeds"])
            COMMIT[0] = saved["commit"]
    else:
        commit = _report.commit()

        def save(rows):
            if args.save_rows:
                done = 1 + max(r["seed"] for r in rows if r["method"] == "MLE")
                payload = {"seeds": done, "commit": commit, "results": {task.name: rows}}
                Path(args.save_rows).write_text(json.dumps(payload))

        for key in args.tasks.split(","):
            task = tasks[key]()
            results[task.name] = run_task(task, args.seeds, nus, NOISES, print, BAD_SEEDS, save)
        print(f"total {time.perf_counter() - t0:.0f} s")
        if args.save_rows:
            return
    results = {name: results[name] for name in (GaussianTask.name, ICATask.name) if name in results}
    body = report(results, args.seeds, nus, NOISES)
    print(body)
    full = (args.seeds >= 20 or args.write) and nus == NUS and len(results) == 2
    if full:
        plot(results, nus, NOISES, PNG)
        body += f"\n\n![MSE vs ν](benchmarks/results/{PNG.name})\n"
        _report.write_section("density", body)
        print(f"wrote BENCHMARKS.md and {PNG}")


if __name__ == "__main__":
    main()
