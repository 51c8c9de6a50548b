"""Pieces shared by the bounds: checking a critic score matrix and averaging over its negatives."""

from __future__ import annotations

import math

import torch

from nce._validation import check_tensor, shape_str
from nce.functional._common import compute_dtype


def check_scores(scores: torch.Tensor) -> torch.Tensor:
    """A finite square (N, N) floating matrix with N >= 2, in its compute dtype."""
    check_tensor("scores", scores, 2)
    if scores.shape[0] != scores.shape[1]:
        raise ValueError(
            f"scores must be square (N, N) with the positive pairs on the diagonal, "
            f"got shape {shape_str(scores)}"
        )
    if scores.shape[0] < 2:
        raise ValueError(
            f"scores needs N >= 2 (a pair and at least one negative), got shape {shape_str(scores)}"
        )
    return scores.to(compute_dtype(scores))


def off_diagonal(n: int, device: torch.device) -> torch.Tensor:
    """(N, N) boolean mask, True off the diagonal: the pairs (x_i, y_j), i != j, from p(x)p(y)."""
    return ~torch.eye(n, dtype=torch.bool, device=device)


def logmeanexp_off_diagonal(scores: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \frac{1}{N(N-1)} \sum_{i \ne j} e^{s_{ij}}`, the log-mean over negatives."""
    n = scores.shape[0]
    masked = scores.masked_fill(~off_diagonal(n, scores.device), -math.inf)
    return torch.logsumexp(masked.reshape(-1), 0) - math.log(n * (n - 1))
