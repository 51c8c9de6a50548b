r"""A critic that starts at the Gaussian log-ratio of the data's canonical pairs.

After rank standardization (:mod:`nce.mi.standardize`) every column is standard normal, and for
data whose dependence is Gaussian in those scores (a Gaussian copula: any monotone map of each
column of a multivariate normal) the log density ratio is known in closed form. With canonical
correlations :math:`\rho_k` and canonical variates :math:`u = A(x - m_x)`, :math:`v = B(y - m_y)`
(unit variance, uncorrelated across k),

.. math:: \log\frac{p(x, y)}{p(x)p(y)} = \sum_k \Big[\frac{\rho_k u_k v_k}{1 - \rho_k^2}
          - \frac{\rho_k^2 (u_k^2 + v_k^2)}{2(1 - \rho_k^2)}
          - \tfrac12 \log(1 - \rho_k^2)\Big],

a sum over as many terms as there are dependent directions, each with two projections and one
correlation. :class:`GaussianCritic` is that function with trainable :math:`A, B, \rho`, fitted by
canonical correlation analysis (CCA) on the training rows. How many pairs to keep is a choice
between bias and variance: a plug-in fit of every pair spends the held-out bound on noise
directions (about :math:`D_x D_y / 2N` nats when none is dependent), while a few strong pairs
(a low-rank dependence) are best kept alone. :func:`choose_pairs` keeps the leading r pairs whose
held-out bound on monitor rows is highest, r among 0, powers of two, the number of pairs above
the noise edge of independent columns (the upper edge of Wachter's law, :func:`noise_edge`) and
all of them.

:class:`GaussianSeparableCritic` adds a :class:`~nce.mi.critics.SeparableCritic` that starts at
zero and learns what the Gaussian part misses (heavy-tailed dependence, rotations): the sum
starts at the Gaussian copula's log-ratio, and training with early stopping on held-out rows
(measured before the first step too) keeps it wherever no step improves on it.

References:
    Hotelling (1936), "Relations between two sets of variates". Wachter (1980), "The limiting
    empirical measure of multiple discriminant ratios". Poole et al. (2019), arXiv:1905.06922.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from nce._validation import check_int
from nce.mi.critics import SeparableCritic

__all__ = [
    "GaussianCritic",
    "GaussianSeparableCritic",
    "canonical_pairs",
    "choose_pairs",
    "noise_edge",
]


def noise_edge(x_features: int, y_features: int, rows: int) -> float:
    r"""Upper edge of the squared sample canonical correlations of independent columns
    (Wachter, 1980): with :math:`p = D_x/N, q = D_y/N`,
    :math:`(\sqrt{p(1 - q)} + \sqrt{q(1 - p)})^2` (1 when :math:`p + q \ge 1`)."""
    p, q = x_features / rows, y_features / rows
    if p + q >= 1:
        return 1.0
    return (math.sqrt(p * (1 - q)) + math.sqrt(q * (1 - p))) ** 2


def canonical_pairs(x: torch.Tensor, y: torch.Tensor):
    r"""CCA of paired rows: every canonical pair, strongest first.

    Returns:
        ``(rho, A, B, mean_x, mean_y)``: the canonical correlations, shape (r,), r =
        min(Dx, Dy), decreasing, in [0, 1); the projections, shapes (r, Dx) and (r, Dy), with
        :math:`u = A(x - m_x)`, :math:`v = B(y - m_y)` of unit sample variance; the column
        means. float64.

    Shape:
        - x: (N, Dx), y: (N, Dy)
    """
    x, y = x.double(), y.double()
    n = x.shape[0]
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc, yc = x - mean_x, y - mean_y

    def inverse_root(a):
        values, vectors = torch.linalg.eigh(a.T @ a / n)
        values = values.clamp_min(float(values.max()) * 1e-12 + 1e-300)
        return vectors @ torch.diag(values.rsqrt()) @ vectors.T

    wx, wy = inverse_root(xc), inverse_root(yc)
    left, rho, right = torch.linalg.svd(wx @ (xc.T @ yc / n) @ wy, full_matrices=False)
    rho = rho.clamp(0.0, 1.0 - 1e-6)
    return rho, left.T @ wx, right @ wy, mean_x, mean_y


def choose_pairs(critic: GaussianCritic, bound: Callable[[], float], rows: int) -> int:
    """Keep the leading r canonical pairs of a fitted ``critic`` for which ``bound()`` (the
    held-out bound of the model that contains it, on monitor rows) is highest; r among 0, the
    powers of two below the number of pairs, the number above :func:`noise_edge` for ``rows``
    training rows, and all. Returns r.
    """
    full = {name: p.detach().clone() for name, p in critic.named_parameters()}
    pairs = len(full["z"])
    edge = noise_edge(critic.mean_x.numel(), critic.mean_y.numel(), rows)
    above = int((torch.tanh(full["z"]).square() > edge).sum())
    candidates = sorted(
        {0, pairs, above, *(2**k for k in range(pairs.bit_length()) if 2**k < pairs)}
    )
    best, best_value = pairs, -math.inf
    for r in candidates:
        critic.keep(r, full)
        value = bound()
        if math.isfinite(value) and value > best_value:
            best, best_value = r, value
    critic.keep(best, full)
    return best


class GaussianCritic(nn.Module):
    r"""The Gaussian log-ratio of r canonical pairs (module docstring), r = 0 until
    :meth:`initialize`.

    Scores every pair: :math:`s_{ij} = \sum_k w_k u_{ik} v_{jk} - a_k(u_{ik}^2 + v_{jk}^2) + c`
    with :math:`w_k = \rho_k/(1 - \rho_k^2)`, :math:`a_k = \rho_k^2/(2(1 - \rho_k^2))`,
    :math:`c = -\frac12\sum_k \log(1 - \rho_k^2)`; :math:`\rho_k = \tanh z_k` is trained through
    :math:`z_k`, and :math:`A`, :math:`B` directly.

    Args:
        x_features: Dx.
        y_features: Dy.

    Shape:
        - x: (N, Dx), y: (M, Dy)
        - output: (N, M)

    References:
        Hotelling (1936), "Relations between two sets of variates"; Poole et al. (2019),
        arXiv:1905.06922 (critics of mutual-information bounds).

    Example:
        >>> import torch
        >>> x = torch.randn(2000, 1)
        >>> y = 0.8 * x + 0.6 * torch.randn(2000, 1)
        >>> critic = GaussianCritic(1, 1).initialize(x, y)
        >>> round(float(critic.rho[0]), 1)
        0.8
    """

    def __init__(self, x_features: int, y_features: int):
        super().__init__()
        check_int("x_features", x_features, minimum=1)
        check_int("y_features", y_features, minimum=1)
        self.project_x = nn.Parameter(torch.zeros(0, x_features))
        self.project_y = nn.Parameter(torch.zeros(0, y_features))
        self.z = nn.Parameter(torch.zeros(0))
        self.register_buffer("mean_x", torch.zeros(x_features))
        self.register_buffer("mean_y", torch.zeros(y_features))

    @property
    def rho(self) -> torch.Tensor:
        """The canonical correlations :math:`\\tanh z`, shape (r,)."""
        return torch.tanh(self.z)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, y: torch.Tensor) -> GaussianCritic:
        """Fit every canonical pair of paired rows (:func:`canonical_pairs`); replaces the
        parameters, so call it (and :func:`choose_pairs`) before building an optimizer.

        Shape:
            - x: (N, Dx), y: (N, Dy)
        """
        rho, a, b, mean_x, mean_y = canonical_pairs(x, y)
        dtype = self.mean_x.dtype
        self.project_x = nn.Parameter(a.to(dtype))
        self.project_y = nn.Parameter(b.to(dtype))
        self.z = nn.Parameter(torch.atanh(rho).to(dtype))
        self.mean_x.copy_(mean_x)
        self.mean_y.copy_(mean_y)
        return self

    @torch.no_grad()
    def keep(self, pairs: int, parameters: dict[str, torch.Tensor] | None = None) -> None:
        """Keep the first ``pairs`` canonical pairs (of ``parameters``, a copy of this critic's
        named parameters, when given); replaces the parameters."""
        source = parameters or {name: p.detach() for name, p in self.named_parameters()}
        self.project_x = nn.Parameter(source["project_x"][:pairs].clone())
        self.project_y = nn.Parameter(source["project_y"][:pairs].clone())
        self.z = nn.Parameter(source["z"][:pairs].clone())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Scores of every pair (x_i, y_j): :math:`s_{ij}` of the class docstring.

        Shape:
            - x: (N, Dx), y: (M, Dy)
            - output: (N, M)
        """
        u = (x - self.mean_x) @ self.project_x.T
        v = (y - self.mean_y) @ self.project_y.T
        rho = self.rho
        keep = 1 - rho.square()
        w, a = rho / keep, rho.square() / (2 * keep)
        constant = -0.5 * torch.log(keep).sum()
        return (
            (u * w) @ v.T
            - (a * u.square()).sum(1, keepdim=True)
            - (a * v.square()).sum(1)
            + constant
        )


