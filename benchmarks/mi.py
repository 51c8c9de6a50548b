"""Mutual information estimators against known truth: the Poole et al. staircase and fixed tasks.

1. Staircase (Poole et al., 2019, arXiv:1905.06922, Fig. 2): X, Y 20-D correlated Gaussians whose
   true MI steps through 2, 4, 6, 8, 10 nats; a separable critic is trained on fresh batches of
   64 pairs by each estimator's objective, and the batch estimate is recorded at every step. The
   cubic variant feeds the critic y³ instead of y (same MI). InfoNCE can never pass log 64.
2. Fixed tasks with known MI, ``nce.mi.estimate_mi`` at its defaults on N = 5000 rows: bias,
   standard deviation over seeds and wall time per estimate, next to scikit-learn's
   ``mutual_info_regression`` (Kraskov's nearest neighbours, k = 3) on 1-D pairs.
   The Gaussian tasks also show the InfoNCE bound of the exact optimal critic on as many rows as
   the held-out block (what a perfect critic would score), and InfoNCE at N = 50 000 rows.
3. The ``capped`` flag on tasks whose truth exceeds log M (M the held-out evaluation block).
4. Telescoping ratio estimation (``estimator="tre"``) up the staircase and beyond it: 20 + 20-D
   correlated Gaussians with I = 2 … 40 nats on N rows, where InfoNCE cannot exceed log N, next to
   the trained bounds' staircase levels; and TRE on the fixed Gaussian tasks at N = 5000.

    python benchmarks/mi.py           # about 25 min on 2 cores; writes BENCHMARKS.md and the PNGs
    python benchmarks/mi.py --tre     # part 4 only (about 10 min): its own section and PNG
    python benchmarks/mi.py --tre-peers   # InfoNCE, NWJ, MINE at part 4's targets (I = 10-40)
    python benchmarks/mi.py --quick   # a smoke run, prints only

Every worker runs one intra-op thread: the networks are small, and on a shared 2-core machine
two threads per process only wait for each other.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.mi import (  # noqa: E402
    SeparableCritic,
    estimate_mi,
    info_nce_bound,
)
from nce.mi.estimators import get_estimator  # noqa: E402
from nce.mi.train import mine_average  # noqa: E402
from nce.mi.tre import QuadraticHeads, default_waymarks  # noqa: E402

import _report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ESTIMATORS = ("infonce", "nwj", "mine", "smile", "js")
LABELS = {
    "infonce": "InfoNCE",
    "nwj": "NWJ",
    "mine": "MINE",
    "smile": "SMILE (τ = 5)",
    "js": "JS → NWJ",
}
STAIRS = (2.0, 4.0, 6.0, 8.0, 10.0)
STAIR_DIM, STAIR_BATCH = 20, 64


def rho_for(mi: float, d: int) -> float:
    """Per-coordinate correlation giving I(X; Y) = mi nats for d independent coordinate pairs."""
    return math.sqrt(1 - math.exp(-2 * mi / d))


def gaussian_pairs(n, d, mi, rng):
    rho = rho_for(mi, d)
    x = rng.standard_normal((n, d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


# 1. Staircase -------------------------------------------------------------------------------


def staircase(args):
    variant, steps_per_level, seed, *rest = args
    stairs = rest[0] if rest else STAIRS
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for estimator in ESTIMATORS:
        record = get_estimator(estimator)
        critic = SeparableCritic(STAIR_DIM, STAIR_DIM)
        optimizer = torch.optim.Adam(critic.parameters(), lr=5e-4)
        average, trace = None, []
        start = time.perf_counter()
        for mi in stairs:
            rho = rho_for(mi, STAIR_DIM)
            for _ in range(steps_per_level):
                x = torch.randn(STAIR_BATCH, STAIR_DIM, generator=g)
                y = rho * x + math.sqrt(1 - rho**2) * torch.randn(
                    STAIR_BATCH, STAIR_DIM, generator=g
                )
                if variant == "cubic":
                    y = y**3
                scores = critic(x, y)
                if not bool(torch.isfinite(scores).all()):
                    trace.append(math.nan)
                    continue
                if record.moving_average:
                    average = mine_average(scores, average)
                bound = record.training_objective(scores, 5.0, average)
                trace.append(float(bound.detach()))
                if not math.isfinite(trace[-1]):
                    continue
                optimizer.zero_grad(set_to_none=True)
                (-bound).backward()
                optimizer.step()
        out[estimator] = (np.asarray(trace), time.perf_counter() - start)
    return variant, out


def ema(values, alpha=0.99):
    out, acc = np.empty_like(values), None
    for i, v in enumerate(values):
        v = v if np.isfinite(v) else (acc if acc is not None else 0.0)
        acc = v if acc is None else alpha * acc + (1 - alpha) * v
        out[i] = acc
    return out


def plot_staircase(results, steps_per_level, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nce.cli._output import atomic_save_figure

    variants = ("gaussian", "cubic")
    fig, axes = plt.subplots(2, len(ESTIMATORS), figsize=(4 * len(ESTIMATORS), 6.4), sharey=True)
    truth = np.repeat(STAIRS, steps_per_level)
    for r, variant in enumerate(variants):
        for c, estimator in enumerate(ESTIMATORS):
            ax = axes[r, c]
            trace = results[variant][estimator][0]
            ax.plot(np.clip(trace, -2, 14), color="tab:blue", alpha=0.25, lw=0.5)
            ax.plot(ema(trace), color="tab:blue", lw=1.5, label="estimate (EMA)")
            ax.plot(truth, color="black", lw=1.2, label="true MI")
            ax.axhline(math.log(STAIR_BATCH), color="tab:red", ls="--", lw=1, label="log 64")
            ax.set_ylim(-1, 12)
            ax.set_title(f"{LABELS[estimator]} — {variant}", fontsize=10)
            if c == 0:
                ax.set_ylabel("MI (nats)")
            if r == 1:
                ax.set_xlabel("training step")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(
        f"Staircase (Poole et al. 2019): d = {STAIR_DIM}, batch {STAIR_BATCH}, separable critic, "
        f"{steps_per_level} steps per level",
        fontsize=11,
    )
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


# 2. Fixed tasks ------------------------------------------------------------------------------


def student_t_pair(n, rho, nu, rng):
    """Bivariate Student-t (correlation rho, nu degrees of freedom): a Gaussian over a shared
    chi-square scale, so the coordinates are dependent even for rho = 0."""
    z = rng.standard_normal((n, 2)) @ np.linalg.cholesky([[1, rho], [rho, 1]]).T
    w = np.sqrt(rng.chisquare(nu, size=(n, 1)) / nu)
    t = z / w
    return t[:, :1], t[:, 1:]


def student_t_mi(rho, nu, samples=2_000_000, seed=123):
    """E[log p(x, y) − log p(x) − log p(y)] by Monte Carlo with the exact densities."""
    from scipy import stats

    x, y = student_t_pair(samples, rho, nu, np.random.default_rng(seed))
    xy = np.c_[x, y]
    joint = stats.multivariate_t(loc=[0, 0], shape=[[1, rho], [rho, 1]], df=nu).logpdf(xy)
    terms = joint - stats.t(nu).logpdf(x[:, 0]) - stats.t(nu).logpdf(y[:, 0])
    return float(terms.mean()), float(terms.std() / math.sqrt(samples))


def nonlinear_pairs(n, mi, rng):
    """2-D Gaussian pair with MI ``mi``, then x ↦ x³ and y ↦ (y₁, y₂ + y₁²) (MI unchanged)."""
    x, y = gaussian_pairs(n, 2, mi, rng)
    return x**3, np.c_[y[:, 0], y[:, 1] + y[:, 0] ** 2]


T_RHO, T_NU = 0.5, 3


def make_task(name, n, seed, truth_cache):
    rng = np.random.default_rng(seed)
    if name.startswith("gauss"):
        _, d, mi = name.split(":")
        x, y = gaussian_pairs(n, int(d), float(mi), rng)
        return x, y
    if name == "student-t":
        return student_t_pair(n, T_RHO, T_NU, rng)
    return nonlinear_pairs(n, 1.0, rng)


TASKS = {
    "gauss:1:0.5": "Gaussian, 1-D, I = 0.5",
    "gauss:1:2": "Gaussian, 1-D, I = 2",
    "gauss:5:2": "Gaussian, 5-D, I = 2",
    "gauss:20:2": "Gaussian, 20-D, I = 2",
    "gauss:50:2": "Gaussian, 50-D, I = 2",
    "gauss:5:5": "Gaussian, 5-D, I = 5",
    "student-t": f"Student-t pair, 1-D, ν = {T_NU}, ρ = {T_RHO}",
    "nonlinear": "x³, (y₁, y₂ + y₁²) of a 2-D Gaussian, I = 1",
}


def true_mi(name, t_truth):
    if name.startswith("gauss"):
        return float(name.split(":")[2])
    if name == "student-t":
        return t_truth
    return 1.0


def exact_critic_infonce(name, n_rows, seed):
    """InfoNCE of the optimal critic log p(y|x)/p(y) on n_rows fresh pairs of a Gaussian task."""
    _, d, mi = name.split(":")
    d, mi = int(d), float(mi)
    rho = rho_for(mi, d)
    x, y = (torch.from_numpy(a) for a in gaussian_pairs(n_rows, d, mi, np.random.default_rng(seed)))
    var = 1 - rho**2
    log_cond = -torch.cdist(rho * x, y).square() / (2 * var) - 0.5 * d * math.log(var)
    scores = log_cond + 0.5 * y.square().sum(1)  # minus log p(y_j), constants dropped
    return float(info_nce_bound(scores))


def table_run(args):
    name, estimator, n, seed = args
    x, y = make_task(name, n, seed, None)
    start = time.perf_counter()
    if estimator == "ksg":
        from sklearn.feature_selection import mutual_info_regression

        value = float(mutual_info_regression(x, y[:, 0], n_neighbors=3, random_state=seed)[0])
        return (
            name,
            estimator,
            n,
            seed,
            value,
            math.nan,
            math.nan,
            False,
            time.perf_counter() - start,
            math.nan,
        )
    # "infonce_k32": the default estimator with the fixed 32-D embedding of earlier versions
    kw = {"estimator": "infonce", "embed_dim": 32} if estimator == "infonce_k32" else {}
    est = estimate_mi(x, y, **({"estimator": estimator} | kw), random_state=seed, progress=False)
    return (
        name,
        estimator,
        n,
        seed,
        est.value,
        est.stderr,
        est.log_n_cap,
        est.capped,
        time.perf_counter() - start,
        est.log_batch_cap,
    )


def init_worker():
    torch.set_num_threads(1)


# 4. Telescoping ratio estimation -------------------------------------------------------------

TRE_LEVELS = (2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0)
TRE_TARGETS = (10.0, 20.0, 40.0)
TRE_ROWS = 50_000
TRE_FIXED = ("gauss:5:5", "gauss:20:2", "gauss:50:2")
TRE_ZERO_START = 10.0


def tre_run(args):
    """One TRE estimate at its defaults: (task, truth, N, K, value, stderr, seconds, converged,
    kept L-BFGS iteration, last iteration, held-out estimate at the last iteration)."""
    name, n, seed, *zero = args
    x, y = make_task(name, n, seed, None)
    # "zero": quadratic heads passed as a module start at 0, so the estimate is the logistic
    # (NCE) fit alone, measured every 50 iterations
    kw = {}
    if zero:
        k = default_waymarks(*(torch.as_tensor(a) for a in (x, y)))
        kw = dict(waymarks=k, critic=QuadraticHeads(x.shape[1] + y.shape[1], k), eval_every=50)
    start = time.perf_counter()
    est = estimate_mi(x, y, estimator="tre", random_state=seed, progress=False, **kw)
    seconds = time.perf_counter() - start
    truth = true_mi(name, None)
    return (
        name, truth, n, est.waymarks, est.value, est.stderr, seconds, est.converged,
        est.best_step, int(est.steps[-1]), float(est.valid_curve[-1]),
    )  # fmt: skip


def quadratic_parameters(features):
    """Free parameters of one quadratic head on ``features`` columns: symmetric W, b and c."""
    return features * (features + 1) // 2 + features + 1


def plot_tre(rows, stairs_table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nce.cli._output import atomic_save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    levels = np.arange(len(TRE_LEVELS))
    ax.step(levels, TRE_LEVELS, where="mid", color="black", lw=1.4, label="true MI")
    values = np.array([r[4] for r in rows])
    errors = np.array([2 * r[5] for r in rows])
    ax.errorbar(levels, values, yerr=errors, fmt="o", color="tab:green", ms=6, capsize=3,
                label=f"TRE (N = {TRE_ROWS:,}, quadratic heads)")  # fmt: skip
    for estimator, marker in (("infonce", "s"), ("nwj", "v"), ("mine", "^")):
        ax.plot(levels, stairs_table[estimator], marker, color="tab:blue", alpha=0.6,
                label=f"{LABELS[estimator]}, staircase (batch 64)")  # fmt: skip
    ax.axhline(math.log(TRE_ROWS), color="tab:red", ls="--", lw=1,
               label=f"log N = {math.log(TRE_ROWS):.1f} (InfoNCE on all N rows)")  # fmt: skip
    ax.set_ylim(-2, 1.2 * max(TRE_LEVELS))
    ax.set_xticks(levels, [f"{v:g}" for v in TRE_LEVELS])
    ax.set_xlabel("true MI (nats), 20 + 20-D correlated Gaussians")
    ax.set_ylabel("estimate (nats)")
    ax.set_title("Telescoping ratio estimation up the staircase and beyond", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


def staircase_levels(trace, levels, steps_per_level):
    """Mean batch estimate over the last fifth of each level of a staircase trace; a level whose
    estimates are all non-finite (the critic diverged) is NaN."""
    last = max(1, steps_per_level // 5)
    out = []
    for level in np.asarray(trace).reshape(levels, steps_per_level)[:, -last:]:
        finite = level[np.isfinite(level)]
        out.append(float(finite.mean()) if len(finite) else math.nan)
    return out


def tre_section(workers, quick=False):
    """Part 4: TRE up the staircase and beyond, next to the bounds' staircase over the same
    levels; writes the BENCHMARKS.md section 'mi-tre' and its PNG."""
    levels = TRE_LEVELS[:2] if quick else TRE_LEVELS
    rows_n = 5000 if quick else TRE_ROWS
    steps_per_level = 60 if quick else 400
    jobs = [(f"gauss:{STAIR_DIM}:{mi:g}", rows_n, 0) for mi in levels][::-1]
    fixed = [] if quick else [(name, 5000, 0) for name in TRE_FIXED]
    zero = [] if quick else [(f"gauss:{STAIR_DIM}:{TRE_ZERO_START:g}", rows_n, 0, "zero")]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(workers, initializer=init_worker) as pool:
        stairs_async = pool.map_async(staircase, [("gaussian", steps_per_level, 0, levels)])
        results = []
        for row in pool.imap(tre_run, zero + jobs + fixed):
            print(row, flush=True)
            results.append(row)
        stairs = dict(stairs_async.get())["gaussian"]
    total = time.perf_counter() - start
    print(f"total {total:.0f} s")
    zero_rows = results[: len(zero)]
    results = results[len(zero) :]
    by_level = {r[1]: r for r in results[: len(jobs)]}
    ladder = [by_level[mi] for mi in levels]
    stair_rows = []
    for _name, truth, n, k, value, stderr, seconds, _conv, kept, last, at_last in ladder:
        error = (value - truth) / truth
        stair_rows.append(
            f"| {truth:g} | {n:,} | {k} | {value:.2f} ± {stderr:.2f} | {100 * error:+.1f} % | "
            f"{kept} | {at_last:.2f} ({100 * (at_last - truth) / truth:+.1f} %) at {last} | "
            f"{math.log(n):.2f} | {seconds:.0f} s |"
        )
    fixed_rows = [
        f"| {TASKS[name]} | {truth:g} | {n} | {k} | {value:.3f} ± {stderr:.3f} | "
        f"{value - truth:+.3f} | {kept} | {at_last:.3f} at {last} | {seconds:.1f} s |"
        for name, truth, n, k, value, stderr, seconds, _c, kept, last, at_last in results[
            len(jobs) :
        ]
    ]
    kept_start = sum(r[8] == 0 for r in ladder)
    zero_text = "; ".join(
        f"at I = {r[1]:g} (K = {r[3]}) the heads started at zero reach {r[4]:.2f} ± {r[5]:.2f} "
        f"({100 * (r[4] - r[1]) / r[1]:+.1f} %) after {r[8]} L-BFGS iterations, in {r[6]:.0f} s"
        for r in zero_rows
    )
    zero_ok = all(abs(r[4] - r[1]) <= 0.1 * r[1] for r in zero_rows)
    zero_verdict = "within 10 % of the truth" if zero_ok else "not within 10 % of the truth"
    drift = [100 * (r[10] - r[1]) / r[1] for r in ladder]
    targets = [r for r in ladder if r[1] in TRE_TARGETS]
    met = all(abs(r[4] - r[1]) <= 0.1 * r[1] for r in targets)
    target_text = "; ".join(f"I = {r[1]:g}: {100 * (r[4] - r[1]) / r[1]:+.1f} %" for r in targets)
    print(target_text)
    print("\n".join(stair_rows + fixed_rows))
    reached = {e: staircase_levels(stairs[e][0], len(levels), steps_per_level) for e in ESTIMATORS}
    peer_rows = [
        f"| {LABELS[e]} | " + " | ".join(fmt(v, 2) for v in reached[e]) + " |" for e in ESTIMATORS
    ]
    print("\n".join(peer_rows))
    if quick:
        return
    png = RESULTS / "mi_tre_staircase.png"
    plot_tre(ladder, reached, png)
    body = f"""### Mutual information: telescoping ratio estimation (`estimator="tre"`)

