r"""Logistic noise-contrastive estimation (Gutmann & Hyvärinen, 2010; 2012).

Data :math:`x_1..x_N` are mixed with noise :math:`y` drawn from a known density :math:`p_n`,
:math:`\nu` noise samples per datum. The Bayes-optimal classifier between the two has logit

.. math:: G(u) = \log p_m(u) - \log \nu - \log p_n(u),

so a classifier whose logit is built from an unnormalized model :math:`\log p_m = f_\theta - \log Z`
learns the density ratio, and :math:`\log Z` becomes one more parameter to learn. The objective is
the log-likelihood of the classifier; this module returns its negative,

.. math:: \ell = -\frac{1}{N}\Big[\sum_i \log\sigma(G(x_i)) + \sum_j \log\sigma(-G(y_j))\Big],

which equals :math:`-J_T` of Gutmann & Hyvärinen (2012, eq. 8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nce._validation import (
    check_compatible,
    check_positive,
    check_reduction,
    check_same_shape,
    check_same_size,
    check_tensor,
)
from nce.functional._common import finish, upcast


def binary_nce(
    log_model_data: torch.Tensor,
    log_noise_data: torch.Tensor,
    log_model_noise: torch.Tensor,
    log_noise_noise: torch.Tensor,
    *,
    noise_ratio: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Binary (logistic) NCE loss of Gutmann & Hyvärinen (AISTATS 2010; JMLR 13:307, 2012).

    With :math:`G(u) = \log p_m(u) - \log\nu - \log p_n(u)`,

    .. math:: \ell = -\frac{1}{N}\Big[\sum_{i=1}^{N} \log\sigma(G(x_i))
              + \sum_{j} \log\sigma(-G(y_j))\Big].

    Args:
        log_model_data: :math:`\log p_m(x_i)`, the model's (normalized, or with a learned
            :math:`\log Z` subtracted) log density of each datum.
        log_noise_data: :math:`\log p_n(x_i)`, the noise log density of each datum.
        log_model_noise: :math:`\log p_m(y)` for the noise samples: per datum (N, K) or shared (M,).
        log_noise_noise: :math:`\log p_n(y)`, same shape as ``log_model_noise``.
        noise_ratio: :math:`\nu`, noise samples per datum. Defaults to K (per datum) or M / N
            (shared).
        reduction: "mean" (the formula above), "sum" (N times it) or "none": shape (N,), each
            datum's term plus its own noise terms; with shared noise, each datum carries 1/N of the
            shared noise terms, so that "mean" is always the mean of "none".

    Shape:
        - log_model_data, log_noise_data: (N,)
        - log_model_noise, log_noise_noise: (N, K) or (M,)
        - output: () or (N,) for reduction="none"

    Half-precision inputs are computed in float32 and the result is returned in their dtype.
    Finite inputs never give inf or NaN: a result beyond the range of that dtype (float16 tops
    out at 65504, e.g. with reduction="sum" over many rows) or of the compute
    dtype raises ``ValueError`` naming the arguments; use float32 inputs or reduction="mean".

    Example:
        >>> import torch, nce
        >>> x, y = torch.randn(100), torch.randn(100, 5)
        >>> std = torch.distributions.Normal(0.0, 1.0)
        >>> lp = std.log_prob
        >>> loss = nce.binary_nce(lp(x), lp(x), lp(y), lp(y))
        >>> round(float(loss), 4)  # model == noise: log(1 + ν) + ν log(1 + 1/ν), ν = 5
        2.7034
    """
    check_reduction(reduction)
    check_tensor("log_model_data", log_model_data, 1)
    check_tensor("log_noise_data", log_noise_data, 1)
    check_tensor("log_model_noise", log_model_noise, (1, 2))
    check_tensor("log_noise_noise", log_noise_noise, (1, 2))
    check_same_shape(log_model_data=log_model_data, log_noise_data=log_noise_data)
    check_same_shape(log_model_noise=log_model_noise, log_noise_noise=log_noise_noise)
    check_compatible(
        log_model_data=log_model_data,
        log_noise_data=log_noise_data,
        log_model_noise=log_model_noise,
        log_noise_noise=log_noise_noise,
    )
    per_datum_noise = log_model_noise.dim() == 2
    if per_datum_noise:
        check_same_size(0, "batch", log_model_data=log_model_data, log_model_noise=log_model_noise)
    n_data = log_model_data.shape[0]
    if noise_ratio is None:
        noise_ratio = (
            log_model_noise.shape[-1] if per_datum_noise else log_model_noise.numel() / n_data
        )
    else:
        check_positive("noise_ratio", noise_ratio)

    out_dtype = log_model_data.dtype
    lm_x, ln_x, lm_y, ln_y = upcast(
        log_model_data, log_noise_data, log_model_noise, log_noise_noise
    )
    log_nu = math.log(noise_ratio)
    data_term = F.logsigmoid(lm_x - log_nu - ln_x)
    noise_term = F.logsigmoid(-(lm_y - log_nu - ln_y))
    noise_per_datum = noise_term.sum(-1) if per_datum_noise else noise_term.sum() / n_data
    loss = -(data_term + noise_per_datum)

    def describe() -> str:
        return f"noise_ratio={noise_ratio:.6g}, {lm_x.dtype} log-densities"

    return finish(loss, reduction, out_dtype, bound=None, describe=describe)
