r"""The InfoNCE bound (van den Oord et al., 2018, arXiv:1807.03748; Poole et al., 2019,
arXiv:1905.06922).

Draw N pairs :math:`(x_i, y_i) \sim p(x, y)` and score every combination with a critic,
:math:`s_{ij} = f(x_i, y_j)`. Picking the true partner of :math:`x_i` among the N candidates is an
N-way classification; its log-likelihood, plus log N, lower-bounds the mutual information:

.. math:: I(X; Y) \ge I_{\mathrm{NCE}} = \mathbb{E}\Big[\frac{1}{N} \sum_i
          \log \frac{e^{s_{ii}}}{\frac{1}{N} \sum_j e^{s_{ij}}}\Big].

The bound follows from the Donsker–Varadhan bound with a baseline averaged over the batch (Poole
et al., Sec. 2.3). It is tight for the critic :math:`f(x, y) = \log p(y|x)/p(y) + c(x)` only as
N grows: each term is at most :math:`\log N` (the positive's share of the softmax is at most 1), so

.. math:: I_{\mathrm{NCE}} \le \log N

for any critic whatever the true information. Its variance is low, which is why it trains
representations well; its cap is why it cannot measure large information on small batches.
"""

from __future__ import annotations

import math
import warnings

import torch

from nce.mi._scores import check_scores


def info_nce_bound(scores: torch.Tensor) -> torch.Tensor:
    r"""InfoNCE lower bound on :math:`I(X; Y)` from a critic score matrix, in nats.

    .. math:: I_{\mathrm{NCE}} = \frac{1}{N} \sum_i \Big[s_{ii} - \log \sum_j e^{s_{ij}}\Big]
              + \log N \;\le\; \log N.

    Maximizing it over the critic is minimizing :func:`nce.info_nce` (with the dot-product critic).

    Args:
        scores: :math:`s_{ij} = f(x_i, y_j)`; the diagonal holds the N positive pairs.

    Shape:
        - scores: (N, N), N >= 2
        - output: ()

    References:
        van den Oord, Li & Vinyals (2018), arXiv:1807.03748. Poole et al. (2019), arXiv:1905.06922.

    Example:
        >>> import torch
        >>> from nce.mi import info_nce_bound
        >>> info_nce_bound(10 * torch.eye(64)) <= torch.log(torch.tensor(64.0))
        tensor(True)
    """
    dtype = scores.dtype
    s = check_scores(scores)
    n = s.shape[0]
    bound = (s.diagonal() - torch.logsumexp(s, 1)).mean() + math.log(n)
    return bound.to(dtype)


def infonce_bound(scores: torch.Tensor) -> torch.Tensor:
    r"""Deprecated name of :func:`info_nce_bound` (the bound is named after its loss,
    :func:`nce.info_nce`); it will be removed in the next release.

    .. math:: I_{\mathrm{NCE}} = \frac{1}{N} \sum_i \Big[s_{ii} - \log \sum_j e^{s_{ij}}\Big]
              + \log N

    Shape:
        - scores: (N, N), N >= 2; output: ()

    References:
        van den Oord, Li & Vinyals (2018), arXiv:1807.03748.
    """
    warnings.warn(
        "infonce_bound is deprecated and will be removed in the next release; use info_nce_bound",
        DeprecationWarning,
        stacklevel=2,
    )
    return info_nce_bound(scores)