Command: `python benchmarks/mi.py --tre` — commit `{_report.commit()}` — {_report.machine()};
{workers} worker processes with one thread each, {total / 60:.0f} min in all.

`estimate_mi(x, y, estimator="tre")` at its defaults: linear-mixing waymarks spaced so that each
bridge removes an equal share of the data's Gaussian information, one bridge per 2 nats of it
(K = ⌈I_G / 2⌉, 2 ≤ K ≤ 32), quadratic bridge heads trained jointly by full-batch L-BFGS, the
telescoped log-ratio averaged over the 30 % held-out joint rows (± its standard error). Data:
20 + 20-D correlated Gaussians, I = −(d/2) log(1 − ρ²) exactly, rank-standardized as always.

**Target**: within 10 % of the truth at I = 10, 20 and 40 nats with N ≤ 100,000:
**{"met" if met else "not met"}** — {target_text}. InfoNCE's estimate cannot exceed log N =
{math.log(rows_n):.2f} on these rows (`estimate_mi`'s held-out InfoNCE not even log 4096 =
{math.log(4096):.2f}).

**Which estimate this is.** Early stopping kept the Gaussian start of the quadratic heads (each
head the log-ratio of Gaussians fitted to its two waymarks) at {kept_start} of {len(ladder)}
levels: on Gaussian data no L-BFGS step of the logistic (NCE) loss lowered the held-out loss.
Run on past that point, the logistic refinement drifts up by {min(drift):+.1f} to
{max(drift):+.1f} % (the last column of the table), the over-fitting of
{quadratic_parameters(2 * STAIR_DIM)} parameters per head learned from {round(0.7 * rows_n):,} rows.
Started at zero instead, the logistic fit alone: {zero_text} ({zero_verdict}).