class GaussianSeparableCritic(nn.Module):
    r""":class:`GaussianCritic` plus a :class:`~nce.mi.critics.SeparableCritic` residual that
    starts at zero (its y encoder's output layer and skip path are zeroed), so the sum starts at
    the Gaussian log-ratio fitted by :meth:`initialize`:
    :math:`s_{ij} = s^{\text{Gauss}}_{ij} + g(x_i)^\top h(y_j)`.

    Args:
        x_features: Dx.
        y_features: Dy.
        **residual: ``hidden``, ``layers`` and ``embed_dim`` of the residual
            :class:`~nce.mi.critics.SeparableCritic`.

    Shape:
        - x: (N, Dx), y: (M, Dy)
        - output: (N, M)

    References:
        Poole et al. (2019), arXiv:1905.06922 (separable critics); Hotelling (1936) (the
        canonical pairs of the Gaussian part).

    Example:
        >>> import torch
        >>> critic = GaussianSeparableCritic(3, 2, hidden=8)
        >>> critic(torch.randn(5, 3), torch.randn(4, 2)).abs().max().item()
        0.0
    """

    def __init__(self, x_features: int, y_features: int, **residual):
        super().__init__()
        self.gaussian = GaussianCritic(x_features, y_features)
        self.residual = SeparableCritic(x_features, y_features, **residual)
        with torch.no_grad():
            last = self.residual.h.net[-1]
            last.weight.zero_()
            last.bias.zero_()
            self.residual.h.skip.weight.zero_()

    @property
    def embed_dim(self) -> int:
        """The residual's embedding dimension."""
        return self.residual.embed_dim

    def initialize(self, x: torch.Tensor, y: torch.Tensor) -> GaussianSeparableCritic:
        """Fit the Gaussian part on paired training rows (:meth:`GaussianCritic.initialize`).

        Shape:
            - x: (N, Dx), y: (N, Dy)
        """
        self.gaussian.initialize(x, y)
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scores of every pair: the Gaussian part plus the residual.

        Shape:
            - x: (N, Dx), y: (M, Dy)
            - output: (N, M)
        """
        return self.gaussian(x, y) + self.residual(x, y)
