r"""Mutual information between columns of your CSV file, with its standard error and log N ceiling.

    python examples/mi_columns.py data.csv --x a,b --y c
    python examples/mi_columns.py            # built-in: a Gaussian pair of known information

The CSV has a header line of column names, then one row of numbers per line; ``--x`` and
``--y`` name the two groups of columns. :func:`nce.estimate_mi` trains a critic
:math:`f(x, y)` on part of the rows to maximize a variational lower bound, here InfoNCE (van den
Oord et al. 2018, arXiv:1807.03748; Poole et al. 2019, arXiv:1905.06922),

.. math:: I(X; Y) \ge \mathbb E\Big[\frac1M \sum_i \Big(f(x_i, y_i)
          - \log \sum_{j=1}^M e^{f(x_i, y_j)}\Big)\Big] + \log M,

and evaluates it on the held-out rows in blocks of M. Printed: the estimate in nats ± its
standard error, the ceiling :math:`\log M` that InfoNCE can never exceed (when the estimate
comes near it, ``capped`` is True and the true value may be anywhere above), and the Gaussian
value :math:`\frac12 \log \frac{\det\Sigma_{X}\det\Sigma_{Y}}{\det\Sigma}` of the columns'
covariance, which sees only linear dependence. ``--estimator tre`` (telescoping ratio
estimation) has no log N ceiling.

Without a file the script draws N rows of a bivariate Gaussian with correlation ρ, whose
information :math:`-\frac12\log(1 - \rho^2)` is printed next to the estimate.
"""

from __future__ import annotations

import argparse
import csv
import math

import numpy as np

import nce


def read_columns(path: str, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        names = [name.strip() for name in next(reader)]
        rows = np.array([[float(v) for v in row] for row in reader if row], dtype=np.float64)

    def pick(option: str, wanted: str) -> np.ndarray:
        columns = [c.strip() for c in wanted.split(",")]
        missing = [c for c in columns if c not in names]
        if missing:
            raise SystemExit(f"{option}: {', '.join(missing)} not in the header {names}")
        return rows[:, [names.index(c) for c in columns]]

    return pick("--x", x), pick("--y", y)


def gaussian_information(x: np.ndarray, y: np.ndarray) -> float:
    r""":math:`\frac12[\log\det\Sigma_X + \log\det\Sigma_Y - \log\det\Sigma]`, in nats."""
    joint = np.corrcoef(np.column_stack([x, y]), rowvar=False).reshape(x.shape[1] + y.shape[1], -1)
    dx = x.shape[1]
    logdet = [np.linalg.slogdet(m)[1] for m in (joint[:dx, :dx], joint[dx:, dx:], joint)]
    return 0.5 * (logdet[0] + logdet[1] - logdet[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", help="a CSV file with a header line")
    parser.add_argument("--x", help="comma-separated column names of X")
    parser.add_argument("--y", help="comma-separated column names of Y")
    parser.add_argument(
        "--estimator", default="infonce", help="infonce, nwj, mine, smile, js or tre"
    )
    parser.add_argument("--max-steps", type=int, default=4000, help="training steps at most")
    parser.add_argument("--rows", type=int, default=4000, help="built-in rows")
    parser.add_argument("--rho", type=float, default=0.9, help="built-in correlation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.csv is None:
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((args.rows, 1))
        y = args.rho * x + math.sqrt(1 - args.rho**2) * rng.standard_normal((args.rows, 1))
        truth = -0.5 * math.log(1 - args.rho**2)
        print(
            f"built-in: {args.rows} rows of a Gaussian pair, rho = {args.rho}, I = {truth:.4f} nats"
        )
    else:
        if not (args.x and args.y):
            parser.error("a CSV file needs --x and --y")
        x, y = read_columns(args.csv, args.x, args.y)
        truth = None
        print(f"{args.csv}: {len(x)} rows, X = {args.x}, Y = {args.y}")

    estimate = nce.estimate_mi(
        x,
        y,
        estimator=args.estimator,
        max_steps=args.max_steps,
        progress=False,
        random_state=args.seed,
    )
    print(
        f"I(X; Y) = {estimate.value:.4f} ± {estimate.stderr:.4f} nats [{estimate.estimator}], "
        f"{estimate.n_train} rows to train, {estimate.n_valid} held out"
    )
    print(
        f"log N cap {estimate.log_n_cap:.4f}, capped {estimate.capped}, "
        f"converged {estimate.converged}"
    )
    print(f"Gaussian (linear) value {gaussian_information(x, y):.4f} nats")
    if truth is not None:
        print(
            f"true value {truth:.4f} nats: the estimate is "
            f"{(estimate.value - truth) / max(estimate.stderr, 1e-12):+.1f} standard errors away"
        )


if __name__ == "__main__":
    main()
