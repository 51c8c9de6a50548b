r"""The NWJ bound (Nguyen, Wainwright & Jordan, 2010, arXiv:0809.0853), also called f-divergence
or MINE-f.

Mutual information is the KL divergence between the joint :math:`p(x, y)` and the product of
marginals :math:`q(x, y) = p(x)p(y)`. The convex dual of :math:`t \log t` gives, for any critic f,

.. math:: \mathrm{KL}(p \,\|\, q) \ge \mathbb{E}_p[f] - \mathbb{E}_q[e^{f - 1}],

tight at :math:`f = 1 + \log p(x, y)/(p(x)p(y))`. In a batch of N pairs the diagonal of the score
matrix samples p, the N(N − 1) off-diagonal entries sample q. Both expectations are estimated
without bias, so the bound is unbiased for a fixed critic and is not capped by log N; the price is
the variance of :math:`e^{f}`, which grows like :math:`e^{I}` (Song & Ermon, 2020).
"""

from __future__ import annotations

import torch

from nce.mi._scores import check_scores, logmeanexp_off_diagonal


def nwj_bound(scores: torch.Tensor) -> torch.Tensor:
    r"""NWJ lower bound on :math:`I(X; Y)` from a critic score matrix, in nats.

    .. math:: I_{\mathrm{NWJ}} = \frac{1}{N} \sum_i s_{ii}
              - e^{-1} \frac{1}{N(N-1)} \sum_{i \ne j} e^{s_{ij}}.

    The optimal critic is :math:`1 + \log p(y|x)/p(y)`.

    Args:
        scores: :math:`s_{ij} = f(x_i, y_j)`; the diagonal holds the N positive pairs.

    Shape:
        - scores: (N, N), N >= 2
        - output: ()

    References:
        Nguyen, Wainwright & Jordan (2010), arXiv:0809.0853. Poole et al. (2019), arXiv:1905.06922.

    Example:
        >>> import torch
        >>> from nce.mi import nwj_bound
        >>> float(nwj_bound(torch.ones(8, 8)))  # a constant critic f = 1 proves nothing
        0.0
    """
    dtype = scores.dtype
    s = check_scores(scores)
    bound = s.diagonal().mean() - (logmeanexp_off_diagonal(s) - 1).exp()
    return bound.to(dtype)
