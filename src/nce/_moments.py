r"""The data's mean and covariance with a small ridge: the one estimate behind
:meth:`nce.noise.Gaussian.fit` and the data-dependent starts of :mod:`nce.models`.

.. math:: \mu = \frac1N \sum_n x_n, \qquad
    \Sigma = S + r \operatorname{diag}(S), \qquad
    S = \frac{1}{N - 1} \sum_n (x_n - \mu)(x_n - \mu)^\top,

with :math:`r = \max(10^{-6}, D\,\epsilon)` and :math:`\epsilon` the machine epsilon of the data's
dtype: the ridge keeps :math:`\Sigma` positive definite in that dtype for collinear columns, and,
relative to each column's own variance, it is the same for data in any units (a column of areas in
the thousands next to one of ratios near 0.1 gets the same relative ridge on both). The
moments are accumulated in float64. Data whose squares overflow float64, or whose covariance does
not fit its own dtype, are refused with that reason (rescale or standardize them), rather than
failing later in a Cholesky factorization.
"""

from __future__ import annotations

import torch

from nce._validation import check_tensor, shape_str

__all__ = ["covariance_ridge", "mean_and_covariance"]


def covariance_ridge(dim: int, dtype: torch.dtype) -> float:
    r"""The relative ridge :math:`r = \max(10^{-6}, D\,\epsilon)` of a covariance in ``dtype``."""
    return max(1e-6, dim * torch.finfo(dtype).eps)


def mean_and_covariance(name: str, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The float64 mean (D,) and ridged covariance (D, D) of the rows of ``X`` (see the module).

    Args:
        name: How the data are named in error messages.
        X: (N, D) floating tensor, :math:`N \geq 2`, finite, not constant in every column.

    Example:
        >>> mean, cov = mean_and_covariance("X", torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
        >>> mean.tolist(), round(float(cov[0, 0]), 4)
        ([1.0, 2.0], 2.0)
    """
    check_tensor(name, X, ndim=2)
    if X.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows for a covariance, got shape {shape_str(X)}")
    X64 = X.detach().to(torch.float64)
    mean = X64.mean(0)
    centered = X64 - mean
    covariance = centered.mT @ centered / (X64.shape[0] - 1)
    if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(covariance).all())):
        raise ValueError(
            f"{name} has values up to {float(X64.abs().max()):.3g}, too large for its covariance "
            "in float64 (the squares overflow): rescale or standardize it"
        )
    trace = float(covariance.trace())
    if trace == 0:
        raise ValueError(
            f"{name} is constant in every column (shape {shape_str(X)}): it has no covariance"
        )
    dim = X64.shape[1]
    variances = covariance.diagonal().clamp_min(torch.finfo(X.dtype).eps * trace / dim)
    covariance = covariance + torch.diag(covariance_ridge(dim, X.dtype) * variances)
    largest = float(covariance.abs().max())
    if X.dtype != torch.float64 and largest > torch.finfo(X.dtype).max:
        raise ValueError(
            f"{name} has values up to {float(X64.abs().max()):.3g}: its covariance reaches "
            f"{largest:.3g}, beyond the largest {X.dtype} ({torch.finfo(X.dtype).max:.3g}); "
            "rescale or standardize it, or pass float64"
        )
    return mean, covariance
