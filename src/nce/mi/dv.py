r"""The Donsker–Varadhan bound and MINE (Belghazi et al., 2018, arXiv:1801.04062).

Donsker and Varadhan's variational form of the KL divergence between the joint
:math:`p(x, y)` and :math:`q(x, y) = p(x)p(y)` is, for any critic f,

.. math:: I(X; Y) \ge \mathbb{E}_p[f] - \log \mathbb{E}_q[e^{f}],

tight at :math:`f = \log p(y|x)/p(y) + c` for any constant c. It is tighter than NWJ for every
critic (NWJ is DV with :math:`\log z \le z/e`), but the log outside the expectation makes the
batch estimate biased, and so is its gradient:
:math:`\nabla \log \mathbb{E}_q e^f = \mathbb{E}_q[e^f \nabla f] / \mathbb{E}_q[e^f]`, whose
denominator a single batch estimates poorly. MINE replaces that denominator by a moving average
over batches, which reduces the bias of the gradient; the value reported is still the DV bound of
the batch. With N pairs, :math:`\log \mathbb{E}_q[e^f]` is a log-mean over the N(N − 1) negatives,
so a large DV estimate needs a critic that ranks N² pairs correctly (McAllester & Stratos, 2020,
arXiv:1811.04251: no distribution-free high-confidence lower bound exceeds O(log N)).
"""

from __future__ import annotations

import torch

from nce._validation import check_tensor
from nce.mi._scores import check_scores, logmeanexp_off_diagonal


def dv_bound(scores: torch.Tensor) -> torch.Tensor:
    r"""Donsker–Varadhan lower bound on :math:`I(X; Y)` from a critic score matrix, in nats.

    .. math:: I_{\mathrm{DV}} = \frac{1}{N} \sum_i s_{ii}
              - \log \frac{1}{N(N-1)} \sum_{i \ne j} e^{s_{ij}}.

    Invariant to adding a constant to every score.

    Args:
        scores: :math:`s_{ij} = f(x_i, y_j)`; the diagonal holds the N positive pairs.

    Shape:
        - scores: (N, N), N >= 2
        - output: ()

    References:
        Donsker & Varadhan (1983). Belghazi et al. (2018), arXiv:1801.04062.

    Example:
        >>> import torch
        >>> from nce.mi import dv_bound
        >>> s = torch.randn(16, 16)
        >>> torch.allclose(dv_bound(s), dv_bound(s + 3.0))
        True
    """
    dtype = scores.dtype
    s = check_scores(scores)
    return (s.diagonal().mean() - logmeanexp_off_diagonal(s)).to(dtype)


def mine_bound(scores: torch.Tensor, moving_average: torch.Tensor | float) -> torch.Tensor:
    r"""The DV bound with MINE's bias-corrected gradient: the objective to maximize when training.

    Its value is :func:`dv_bound`; its gradient replaces the batch estimate of
    :math:`\mathbb{E}_q[e^f]` in the denominator by ``moving_average`` :math:`\bar m`:

    .. math:: \nabla = \frac{1}{N} \sum_i \nabla s_{ii}
              - \frac{1}{\bar m} \frac{1}{N(N-1)} \sum_{i \ne j} e^{s_{ij}} \nabla s_{ij}.

    The caller keeps :math:`\bar m \leftarrow \beta \bar m + (1 - \beta) \hat m` with
    :math:`\hat m = \frac{1}{N(N-1)} \sum_{i \ne j} e^{s_{ij}}` of each batch (detached), as
    :func:`nce.mi.estimate_mi` does with :math:`\beta = 0.99`.

    Args:
        scores: :math:`s_{ij} = f(x_i, y_j)`; the diagonal holds the N positive pairs.
        moving_average: :math:`\bar m > 0`, the running mean of :math:`\hat m` (not differentiated).

    Shape:
        - scores: (N, N), N >= 2
        - moving_average: () or a number
        - output: ()

    References:
        Belghazi et al. (2018), arXiv:1801.04062, Sec. 3.2.

    Example:
        >>> import torch
        >>> from nce.mi import dv_bound, mine_bound
        >>> s = torch.randn(16, 16)
        >>> torch.allclose(mine_bound(s, 1.3), dv_bound(s))
        True
    """
    dtype = scores.dtype
    s = check_scores(scores)
    if isinstance(moving_average, torch.Tensor):
        check_tensor("moving_average", moving_average, 0)
        average = moving_average.detach().to(s)
    elif isinstance(moving_average, (int, float)) and not isinstance(moving_average, bool):
        average = torch.tensor(float(moving_average), dtype=s.dtype, device=s.device)
    else:
        raise TypeError(f"moving_average must be a number or a 0-D tensor, got {moving_average!r}")
    if not bool((average > 0) & torch.isfinite(average)):
        raise ValueError(f"moving_average must be finite and > 0, got {float(average)}")
    log_mean = logmeanexp_off_diagonal(s)
    corrected = log_mean.exp() / average
    bound = s.diagonal().mean() - log_mean.detach() - corrected + corrected.detach()
    return bound.to(dtype)
