r"""Conditional noise-contrastive estimation (Ceylan & Gutmann, 2018).

Each datum :math:`x` gets :math:`\kappa` noise points drawn *around it*, :math:`y \sim p_c(y \mid
x)`. A classifier is asked which of the pair :math:`(x, y)` or :math:`(y, x)` is the ordered one
(datum first); its Bayes-optimal logit is

.. math:: G(x, y) = \log\frac{p_d(x)}{p_d(y)} + \log\frac{p_c(y \mid x)}{p_c(x \mid y)}.

With an unnormalized model :math:`\varphi_\theta` in place of :math:`p_d` the partition function
cancels in the first ratio, and for a *symmetric* noise, :math:`p_c(y \mid x) = p_c(x \mid y)`
(e.g. :math:`y = x + \varepsilon` with :math:`\varepsilon` and :math:`-\varepsilon` equally
likely), the second ratio is 0:

.. math:: G(x, y) = \log\varphi_\theta(x) - \log\varphi_\theta(y),

so neither a log-partition nor a noise density enters the loss. Since :math:`G(y, x) = -G(x, y)`
the two orderings give the same term, and the loss is

.. math:: J(\theta) = \frac{1}{N\kappa}\sum_{i=1}^N \sum_{j=1}^\kappa
          \log\big(1 + e^{-G(x_i, y_{ij})}\big),

half of :math:`J_N` of Ceylan & Gutmann (eq. 7). It is minimized by :math:`\varphi_\theta \propto
p_d` (their Theorem 1); the normalization is left undetermined and must be found afterwards (e.g.
by importance sampling). As the noise shrinks (:math:`\varepsilon \to 0`) the loss tends to
:math:`\log 2` and its minimizer to score matching's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nce._validation import check_compatible, check_reduction, check_same_size, check_tensor
from nce.functional._common import finish, upcast


def conditional_nce(
    log_model_data: torch.Tensor,
    log_model_noise: torch.Tensor,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Conditional NCE loss of Ceylan & Gutmann (ICML 2018) for a symmetric conditional noise.

    With :math:`G(x_i, y_{ij}) = \log\varphi(x_i) - \log\varphi(y_{ij})`, where
    :math:`y_{ij}` is the :math:`j`-th of :math:`\kappa` noise points drawn around :math:`x_i`
    from a symmetric :math:`p_c(y \mid x) = p_c(x \mid y)`,

    .. math:: J = \frac{1}{N\kappa}\sum_{i=1}^N \sum_{j=1}^\kappa
              \log\big(1 + e^{-G(x_i, y_{ij})}\big).

    Adding a constant to every log density (e.g. a :math:`-\log Z`) leaves :math:`J` unchanged:
    unnormalized log densities are fine, and nothing fits their normalization.

    Args:
        log_model_data: :math:`\log\varphi(x_i)`, the model's (unnormalized) log density of each
            datum.
        log_model_noise: :math:`\log\varphi(y_{ij})` for the :math:`\kappa` noise points drawn
            around datum :math:`i` (row :math:`i`).
        reduction: "mean" (the formula above), "sum" (N times it) or "none": shape (N,), each
            datum's mean over its own :math:`\kappa` noise points, so that "mean" is the mean of
            "none".

    Shape:
        - log_model_data: (N,)
        - log_model_noise: (N, K), K = :math:`\kappa` noise points per datum
        - output: () or (N,) for reduction="none"

    Half-precision inputs are computed in float32 and the result is returned in their dtype.

    References:
        | Conditional noise-contrastive estimation of unnormalised models (Ceylan & Gutmann,
        | ICML 2018), https://arxiv.org/abs/1806.03664

    Example:
        >>> import torch, nce
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(1000, 2, generator=g)
        >>> y = x[:, None, :] + 0.5 * torch.randn(1000, 5, 2, generator=g)  # noise around each x
        >>> log_phi = lambda u: -0.5 * u.square().sum(-1)  # unnormalized standard normal
        >>> flat = lambda u: u.new_zeros(u.shape[:-1])       # a model that cannot tell x from y
        >>> round(nce.conditional_nce(flat(x), flat(y)).item(), 3)  # log 2
        0.693
        >>> bool(nce.conditional_nce(log_phi(x), log_phi(y)) < 0.66)  # the true model does better
        True
    """
    check_reduction(reduction)
    check_tensor("log_model_data", log_model_data, 1)
    check_tensor("log_model_noise", log_model_noise, 2)
    check_compatible(log_model_data=log_model_data, log_model_noise=log_model_noise)
    check_same_size(0, "batch", log_model_data=log_model_data, log_model_noise=log_model_noise)
    out_dtype = log_model_data.dtype
    log_data, log_noise = upcast(log_model_data, log_model_noise)
    logit = log_data[:, None] - log_noise
    loss = F.softplus(-logit).mean(-1)

    def describe() -> str:
        return f"{log_data.dtype} log-densities"

    return finish(loss, reduction, out_dtype, bound=None, describe=describe)