The trained bounds on the same staircase extended to 40 nats (part 1's setting: batch 64,
separable critic, {steps_per_level} steps per level; mean batch estimate over the last
{max(1, steps_per_level // 5)} steps of each level, "—" where every estimate overflowed):

| estimator | {" | ".join(f"I = {v:g}" for v in levels)} |
|---|{"---:|" * len(levels)}
{chr(10).join(peer_rows)}

![TRE staircase](benchmarks/results/mi_tre_staircase.png)

"kept" is the L-BFGS iteration whose held-out bridge loss was lowest (0: the Gaussian start of
the quadratic heads); the next column is the held-out estimate at the last iteration run, the
logistic (NCE) refinement past the point where early stopping would keep it.

| true MI | N | K | TRE ± se | error | kept | estimate at the last iteration | log N | time |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(stair_rows)}

TRE on the fixed Gaussian tasks of the table above (N = 5000, seed 0; compare the bounds' bias
there). With 3500 training rows the logistic refinement over-fits badly in 50-D
({quadratic_parameters(100)} parameters per head) and early stopping is what keeps the estimate
right:

| task | true MI | N | K | TRE ± se | bias | kept | estimate at the last iteration | time |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(fixed_rows)}
"""
    _report.write_section("mi-tre", body)
    print("wrote BENCHMARKS.md section 'mi-tre' and", png)


def tre_peers(workers):
    """The bounds of ``estimate_mi`` (InfoNCE, NWJ, MINE at their defaults) on the rows of part
    4's targets (20 + 20-D Gaussians, I = 10, 20, 40, N = TRE_ROWS, seed 0), the numbers TRE is
    compared with; writes the BENCHMARKS.md section 'mi-tre-peers'."""
    jobs = [
        (f"gauss:{STAIR_DIM}:{mi:g}", estimator, TRE_ROWS, 0)
        for mi in TRE_TARGETS
        for estimator in ("infonce", "nwj", "mine")
    ]
    commit = _report.commit()  # the code the workers import, before any later edit
    start = time.perf_counter()
    cpu_start = time.process_time()
    with mp.get_context("spawn").Pool(workers, initializer=init_worker) as pool:
        rows = []
        for row in pool.imap(table_run_cpu, jobs):
            print(row, flush=True)
            rows.append(row)
    total = time.perf_counter() - start
    lines = []
    for name, estimator, n, _seed, value, stderr, cap, capped, seconds, cpu, best in rows:
        truth = true_mi(name, None)
        lines.append(
            f"| {truth:g} | {n:,} | {LABELS[estimator]} | {value:.4g} ± {stderr:.2g} | "
            f"{100 * (value - truth) / truth:+.3g} % | {cap:.2f} | {capped} | {best} | "
            f"{cpu:.0f} / {seconds:.0f} s |"
        )
    body = f"""### Mutual information: the bounds beside TRE at 10, 20 and 40 nats

Command: `python benchmarks/mi.py --tre-peers` — commit `{commit}` —
{_report.machine()}; {workers} worker process(es) with one thread, {total / 60:.0f} min in all
on a shared 2-core machine under a load average of 10–20 (CPU and wall seconds per estimate
below; this process: {time.process_time() - cpu_start:.0f} CPU s).

`estimate_mi(x, y, estimator=...)` at its defaults (the Gaussian-start critic) on the rows of the
TRE table above (20 + 20-D correlated Gaussians, N = {TRE_ROWS:,}, seed 0). The critic starts at
the Gaussian log-ratio of the data's canonical pairs, close to the true one here, so what limits
each bound is the bound itself: InfoNCE cannot pass log M (M the held-out block, "log M"), and
NWJ and DV/MINE average e^f over product pairs, whose variance grows like e^I. "kept" is the
training step of the critic early stopping kept (0: the Gaussian start).

| true MI | N | estimator | estimate ± se | error | log M | capped | kept | CPU / wall |
|---:|---:|---|---:|---:|---:|---|---:|---:|
{chr(10).join(lines)}
"""
    _report.write_section("mi-tre-peers", body)
    print("wrote BENCHMARKS.md section 'mi-tre-peers'")


def table_run_cpu(args):
    """``estimate_mi`` on one task: the row of :func:`table_run` with CPU seconds and the kept
    step."""
    name, estimator, n, seed = args
    x, y = make_task(name, n, seed, None)
    start, cpu = time.perf_counter(), time.process_time()
    est = estimate_mi(x, y, estimator=estimator, random_state=seed, progress=False)
    return (
        name, estimator, n, seed, est.value, est.stderr, est.log_n_cap, est.capped,
        time.perf_counter() - start, time.process_time() - cpu, est.best_step,
    )  # fmt: skip


# Report ----------------------------------------------------------------------------------------


def reading_the_numbers(by, n_table, n_large, large_tasks, stairs, steps_per_level):
    """The paragraph under the targets: every clause follows from a number measured in this run."""

    def mean(name, estimator="infonce", n=n_table):
        return float(np.mean([r[0] for r in by[(name, estimator, n)]]))

    def dim(name):
        return TASKS[name].split(", ")[1]

    gauss = ("gauss:1:2", "gauss:5:2", "gauss:20:2", "gauss:50:2")
    short = ", ".join(f"{dim(name)} {mean(name) - 2:+.2f}" for name in gauss)
    exact = ", ".join(
        f"{dim(name)} {exact_critic_infonce(name, round(0.3 * n_table), 99):.2f}"
        for name in gauss[1:]
    )
    text = [
        f"**Reading the numbers.** Error of the default InfoNCE estimate at I = 2, N = {n_table} "
        f"(mean over seeds): {short}. The exact optimal critic scores {exact} on blocks of the "
        f"held-out size, so the shortfall is the trained critic's, learned from "
        f"{round(0.7 * n_table)} rows."
    ]
    peers = [e for e in ESTIMATORS if e != "infonce"]
    worse = [
        name for name in gauss if all(abs(mean(name, e) - 2) >= abs(mean(name) - 2) for e in peers)
    ]
    text.append(
        f"Trained the same way, every peer misses by at least as much on "
        f"{len(worse)} of these {len(gauss)} tasks."
    )
    for name in large_tasks:
        small, large = mean(name) - 2, mean(name, n=n_large) - 2
        verb = "shrinks" if abs(large) < abs(small) else "does not shrink"
        text.append(
            f"{dim(name)}: the error {verb} with rows, {small:+.2f} at N = {n_table} and "
            f"{large:+.2f} at N = {n_large:,}."
        )
    k32 = by[("gauss:50:2", "infonce_k32", n_large)][0][0]
    text.append(
        "The critic's bilinear part has rank at most its embedding size K, hence the default "
        f"K = max(32, 2 max(Dx, Dy)); with K = 32 the 50-D estimate is {k32:.2f} nats at "
        f"N = {n_large:,} against {mean('gauss:50:2', n=n_large):.2f} with the default (table)."
    )
    ksg_better = all(
        abs(mean(name, "ksg") - true_mi(name, 0)) < abs(mean(name) - true_mi(name, 0))
        for name in ("gauss:1:0.5", "gauss:1:2")
    )
    if ksg_better:
        text.append("On the 1-D Gaussians KSG, which trains nothing, is closer to the truth.")
    value, _, log_m, capped, _, log_b = by[("gauss:1:9", "infonce", 5000)][0]
    text.append(
        f"On 1-D, I = 9 at N = 5000 the estimate stops at {value:.2f} nats, {log_m - value:.1f} "
        f"below log M = {log_m:.2f} and {log_b - value:.1f} below log B = {log_b:.2f} (minibatches "
        f"of {round(math.exp(log_b))} pairs): the training objective can never exceed log B, "
        f"and `capped` is {capped} there."
    )
    smile = mean("gauss:5:5", "smile")
    if smile > 5:
        text.append(
            f"SMILE reports {smile:.2f} nats on 5-D, I = 5, above the truth: the clipped value is "
            "not a lower bound, and early stopping on it can keep an inflated critic."
        )
    last = max(1, steps_per_level // 5)

    def level_means(estimator):
        trace = stairs["cubic"][estimator][0]
        return trace.reshape(len(STAIRS), steps_per_level)[:, -last:].mean(1)

    failing = [LABELS[e] for e in ESTIMATORS if (level_means(e) <= 0).any()]
    tracking = [LABELS[e] for e in ESTIMATORS if (level_means(e) > 0).all()]
    if failing:
        text.append(
            f"On the cubic staircase, whose inputs are not standardized, {', '.join(failing)} "
            f"fall to zero or below at some level (e^f of unbounded inputs), while "
            f"{', '.join(tracking) or 'none'} stay positive; `estimate_mi` rank-standardizes its "
            "inputs, which removes that failure for per-column transforms."
        )
    return textwrap.fill(" ".join(text), width=100)


def fmt(v, digits=3):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; prints only")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tre", action="store_true", help="part 4 (TRE) only")
    parser.add_argument(
        "--tre-peers", action="store_true", help="the bounds at part 4's targets only"
    )
    opts = parser.parse_args()
    quick = opts.quick
    if opts.tre_peers:
        tre_peers(opts.workers)
        return
    if opts.tre:
        tre_section(opts.workers, quick=quick)
        return
    steps_per_level = 60 if quick else 400
    seeds = (0,) if quick else (0, 1)
    n_table = 1500 if quick else 5000
    tasks = list(TASKS)[:2] if quick else list(TASKS)

    t_truth, t_err = student_t_mi(T_RHO, T_NU, samples=200_000 if quick else 2_000_000)
    jobs_stairs = [("gaussian", steps_per_level, 0), ("cubic", steps_per_level, 1)]
    jobs_table = []
    for name in tasks:
        for estimator in ESTIMATORS:
            for seed in seeds if estimator == "infonce" else seeds[:1]:
                jobs_table.append((name, estimator, n_table, seed))
        x, _ = make_task(name, 10, 0, None)
        if x.shape[1] == 1:
            for seed in seeds:
                jobs_table.append((name, "ksg", n_table, seed))
    capped_tasks = [
        ("gauss:1:2", 500),
        ("gauss:1:4", 500),
        ("gauss:1:6", 500),
        ("gauss:5:8", 500),
        ("gauss:20:10", 500),
        ("gauss:1:9", 5000),
        ("gauss:10:2", 20_000),
    ]
    if quick:
        capped_tasks = capped_tasks[:2]
    jobs_capped = [
        (name, "infonce", n, seed)
        for name, n in capped_tasks
        for seed in (seeds if n <= 500 else seeds[:1])
    ]
    n_large = 50_000
    large_tasks = [] if quick else ["gauss:20:2", "gauss:50:2"]
    jobs_large = [(name, "infonce", n_large, 0) for name in large_tasks]
    jobs_large += [] if quick else [("gauss:50:2", "infonce_k32", n, 0) for n in (n_table, n_large)]

    start = time.perf_counter()
    with mp.get_context("spawn").Pool(opts.workers, initializer=init_worker) as pool:
        stairs_async = pool.map_async(staircase, jobs_stairs)
        table = []
        for row in pool.imap_unordered(table_run, jobs_large + jobs_capped[::-1] + jobs_table):
            print(row, flush=True)
            table.append(row)
        stairs = dict(stairs_async.get())
    total = time.perf_counter() - start
    print(f"total {total:.0f} s")

    # Staircase summary.
    png = RESULTS / "mi_staircase.png"
    if not quick:
        plot_staircase(stairs, steps_per_level, png)
    last = max(1, steps_per_level // 5)
    stair_rows = []
    for variant in ("gaussian", "cubic"):
        for estimator in ESTIMATORS:
            trace, seconds = stairs[variant][estimator]
            levels = trace.reshape(len(STAIRS), steps_per_level)[:, -last:]
            means = [f"{np.mean(lv):.2f} ± {np.std(lv):.2f}" for lv in levels]
            stair_rows.append(
                f"| {variant} | {LABELS[estimator]} | "
                + " | ".join(means)
                + f" | {np.nanmax(trace):.2f} | {seconds:.0f} s |"
            )
    infonce_max = max(np.nanmax(stairs[v]["infonce"][0]) for v in stairs)

    # Fixed tasks.
    by = {}
    for name, estimator, n, _seed, value, stderr, cap, capped, seconds, batch_cap in table:
        by.setdefault((name, estimator, n), []).append(
            (value, stderr, cap, capped, seconds, batch_cap)
        )
    task_rows, target_rows = [], []
    for name in tasks:
        truth = true_mi(name, t_truth)
        for estimator in (*ESTIMATORS, "ksg"):
            runs = by.get((name, estimator, n_table))
            if not runs:
                continue
            values = np.array([r[0] for r in runs])
            label = "KSG (sklearn, k = 3)" if estimator == "ksg" else LABELS[estimator]
            sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            exact = (
                fmt(exact_critic_infonce(name, round(0.3 * n_table), 99))
                if estimator == "infonce" and name.startswith("gauss")
                else "—"
            )
            task_rows.append(
                f"| {TASKS[name]} | {truth:.3f} | {label} | {values.mean():.3f} | "
                f"{values.mean() - truth:+.3f} | {fmt(sd)} | "
                f"{fmt(float(np.mean([r[1] for r in runs])))} | {exact} | "
                f"{np.mean([r[4] for r in runs]):.1f} s |"
            )
            if estimator == "infonce" and name.startswith("gauss") and truth <= 2:
                worst = float(np.max(np.abs(values - truth)))
                target_rows.append((TASKS[name], worst))

    large_rows = []
    for name in large_tasks:
        (value, stderr, _cap, _capped, seconds, _bc) = by[(name, "infonce", n_large)][0]
        small = np.mean([r[0] for r in by[(name, "infonce", n_table)]])
        truth = true_mi(name, t_truth)
        large_rows.append(
            f"| {TASKS[name]} | {truth:.3f} | {small:.3f} ({small - truth:+.3f}) | "
            f"{value:.3f} ({value - truth:+.3f}) ± {stderr:.3f} | "
            f"{fmt(exact_critic_infonce(name, 4096, 99))} | {seconds:.0f} s |"
        )
    if not quick:
        k32 = [by[("gauss:50:2", "infonce_k32", n)][0] for n in (n_table, n_large)]
        large_rows.append(
            f"| {TASKS['gauss:50:2']}, K = 32 | 2.000 | {k32[0][0]:.3f} ({k32[0][0] - 2:+.3f}) | "
            f"{k32[1][0]:.3f} ({k32[1][0] - 2:+.3f}) ± {k32[1][1]:.3f} | — | {k32[1][4]:.0f} s |"
        )

    capped_rows, capped_ok = [], True
    for name, n in capped_tasks:
        runs = by[(name, "infonce", n)]
        truth = true_mi(name, t_truth)
        cap, batch_cap = runs[0][2], runs[0][5]
        flags = [r[3] for r in runs]
        should = truth > cap
        right = all(f == should for f in flags) if should else None
        if should and not right:
            capped_ok = False
        verdict = "—" if right is None else ("right" if right else "**wrong**")
        values = ", ".join(f"{r[0]:.2f}" for r in runs)
        capped_rows.append(
            f"| {TASKS.get(name, name.replace('gauss:', 'Gaussian ').replace(':', '-D, I = '))} | "
            f"{n} | {truth:.1f} | {cap:.2f} | {batch_cap:.2f} | {values} | "
            f"{', '.join(str(f) for f in flags)} | "
            f"{verdict} | {np.mean([r[4] for r in runs]):.0f} s |"
        )

    reading = (
        ""
        if quick
        else reading_the_numbers(by, n_table, n_large, large_tasks, stairs, steps_per_level)
    )
    target_met = all(w <= 0.1 for _, w in target_rows)
    target_text = "; ".join(f"{task}: worst |error| {w:.3f}" for task, w in target_rows)
    print(target_text)
    print("\n".join(stair_rows + task_rows + capped_rows))
    if quick:
        return

    body = f"""### Mutual information: estimators against known truth

Command: `python benchmarks/mi.py` — commit `{_report.commit()}` — {_report.machine()}; 2 worker
processes with one thread each, {total / 60:.0f} min in all. Student-t truth by Monte Carlo with
the exact densities: {t_truth:.4f} ± {t_err:.4f} nats.

**Targets.** (1) `estimate_mi` defaults within 0.1 nats of the truth on correlated Gaussians with
I ≤ 2 nats, N = 5000: **{"met" if target_met else "not met"}** — {target_text}.
(2) `capped` right whenever the truth exceeds log M: **{"met" if capped_ok else "not met"}** on
the tasks below. (3) InfoNCE never exceeds log 64 = {math.log(64):.3f} on the staircase: its
largest batch estimate over all {2 * len(STAIRS) * steps_per_level} steps is
**{infonce_max:.3f}**.

{reading}

#### Staircase (Poole et al. 2019)

![staircase](benchmarks/results/mi_staircase.png)

d = {STAIR_DIM}, batch {STAIR_BATCH}, fresh samples every step, separable critic (2 × 256 ReLU,
32-D embeddings, linear skip), Adam 5e-4, {steps_per_level} steps per level. Cells: mean ± sd of
the batch estimate over the last {last} steps of each level.

| data | estimator | I = 2 | I = 4 | I = 6 | I = 8 | I = 10 | max estimate | time |
|---|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(stair_rows)}

