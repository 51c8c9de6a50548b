r"""Column standardization before an MI estimate, and the checks that it lost nothing.

I(X; Y) is unchanged by any invertible map of each column, so the columns may be brought to a
scale the critic trains on:

* ``"rank"``: normal scores :math:`\Phi^{-1}((r - 1/2)/N)`, r the rank of the value in its column
  (tied values share their average rank, so equal values stay equal). Heavy tails and monotone
  distortions disappear; the result does not depend on the scale at all.
* ``"zscore"``: :math:`(a - \bar a)/\mathrm{sd}(a)`, computed on the column divided by a power
  of two near its largest magnitude, so that values up to the float64 maximum do not overflow.
* ``"none"``: the values as they are.

The critic works in float32. A standardization that merges distinct values (a column spanning
more orders of magnitude than float32 resolves, or varying in its tenth significant digit) would
destroy information silently, and values beyond float32's range would overflow: both are refused,
naming the column and ``standardize``. With ``"none"`` a column far from unit scale is trained on
poorly by the built-in critics; that gives a warning.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["STANDARDIZE", "average_ranks", "normal_scores", "standardize_columns", "zscore"]

STANDARDIZE = ("rank", "zscore", "none")

UNIT_SCALE = (1e-3, 1e3)
"""Root mean square and standard deviation of a column fed to a built-in critic unchanged
(``standardize="none"``) should lie in this range."""


def average_ranks(a: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N of each column's values, tied values sharing their average rank (scipy's
    ``rankdata(a, method="average", axis=0)``).

    Shape:
        - a: (N, D)
        - output: (N, D), float64

    Example:
        >>> average_ranks(torch.tensor([[3.0], [1.0], [3.0], [2.0]])).flatten().tolist()
        [3.5, 1.0, 3.5, 2.0]
    """
    ranks = torch.empty(a.shape, dtype=torch.float64)
    for j in range(a.shape[1]):
        _, inverse, counts = torch.unique(a[:, j], return_inverse=True, return_counts=True)
        counts = counts.to(torch.float64)
        ranks[:, j] = (torch.cumsum(counts, 0) - counts + (counts + 1) / 2)[inverse]
    return ranks


def normal_scores(a: torch.Tensor) -> torch.Tensor:
    r"""Rank standardization: :math:`\Phi^{-1}((r - 1/2)/N)` per column, r the average rank.

    Shape:
        - a: (N, D)
        - output: (N, D), float64
    """
    return torch.special.ndtri((average_ranks(a) - 0.5) / a.shape[0])


def zscore(a: torch.Tensor) -> torch.Tensor:
    r""":math:`(a - \bar a)/\mathrm{sd}(a)` per column (population sd), without overflow: each
    column is first divided by the power of two :math:`2^{e-1}` with :math:`2^{e-1} \le \max|a| <
    2^e`, an exact division that leaves the z-scores unchanged.

    Shape:
        - a: (N, D), no constant column
        - output: (N, D), float64
    """
    a = a.to(torch.float64)
    largest = a.abs().amax(0)
    _, exponent = torch.frexp(largest)
    u = a / torch.ldexp(torch.ones_like(largest), exponent - 1)
    centered = u - u.mean(0)
    return centered / centered.square().mean(0).sqrt()


def standardize_columns(
    name: str, a: torch.Tensor, method: str, *, built_in_critic: bool
) -> torch.Tensor:
    """Standardize the columns of ``a`` by ``method`` and convert them to float32, refusing a
    result that overflows or merges distinct values; with ``"none"`` and a built-in critic, warn
    about columns far from unit scale.

    Args:
        name: the argument's name in messages ("x" or "y").
        a: the samples, float64, no constant column.
        method: "rank" | "zscore" | "none".
        built_in_critic: whether a built-in critic (expecting unit-scale inputs) will score them.

    Shape:
        - a: (N, D)
        - output: (N, D), float32
    """
    if method == "rank":
        scaled = normal_scores(a)
    elif method == "zscore":
        scaled = zscore(a)
    else:
        scaled = a
        if built_in_critic:
            _warn_off_scale(name, a)
    result = scaled.to(torch.float32)
    bad = (~torch.isfinite(result)).any(0).nonzero().flatten()
    if len(bad):
        raise ValueError(
            f"{name} column {int(bad[0])} has values beyond float32's range after "
            f"standardize={method!r}; rescale it or use standardize='rank'"
        )
    before, after = distinct_values(a), distinct_values(result)
    merged = (2 * after < before).nonzero().flatten()
    if len(merged):
        j = int(merged[0])
        raise ValueError(
            f"standardize={method!r} merges the values of {name} column {j}: its "
            f"{int(before[j])} distinct values become {int(after[j])} in float32 (they span too "
            "many orders of magnitude, or differ too little, for the critic to tell apart); "
            "use standardize='rank', or rescale the column"
        )
    return result


def distinct_values(a: torch.Tensor) -> torch.Tensor:
    """The number of distinct values in each column.

    Shape:
        - a: (N, D)
        - output: (D,), int64
    """
    ordered = a.sort(0).values
    return 1 + (ordered[1:] != ordered[:-1]).sum(0)


def _warn_off_scale(name: str, a: torch.Tensor) -> None:
    low, high = UNIT_SCALE
    rms = a.square().mean(0).sqrt()
    sd = a.std(0, correction=0)
    off = ((rms > high) | (sd < low)).nonzero().flatten()
    if len(off):
        j = int(off[0])
        warnings.warn(
            f"{name} column {j} has root mean square {float(rms[j]):.3g} and standard deviation "
            f"{float(sd[j]):.3g} with standardize='none': the built-in critics expect columns of "
            f"order 1 (within [{low:g}, {high:g}]) and may fail to train, giving an estimate far "
            "from the truth (even below 0); use standardize='rank' or 'zscore', or rescale it",
            UserWarning,
            stacklevel=5,  # the caller of estimate_mi
        )
