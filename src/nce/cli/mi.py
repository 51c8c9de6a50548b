"""``nce mi``: estimate the mutual information between two groups of columns.

    nce mi DATA.csv --x-cols a,b --y-cols c --estimator infonce --json out.json
    nce mi X.csv Y.csv

Prints the estimate in nats with its standard error and the InfoNCE ceilings log M (M the held-out
evaluation block) and log B (B the training batch), says whether the estimate is capped and
whether training ended before early stopping, and writes ``value``,
``stderr``, ``log_n_cap``, ``log_batch_cap``, ``capped`` and ``converged`` (with the settings used)
to the JSON file, atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from nce.cli._args import SEED_MAX, int_at_most
from nce.cli._output import atomic_write_json, check_outputs
from nce.cli._table import InputError, read_table
from nce.mi import ESTIMATORS, estimate_mi


def add_arguments(parser) -> None:
    parser.add_argument(
        "data",
        nargs="+",
        metavar="CSV",
        help="one table holding X and Y (choose them with --x-cols/--y-cols), or two tables X Y "
        "with paired rows (CSV with optional header, or .npy)",
    )
    parser.add_argument("--x-cols", help="comma-separated column names of X")
    parser.add_argument(
        "--y-cols", help="comma-separated column names of Y (one table: default all other columns)"
    )
    parser.add_argument("--estimator", default="infonce", choices=ESTIMATORS)
    parser.add_argument(
        "--critic",
        default=None,
        choices=("gaussian-separable", "separable", "concat", "quadratic"),
        help="default: gaussian-separable; for --estimator tre: quadratic (or concat)",
    )
    parser.add_argument(
        "--waymarks",
        type=int_at_most(10**4),
        default=None,
        help="--estimator tre only: bridges between joint and product (default: from the data)",
    )
    parser.add_argument(
        "--batch-size", type=int_at_most(10**6), default=None, help="pairs per training step"
    )
    parser.add_argument(
        "--max-steps", type=int_at_most(10**9), default=4000, help="training steps at most"
    )
    parser.add_argument(
        "--validation-fraction",
        "--valid-fraction",  # the earlier name, kept for one release
        dest="validation_fraction",
        type=float,
        default=0.3,
        help="share of rows held out (default 0.3)",
    )
    parser.add_argument(
        "--seed", type=int_at_most(SEED_MAX), default=0, help="random seed (default 0)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the estimate to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _names(option: str, text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"{option}: no column names in {text!r}")
    if len(set(names)) != len(names):
        raise InputError(f"{option}: a column is named twice in {text!r}")
    return names


def _load(args) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    x_names, y_names = _names("--x-cols", args.x_cols), _names("--y-cols", args.y_cols)
    if len(args.data) == 1:
        table = read_table(args.data[0])
        if x_names is None:
            raise InputError("--x-cols is required with a single table (name the columns of X)")
        x = table.select(x_names, "--x-cols")
        if y_names is None:
            y_names = [c for c in table.columns if c not in x_names]
            if not y_names:
                raise InputError(
                    f"--x-cols takes every column of {table.path}; nothing is left for Y"
                )
        y = table.select(y_names, "--y-cols")
        both = [n for n in x_names if n in y_names]
        if both:
            raise InputError(
                f"column {', '.join(repr(n) for n in both)} is in both --x-cols and --y-cols "
                "(the information of a variable with itself is infinite)"
            )
        sources = (str(table.path), str(table.path))
    elif len(args.data) == 2:
        tx, ty = read_table(args.data[0]), read_table(args.data[1])
        x = tx.select(x_names, "--x-cols") if x_names else tx.values
        y = ty.select(y_names, "--y-cols") if y_names else ty.values
        x_names, y_names = x_names or tx.columns, y_names or ty.columns
        sources = (str(tx.path), str(ty.path))
        if x.shape[0] != y.shape[0]:
            raise InputError(
                f"X and Y must have paired rows: {tx.path} has {x.shape[0]} rows but {ty.path} "
                f"has {y.shape[0]}"
            )
    else:
        raise InputError(f"give one table (with --x-cols) or two tables X Y, got {len(args.data)}")
    n = x.shape[0]
    if n < 2:
        raise InputError(f"{sources[0]}: mutual information needs at least 2 rows, got {n}")
    for values, names, source in ((x, x_names, sources[0]), (y, y_names, sources[1])):
        constant = np.flatnonzero(np.ptp(values, axis=0) == 0)
        if len(constant):
            j = int(constant[0])
            raise InputError(
                f"{source}: column {names[j]!r} is constant (every value is {values[0, j]:g}); "
                "it carries no information, drop it"
            )
    return x, y, x_names, y_names


def run(args) -> int:
    inputs = {"CSV": args.data[0]} if len(args.data) == 1 else {}
    if len(args.data) == 2:
        inputs = {"X (first CSV)": args.data[0], "Y (second CSV)": args.data[1]}
    check_outputs({"--json": args.json}, inputs)
    if args.batch_size is not None and args.batch_size < 2:
        raise InputError(f"--batch-size must be >= 2, got {args.batch_size}")
    if args.max_steps < 1:
        raise InputError(f"--max-steps must be >= 1, got {args.max_steps}")
    if not 0 < args.validation_fraction < 1:
        raise InputError(
            f"--validation-fraction must lie in (0, 1), got {args.validation_fraction}"
        )
    if not 0 <= args.seed < 2**64:
        raise InputError(f"--seed must be in [0, 2**64), got {args.seed}")
    x, y, x_names, y_names = _load(args)
    result = estimate_mi(
        x,
        y,
        estimator=args.estimator,
        critic=args.critic,
        waymarks=args.waymarks,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        validation_fraction=args.validation_fraction,
        random_state=args.seed,
        progress=not args.no_progress,
    )
    m = round(math.exp(result.log_n_cap))
    print(
        f"I(X; Y) = {result.value:.4f} ± {result.stderr:.4f} nats  [{result.estimator}; "
        f"X = {', '.join(x_names)}; Y = {', '.join(y_names)}; "
        f"{result.n_train} rows trained the critic, {result.n_valid} held out]"
    )
    caps = f"cap: log M = log {m} = {result.log_n_cap:.4f} nats (held-out block)"
    if result.estimator == "infonce":
        b = round(math.exp(result.log_batch_cap))
        caps += f", log B = log {b} = {result.log_batch_cap:.4f} nats (training batch)"
    if result.estimator == "tre":
        print(
            f"tre: {result.waymarks} waymarks; a telescoped log-ratio, not a bound: no log N "
            "ceiling applies"
        )
    elif result.capped:
        print(
            f"{caps} — CAPPED: the estimate is near a ceiling set by the batch size; the true MI "
            "may be much higher"
        )
    else:
        print(f"{caps} — not capped")
    if not result.converged:
        print(
            f"note: training stopped at --max-steps {args.max_steps} before early stopping (the "
            "held-out bound had improved within its last 10 measurements); a larger --max-steps "
            "may raise the estimate"
        )
    if args.json:
        atomic_write_json(
            Path(args.json),
            {
                "value": result.value,
                "stderr": result.stderr,
                "log_n_cap": result.log_n_cap,
                "log_batch_cap": result.log_batch_cap,
                "capped": result.capped,
                "converged": result.converged,
                "estimator": result.estimator,
                "critic": args.critic
                or ("quadratic" if result.estimator == "tre" else "separable"),
                "x_cols": list(x_names),
                "y_cols": list(y_names),
                "n_train": result.n_train,
                "n_valid": result.n_valid,
                "best_step": result.best_step,
                "seed": args.seed,
            },
        )
        print(f"wrote {args.json}")
    return 0


STAIRCASE_LEVELS = (2.0, 4.0, 6.0, 8.0)
STAIRCASE_DIM = 20
STAIRCASE_BATCH = 64


def staircase(steps_per_level: int, random_state: int = 0):
    """Poole et al.'s (2019) staircase for InfoNCE: one separable critic trained on batches of
    64 Gaussian pairs (20 dimensions) whose true MI steps up through :data:`STAIRCASE_LEVELS`.

    Returns:
        (truth, estimates): the true MI and InfoNCE's training bound at each step, shape (T,).
    """
    from nce._random import seeded
    from nce.mi.critics import SeparableCritic
    from nce.mi.infonce import info_nce_bound

    g = torch.Generator().manual_seed(random_state)
    with seeded(random_state):
        critic = SeparableCritic(STAIRCASE_DIM, STAIRCASE_DIM, hidden=128)
    optimizer = torch.optim.Adam(critic.parameters(), lr=5e-4)
    truth, estimates = [], []
    for level in STAIRCASE_LEVELS:
        rho = math.sqrt(1 - math.exp(-2 * level / STAIRCASE_DIM))
        for _ in range(steps_per_level):
            x = torch.randn(STAIRCASE_BATCH, STAIRCASE_DIM, generator=g)
            noise = torch.randn(STAIRCASE_BATCH, STAIRCASE_DIM, generator=g)
            bound = info_nce_bound(critic(x, rho * x + math.sqrt(1 - rho**2) * noise))
            optimizer.zero_grad(set_to_none=True)
            (-bound).backward()
            optimizer.step()
            truth.append(level)
            estimates.append(float(bound.detach()))
    return np.asarray(truth), np.asarray(estimates)


def demo_section(out_dir: Path, progress: bool = True, quick: bool = False):
    """``nce demo``'s mutual-information job: a held-out InfoNCE estimate (``estimate_mi``) on
    2000 correlated Gaussian pairs of known MI, and the staircase whose top steps InfoNCE cannot
    reach past log N. Returns a ``SectionResult``."""
    from nce.cli._output import atomic_save_figure
    from nce.cli._plot import pyplot
    from nce.cli._report_page import (
        Measure,
        SectionResult,
        announce,
        format_number,
        one_thread,
        section_bar,
    )

    rng = np.random.default_rng(0)
    true_mi = 1.0
    rho = math.sqrt(1 - math.exp(-2 * true_mi))
    x = rng.standard_normal(2000)
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(2000)
    steps = 100 if quick else 300
    with one_thread():
        with section_bar("mutual information", 2, progress) as bar:
            result = estimate_mi(
                x, y, max_steps=200 if quick else 400, random_state=0, progress=False
            )
            bar.update()
            truth, estimates = staircase(steps)
            bar.update()
    log_n = math.log(STAIRCASE_BATCH)
    tail = max(1, steps // 5)
    last = {level: float(estimates[truth == level][-tail:].mean()) for level in STAIRCASE_LEVELS}
    top = STAIRCASE_LEVELS[-1]
    plt = pyplot("nce demo")
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(estimates, color="C0", alpha=0.35, lw=0.7, label="InfoNCE bound (per batch)")
    ax.plot(truth, color="black", lw=1.3, label="true MI")
    ax.axhline(log_n, color="C3", ls="--", lw=1.2, label=f"log N = log {STAIRCASE_BATCH}")
    ax.set_xlabel("training step")
    ax.set_ylabel("nats")
    ax.set_title("InfoNCE on the staircase: capped by log N")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "mi.png"
    atomic_save_figure(fig, path)
    plt.close(fig)
    f = format_number
    measures = [
        Measure("value", "held-out estimate, 2000 pairs", result.value, true_mi, "true_mi", "true"),
        Measure("stderr", "its standard error", result.stderr),
        Measure("log_n_cap", "its cap log M", result.log_n_cap),
        Measure("capped", "capped", bool(result.capped)),
    ]
    for level in STAIRCASE_LEVELS:
        measures.append(
            Measure(
                f"staircase_{level:g}", f"staircase, last steps at true {level:g}", last[level],
                level, f"staircase_true_{level:g}", "true",
            )
        )
    measures.append(Measure("staircase_log_n", "staircase cap log N", log_n))
    errors = abs(result.value - true_mi) / result.stderr if result.stderr > 0 else math.inf
    return announce(
        SectionResult(
            measures=tuple(measures),
            figure=path.name,
            note=(
                f"mutual information: InfoNCE on 2000 correlated Gaussian pairs (true I = "
                f"{f(true_mi)} nats), then the staircase at N = {STAIRCASE_BATCH}, {steps} "
                f"steps a level."
            ),
            reading=(
                f"The held-out estimate is {f(result.value)} ± {f(result.stderr)} against the "
                f"true {f(true_mi)}, {f(errors)} standard errors away.",
                f"On the staircase it ends at {f(last[top])} where the truth is {f(top)}, "
                f"{f(top - last[top])} short and {f(log_n - last[top])} under log N = "
                f"{f(log_n)}, the most InfoNCE can report with N = {STAIRCASE_BATCH}.",
            ),
        )
    )
