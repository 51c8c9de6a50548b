r"""Unnormalized (energy-based) models with a learnable log-partition.

An energy model gives an unnormalized log density :math:`f_\theta(x)`; its normalized log density
is :math:`\log p_\theta(x) = f_\theta(x) - \log Z_\theta` with
:math:`Z_\theta = \int e^{f_\theta(x)}\,dx`, which is intractable in general. Noise-contrastive
estimation treats :math:`\log Z` as one more parameter, ``log_z``: the NCE objective is minimized
only where ``log_z`` equals the true log-partition (Gutmann & Hyvärinen 2012, Theorem 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nce._validation import check_int, check_tensor


class EnergyModel(nn.Module):
    r"""Base class: ``forward(x)`` returns :math:`f_\theta(x)`, shape (N,); ``log_z`` is learned.

    Subclasses implement ``forward``. ``log_prob(x) = forward(x) - log_z``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.log_z = nn.Parameter(torch.zeros(()))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized log density under the learned log-partition, shape (N,)."""
        return self(x) - self.log_z

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, 2)
        if x.shape[1] != self.dim:
            raise ValueError(f"x has {x.shape[1]} columns but the model has dimension {self.dim}")
        return x


class GaussianEnergy(EnergyModel):
    r"""Unnormalized Gaussian :math:`f(x) = -\tfrac12 \lVert L^\top (x - \mu)\rVert^2`.

    The precision is :math:`\Lambda = L L^\top` with :math:`L` lower-triangular and a positive
    diagonal (stored as its log), so the true log-partition is known in closed form:

    .. math:: \log Z = \tfrac{D}{2}\log 2\pi - \sum_i \log L_{ii}.

    Shape:
        - x: (N, D)
        - output: (N,)

    Example:
        >>> model = GaussianEnergy(2)
        >>> round(float(model.true_log_partition()), 4)  # standard normal: log 2π
        1.8379
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.lower = nn.Parameter(torch.zeros(dim, dim))

    def cholesky(self) -> torch.Tensor:
        """:math:`L`, the lower Cholesky factor of the precision, shape (D, D)."""
        return torch.tril(self.lower, -1) + torch.diag(torch.exp(self.log_diag))

    def precision(self) -> torch.Tensor:
        chol = self.cholesky()
        return chol @ chol.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return -0.5 * ((x - self.mean) @ self.cholesky()).square().sum(1)

    def true_log_partition(self) -> torch.Tensor:
        """The exact :math:`\\log Z` of the current parameters."""
        return 0.5 * self.dim * math.log(2 * math.pi) - self.log_diag.sum()
