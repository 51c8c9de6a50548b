r"""Waymarks: distributions :math:`p_0, \dots, p_K` bridging the joint :math:`p_0 = p(x, y)` and
the product of marginals :math:`p_K = p(x)p(y)`, for telescoping ratio estimation
(:mod:`nce.mi.tre`).

Samples of both ends come from the same paired rows: a joint sample is a row
:math:`u_p = (x_i, y_i)`, a product sample :math:`u_q = (x_{\pi(i)}, y_{\sigma(i)})` pairs rows of
two independent permutations. Each waymark sample mixes one :math:`u_p` with one :math:`u_q`:

* **linear mixing** (Rhodes, Xu & Gutmann, 2020, Eq. 6):
  :math:`u_k = \sqrt{1 - \alpha_k^2}\, u_p + \alpha_k u_q` with :math:`0 = \alpha_0 < \alpha_1 <
  \dots < \alpha_K = 1`. Columns of unit variance keep unit variance, and every cross-covariance
  between x and y shrinks by the factor :math:`1 - \alpha_k^2`.
* **dimension-wise mixing**: the first :math:`\lceil k D_x / K \rceil` columns of x and the first
  :math:`\lceil k D_y / K \rceil` columns of y come from :math:`u_q`, the rest from :math:`u_p`, so
  that each bridge removes the dependence carried by a K-th of the columns of each side.

**Spacing.** With :math:`\alpha_k = k/K` the bridges near the joint are the hard ones: when x and
y are strongly dependent, the first small step in :math:`\alpha` already turns a thin conditional
:math:`p(y|x)` into a much broader one. :func:`equal_information_alphas` instead spaces the
:math:`\alpha_k` so that each bridge removes the same share of the Gaussian information of the data,
computed from its canonical correlations :math:`\rho_i`: waymark k's canonical correlations are
:math:`(1 - \alpha_k^2)\rho_i`, so its Gaussian information is

.. math:: I_G(\alpha_k) = -\tfrac12 \sum_i \log\bigl(1 - (1 - \alpha_k^2)^2 \rho_i^2\bigr),

and :math:`\alpha_k` solves :math:`I_G(\alpha_k) = (1 - k/K)\, I_G(0)`. For Gaussian data every
bridge then carries the same information, :math:`I/K` nats, the equal difficulty the paper asks of
its waymarks.

The mixing and the equal-share spacing are the shared building blocks of :mod:`nce.waymarks`
(re-exported here); this module adds what is particular to pairs: product samples, canonical
correlations and their Gaussian information.
"""

from __future__ import annotations

import torch

from nce._validation import check_int
from nce.waymarks import (
    WAYMARK_MIXING,
    dimensionwise_waymarks,
    equal_share_alphas,
    linear_alphas,
    linear_waymarks,
)

__all__ = [
    "WAYMARK_MIXING",
    "canonical_correlations",
    "dimensionwise_waymarks",
    "equal_information_alphas",
    "gaussian_information",
    "linear_alphas",
    "linear_waymarks",
    "product_samples",
]


def canonical_correlations(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The canonical correlations of paired columns, each in [0, 1), shape (min(Dx, Dy),):
    the singular values of :math:`C_x^{-1/2} C_{xy} C_y^{-1/2}`, computed in float64.

    Shape:
        - x: (N, Dx), y: (N, Dy)
    """
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    n = x.shape[0]

    def whiten(a):
        cov = a.T @ a / n
        values, vectors = torch.linalg.eigh(cov)
        values = values.clamp_min(float(values.max()) * 1e-12 + 1e-300)
        return a @ vectors @ torch.diag(values.rsqrt()) @ vectors.T

    cross = whiten(x).T @ whiten(y) / n
    return torch.linalg.svdvals(cross).clamp(0.0, 1.0 - 1e-9)


def gaussian_information(rho: torch.Tensor, alpha: float) -> float:
    r""":math:`I_G(\alpha) = -\frac12 \sum_i \log(1 - (1 - \alpha^2)^2 \rho_i^2)` in nats: the
    mutual information of Gaussian data with canonical correlations :math:`\rho_i`, after linear
    mixing with weight :math:`\alpha` (decreasing from :math:`I_G(0)` to 0 at
    :math:`\alpha = 1`)."""
    shrink = (1.0 - alpha**2) ** 2
    return float(-0.5 * torch.log1p(-shrink * rho.double() ** 2).sum())


def equal_information_alphas(x: torch.Tensor, y: torch.Tensor, waymarks: int) -> torch.Tensor:
    r"""Mixing weights with :math:`I_G(\alpha_k) = (1 - k/K)\,I_G(0)`: each linear-mixing bridge
    removes an equal share of the data's Gaussian information (falls back to :math:`k/K` when the
    columns are uncorrelated, :math:`I_G(0) < 10^{-9}`).

    Returns:
        float64 tensor of shape (K + 1,), :math:`\alpha_0 = 0`, :math:`\alpha_K = 1`, increasing.

    Shape:
        - x: (N, Dx), y: (N, Dy)
    """
    check_int("waymarks", waymarks, minimum=1)
    rho = canonical_correlations(x, y)
    return equal_share_alphas(lambda alpha: gaussian_information(rho, alpha), waymarks)


def product_samples(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Samples of :math:`p(x)p(y)` from paired rows: x and y rows of two independent random
    permutations, :math:`(x_{\pi(i)}, y_{\sigma(i)})`.

    Shape:
        - x: (N, Dx), y: (N, Dy); outputs the same
    """
    n = x.shape[0]
    return x[torch.randperm(n, generator=generator)], y[torch.randperm(n, generator=generator)]
