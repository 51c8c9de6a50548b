r"""Waymarks: distributions :math:`p_0, \dots, p_K` bridging a distribution :math:`p_0 = p` and a
reference :math:`p_K = q`, for telescoping ratio estimation (Rhodes, Xu & Gutmann, 2020,
arXiv:2006.12204). With them a log-ratio that one classifier cannot learn (p and q far apart: the
classifier separates them perfectly long before its logit is right) is a sum of K easy ones,

.. math:: \log \frac{p_0(u)}{p_K(u)} = \sum_{k=0}^{K-1} \log \frac{p_k(u)}{p_{k+1}(u)}.

Both TRE estimators use these pieces: mutual information (:mod:`nce.mi.tre`, p the joint and q
the product of marginals) and densities (:mod:`nce.density.telescoping`, p the data and q the
noise). Each waymark sample mixes one sample :math:`u_p` of p with one sample :math:`u_q` of q:

* **linear mixing** (Rhodes, Xu & Gutmann, 2020, Eq. 6):
  :math:`u_k = \sqrt{1 - \alpha_k^2}\, u_p + \alpha_k u_q` with :math:`0 = \alpha_0 < \alpha_1 <
  \dots < \alpha_K = 1` (:func:`linear_waymarks`);
* **dimension-wise mixing**: waymark k takes its first columns from :math:`u_q` and the rest from
  :math:`u_p`, a K-th more of them at each step (:func:`dimensionwise_waymarks`).

**Spacing.** :func:`equal_share_alphas` spaces the :math:`\alpha_k` so that each bridge removes
the same share of a divergence :math:`\mathcal D(\alpha)` from waymark :math:`\alpha` to q
(decreasing to 0 at :math:`\alpha = 1`): :math:`\alpha_k` solves
:math:`\mathcal D(\alpha_k) = (1 - k/K)\,\mathcal D(0)`. The estimators pass the divergence of
Gaussians fitted to their data, so that for Gaussian data every bridge is equally hard.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nce._validation import check_int

__all__ = [
    "WAYMARK_MIXING",
    "dimensionwise_waymarks",
    "equal_share_alphas",
    "linear_alphas",
    "linear_waymarks",
]

WAYMARK_MIXING = ("linear", "dimensionwise")


def linear_alphas(waymarks: int) -> torch.Tensor:
    r"""Evenly spaced mixing weights :math:`\alpha_k = k/K`, k = 0..K.

    Shape:
        - output: (K + 1,), float64

    Reference:
        Rhodes, Xu & Gutmann, *Telescoping Density-Ratio Estimation*, NeurIPS 2020,
        arXiv:2006.12204.
    """
    check_int("waymarks", waymarks, minimum=1)
    return torch.arange(waymarks + 1, dtype=torch.float64) / waymarks


def equal_share_alphas(divergence: Callable[[float], float], waymarks: int) -> torch.Tensor:
    r"""Mixing weights with :math:`\mathcal D(\alpha_k) = (1 - k/K)\,\mathcal D(0)`: each
    linear-mixing bridge removes an equal share of ``divergence`` (falls back to :math:`k/K`
    when :math:`\mathcal D(0) < 10^{-9}`). Each :math:`\alpha_k` is found by bisection on
    :math:`[\alpha_{k-1}, 1]`.

    Args:
        divergence: :math:`\alpha \mapsto \mathcal D(\alpha)`, decreasing from
            :math:`\mathcal D(0)` to 0 at :math:`\alpha = 1`.
        waymarks: K, the number of bridges.

    Returns:
        float64 tensor of shape (K + 1,), :math:`\alpha_0 = 0`, :math:`\alpha_K = 1`, increasing.

    Shape:
        - output: (K + 1,), float64

    Reference:
        Rhodes, Xu & Gutmann, *Telescoping Density-Ratio Estimation*, NeurIPS 2020,
        arXiv:2006.12204.

    Example:
        >>> equal_share_alphas(lambda a: 1 - a, 4)
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
    """
    check_int("waymarks", waymarks, minimum=1)
    total = divergence(0.0)
    if total < 1e-9:
        return linear_alphas(waymarks)
    alphas = [0.0]
    for k in range(1, waymarks):
        target = total * (1 - k / waymarks)
        low, high = alphas[-1], 1.0
        for _ in range(60):  # bisection: the divergence decreases in alpha
            middle = 0.5 * (low + high)
            if divergence(middle) > target:
                low = middle
            else:
                high = middle
        alphas.append(0.5 * (low + high))
    alphas.append(1.0)
    return torch.tensor(alphas, dtype=torch.float64)


def linear_waymarks(
    joint: torch.Tensor, product: torch.Tensor, alphas: torch.Tensor
) -> torch.Tensor:
    r"""Linear mixing :math:`u_k = \sqrt{1 - \alpha_k^2}\, u_p + \alpha_k u_q` of paired samples
    of p and q, for every k. Columns of unit variance keep unit variance, and every covariance
    within :math:`u_p` shrinks by the factor :math:`1 - \alpha_k^2`.

    Args:
        joint: samples :math:`u_p` of p (for mutual information, of p(x, y): the columns of x
            then of y).
        product: samples :math:`u_q` of q, in the same columns.
        alphas: the mixing weights, :math:`\alpha_0 = 0` gives p, :math:`\alpha_K = 1` gives q.

    Shape:
        - joint, product: (N, D)
        - alphas: (K + 1,)
        - output: (K + 1, N, D)

    Reference:
        Rhodes, Xu & Gutmann, *Telescoping Density-Ratio Estimation*, NeurIPS 2020, arXiv:2006.12204
        (Eq. 6).
    """
    alphas = alphas.to(joint.dtype)
    keep = torch.sqrt((1 - alphas**2).clamp_min(0))
    return keep[:, None, None] * joint + alphas[:, None, None] * product


def dimensionwise_waymarks(
    joint: torch.Tensor, product: torch.Tensor, waymarks: int, x_features: int
) -> torch.Tensor:
    r"""Dimension-wise mixing: waymark k takes the first :math:`\lceil k D_x/K \rceil` columns of x
    and the first :math:`\lceil k D_y/K \rceil` columns of y from the samples of q, the rest from
    the samples of p. With ``x_features`` = D (no y), waymark k takes the first
    :math:`\lceil k D/K \rceil` columns from q.

    Args:
        joint: samples of p (for mutual information, of p(x, y): the ``x_features`` columns of x
            then those of y).
        product: samples of q, in the same columns.
        waymarks: K, the number of bridges.
        x_features: :math:`D_x`.

    Shape:
        - joint, product: (N, Dx + Dy)
        - output: (K + 1, N, Dx + Dy)

    Reference:
        Rhodes, Xu & Gutmann, *Telescoping Density-Ratio Estimation*, NeurIPS 2020,
        arXiv:2006.12204.
    """
    check_int("waymarks", waymarks, minimum=1)
    d = joint.shape[1]
    y_features = d - x_features
    columns = torch.arange(d)
    out = []
    for k in range(waymarks + 1):
        from_x = math.ceil(k * x_features / waymarks)
        from_y = math.ceil(k * y_features / waymarks)
        from_product = (columns < from_x) | (
            (columns >= x_features) & (columns < x_features + from_y)
        )
        out.append(torch.where(from_product, product, joint))
    return torch.stack(out)
