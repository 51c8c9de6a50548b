r"""The held-out estimate of a trained critic: its bound over blocks, standard error and cap.

The held-out rows are cut into near-equal blocks of at most M rows (never fewer than 2); the bound
is computed on each block's full score matrix and the blocks are averaged with weights
proportional to their sizes. The standard error combines the blocks' delta-method errors
(:mod:`nce.mi.influence`), and the cap is the size-weighted mean of :math:`\log M_b`, which bounds
the size-weighted mean of the blocks' InfoNCE values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nce.mi.estimators import Estimator, get_estimator


def evaluate_critic(
    model: nn.Module,
    estimator: Estimator,
    x: torch.Tensor,
    y: torch.Tensor,
    block_size: int,
    clip: float,
) -> tuple[float, float, float]:
    """``(value, stderr, log_n_cap)`` of the critic on paired held-out rows.

    Shape:
        - x: (N, Dx), y: (N, Dy)
    """
    n = x.shape[0]
    blocks = np.array_split(np.arange(n), max(1, min(math.ceil(n / block_size), n // 2)))
    values, variances, sizes = [], [], []
    with torch.no_grad():
        for rows in blocks:
            idx = torch.from_numpy(rows)
            scores = model(x[idx], y[idx]).double()
            value, influence = estimator.influence(scores, clip)
            values.append(value)
            variances.append(float(influence.var()) / len(rows) if len(rows) > 1 else 0.0)
            sizes.append(len(rows))
    weights = np.asarray(sizes) / n
    value = float(np.dot(weights, values))
    stderr = float(math.sqrt(np.dot(weights**2, variances)))
    return value, stderr, float(np.dot(weights, np.log(sizes)))


def influence_values(
    estimator: str, scores: torch.Tensor, clip: float = 5.0
) -> tuple[float, torch.Tensor]:
    r"""The held-out bound of ``estimator`` on an (M, M) score matrix and its per-row influence.

    Returns ``(value, psi)`` with ``psi`` of shape (M,) and mean ``value``: row k's positive term
    plus its share, as an x (row k) and as a y (column k), of the negative term, linearized. Its
    standard deviation over :math:`\sqrt{M}` is the delta-method standard error of ``value``:

    .. math:: \text{value} = \frac1M \sum_k \psi_k, \qquad
              \mathrm{se} = \mathrm{sd}(\psi)/\sqrt{M}.

    Shape:
        - scores: (M, M)
        - psi: (M,)

    References:
        Hampel (1974), The influence curve and its role in robust estimation, JASA 69:383.
    """
    record = get_estimator(estimator)
    if record.influence is None:
        raise ValueError(
            f"estimator {record.name!r} is not a bound on a score matrix and has no influence "
            "function of one; its standard error is that of the held-out mean of its per-row values"
        )
    return record.influence(scores, clip)