#### Fixed tasks, N = {n_table}, `estimate_mi` defaults

Bias is the mean estimate minus the truth; InfoNCE (the default) and KSG run with seeds
{", ".join(map(str, seeds))} and sd is over them, the other estimators with seed 0 only (time
allowed no more on this shared machine); "held-out se" is the mean reported `stderr`; "exact
critic" is the InfoNCE bound of the optimal critic log p(y|x)/p(y) on {round(0.3 * n_table)} fresh
pairs (the held-out block's size); time is wall time per estimate with one thread on a busy
2-core machine.

| task | true MI | estimator | mean | bias | sd | held-out se | exact critic | time |
|---|---:|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(task_rows)}

#### More rows: InfoNCE at N = {n_large:,} (seed 0)

| task | true MI | N = {n_table} (bias) | N = {n_large:,} (bias) ± se | exact, 4096 rows | time |
|---|---:|---:|---:|---:|---:|
{chr(10).join(large_rows)}

#### The `capped` flag (InfoNCE, defaults)

M is the held-out evaluation block (0.3 N rows up to 4096) and B the training minibatch (256
pairs, fewer when fewer rows train); `capped` means the estimate is within 1.5 nats of log M or
of log B. "right" is judged where the truth exceeds log M.

| task | N | true MI | log M | log B | estimates | capped | verdict | time |
|---|---:|---:|---:|---:|---|---|---|---:|
{chr(10).join(capped_rows)}
"""
    _report.write_section("mi", body)
    print("wrote BENCHMARKS.md section 'mi' and", png)
    tre_section(opts.workers)


if __name__ == "__main__":
    main()
