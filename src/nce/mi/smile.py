r"""SMILE: the smoothed mutual information lower-bound estimator (Song & Ermon, 2020,
arXiv:1910.06222).

Song and Ermon show that the variance of the NWJ and MINE estimates grows exponentially with the
true information: both average :math:`e^{f}` over the product of marginals, and at the optimum
:math:`e^{f}` is the density ratio, whose variance under :math:`p(x)p(y)` is
:math:`e^{\chi^2}`-large. SMILE clips the ratio in the partition term to
:math:`[e^{-\tau}, e^{\tau}]`:

.. math:: I_{\mathrm{SMILE}} = \mathbb{E}_p[f]
          - \log \mathbb{E}_q\big[\mathrm{clip}(e^{f}, e^{-\tau}, e^{\tau})\big].

Clipping trades variance for bias; :math:`\tau \to \infty` recovers Donsker–Varadhan. As in the
authors' implementation, the critic is trained with the Jensen–Shannon objective (a stable
estimate of the log density ratio) and SMILE is only the read-out: the gradient of
:func:`smile_bound` is that of :func:`nce.mi.js_objective`.
"""

from __future__ import annotations

import math

import torch

from nce._validation import check_positive
from nce.mi._scores import check_scores, logmeanexp_off_diagonal
from nce.mi.js import js_objective


def smile_bound(scores: torch.Tensor, clip: float | None = 5.0) -> torch.Tensor:
    r"""SMILE estimate of :math:`I(X; Y)` from a critic score matrix, in nats.

    .. math:: I_{\mathrm{SMILE}} = \frac{1}{N} \sum_i s_{ii}
              - \log \frac{1}{N(N-1)} \sum_{i \ne j} e^{\mathrm{clip}(s_{ij}, -\tau, \tau)},
              \qquad \nabla I_{\mathrm{SMILE}} := \nabla J_{\mathrm{JS}}.

    Args:
        scores: :math:`s_{ij} = f(x_i, y_j)`; the diagonal holds the N positive pairs.
        clip: :math:`\tau > 0`; ``None`` gives the Donsker–Varadhan value.

    Shape:
        - scores: (N, N), N >= 2
        - output: ()

    References:
        Song & Ermon (2020), arXiv:1910.06222.

    Example:
        >>> import torch
        >>> from nce.mi import dv_bound, smile_bound
        >>> s = torch.randn(16, 16)
        >>> torch.allclose(smile_bound(s, clip=None), dv_bound(s))
        True
    """
    if clip is not None:
        check_positive("clip", clip)
    dtype = scores.dtype
    s = check_scores(scores)
    clipped = s if clip is None or math.isinf(clip) else s.clamp(-clip, clip)
    value = s.diagonal().mean() - logmeanexp_off_diagonal(clipped)
    objective = js_objective(s)
    return (objective + (value - objective).detach()).to(dtype)
