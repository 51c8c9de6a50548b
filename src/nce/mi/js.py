r"""Jensen–Shannon critic training, evaluated with NWJ (Poole et al., 2019, arXiv:1905.06922,
Sec. 2.4; Hjelm et al., 2019, arXiv:1808.06670).

Train the critic as a logistic classifier of joint pairs against shuffled pairs, the f-GAN form of
the Jensen–Shannon divergence (Nowozin et al., 2016, arXiv:1606.00709):

.. math:: J(f) = \mathbb{E}_p[-\mathrm{softplus}(-f)] - \mathbb{E}_q[\mathrm{softplus}(f)]
          \le 2\,\mathrm{JS}(p \,\|\, q) - \log 4,

with :math:`q = p(x)p(y)`. Its maximizer is the log density ratio
:math:`f^* = \log p(x, y)/(p(x)p(y))` — the ratio is learned by classification, with bounded,
low-variance gradients. JS is not the mutual information, but :math:`f^*` is exactly what the NWJ
bound needs up to a shift of 1, so the estimate reported is

.. math:: I_{\mathrm{JS}} = I_{\mathrm{NWJ}}(f + 1) = 1 + \mathbb{E}_p[f] - \mathbb{E}_q[e^{f}],

a valid lower bound for any f, tight at :math:`f^*`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nce.mi._scores import check_scores, logmeanexp_off_diagonal, off_diagonal


def js_objective(scores: torch.Tensor) -> torch.Tensor:
    r"""The f-GAN Jensen–Shannon objective of a critic score matrix (maximize it).

    .. math:: J = -\frac{1}{N} \sum_i \mathrm{softplus}(-s_{ii})
              - \frac{1}{N(N-1)} \sum_{i \ne j} \mathrm{softplus}(s_{ij})
              \;\le\; 2\,\mathrm{JS}(p_{XY} \,\|\, p_X p_Y) - \log 4.

    Args:
        scores: :math:`s_{ij} = f(x_i, y_j)`; the diagonal holds the N positive pairs.

    Shape:
        - scores: (N, N), N >= 2
        - output: ()

    References:
        Nowozin, Cseke & Tomioka (2016), arXiv:1606.00709. Poole et al. (2019), arXiv:1905.06922.

    Example:
        >>> import torch
        >>> from nce.mi import js_objective
        >>> round(float(js_objective(torch.zeros(8, 8))), 4)  # an uninformed critic: -log 4
        -1.3863
    """
    dtype = scores.dtype
    s = check_scores(scores)
    n = s.shape[0]
    positive = -F.softplus(-s.diagonal()).mean()
    negative = F.softplus(s).masked_select(off_diagonal(n, s.device)).mean()
    return (positive - negative).to(dtype)


def js_bound(scores: torch.Tensor) -> torch.Tensor:
    r"""The "js" estimator: value of NWJ at f + 1, gradient of the Jensen–Shannon objective.

    .. math:: I_{\mathrm{JS}} = 1 + \frac{1}{N} \sum_i s_{ii}
              - \frac{1}{N(N-1)} \sum_{i \ne j} e^{s_{ij}},
              \qquad \nabla I_{\mathrm{JS}} := \nabla J,

    with J :func:`js_objective`. Maximizing it trains the critic by classification and reports a
    lower bound on :math:`I(X; Y)` in nats, tight when the critic is the log density ratio.

    Args:
        scores: :math:`s_{ij} = f(x_i, y_j)`; the diagonal holds the N positive pairs.

    Shape:
        - scores: (N, N), N >= 2
        - output: ()

    References:
        Poole et al. (2019), arXiv:1905.06922, Sec. 2.4.

    Example:
        >>> import torch
        >>> from nce.mi import js_bound
        >>> float(js_bound(torch.zeros(8, 8)))  # f = 0: the ratio 1, no information
        0.0
    """
    dtype = scores.dtype
    s = check_scores(scores)
    value = 1 + s.diagonal().mean() - logmeanexp_off_diagonal(s).exp()
    objective = js_objective(s)
    return (objective + (value - objective).detach()).to(dtype)
