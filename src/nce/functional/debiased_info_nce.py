r"""Debiased (Chuang et al., 2020, arXiv:2007.00224) and hard-negative (Robinson et al., 2021,
arXiv:2010.04592) contrastive losses.

In-batch negatives are drawn from the data, so with class prior :math:`\tau^+` a fraction of them
are false negatives. With :math:`M = N - 1` negatives of query :math:`i`, positive score
:math:`e^{s_{ii}}` and negative scores :math:`e^{s_{ij}}` (:math:`s = \cos/t`), Chuang et al.
estimate the true-negative mass as

.. math:: N_g = \max\Big(\frac{\sum_j w_j e^{s_{ij}} - \tau^+ M e^{s_{ii}}}{1 - \tau^+},
          \; M e^{-1/t}\Big),

the floor being the smallest value the mass can take for unit vectors. Robinson et al. reweight the
negatives by their hardness, :math:`w_j = e^{\beta s_{ij}} / \tfrac1M\sum_l e^{\beta s_{il}}`
(:math:`\beta = 0`: all weights 1). The loss is :math:`-\log\frac{e^{s_{ii}}}{e^{s_{ii}} + N_g}`;
with :math:`\tau^+ = 0, \beta = 0` it is InfoNCE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nce._validation import (
    check_compatible,
    check_in_range,
    check_int,
    check_reduction,
    check_tensor,
    shape_str,
)
from nce.functional._common import as_scale, check_temperature, compute_dtype, finish, l2_normalize
from nce.functional._row_lse import row_logsumexp


def debiased_info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    tau_plus: float,
    beta: float = 0.0,
    temperature: float | torch.Tensor = 0.5,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Debiased contrastive loss with optional hard-negative weighting, in-batch negatives.

    .. math:: \ell_i = \log\big(e^{s_{ii}} + N_g(i)\big) - s_{ii}, \qquad s = q k^\top / t,

    with :math:`N_g` the debiased, reweighted negative mass above (computed in log space).

    Args:
        query: queries, L2-normalized inside.
        key: positive keys; the other keys of the batch are each query's M = N − 1 negatives.
        tau_plus: :math:`\tau^+ \in [0, 1)`, probability that a negative shares the query's class.
        beta: :math:`\beta \ge 0`, hardness concentration (0: Chuang et al.; > 0: Robinson et al.).
        temperature: :math:`t > 0`, a number or a scalar tensor.
        reduction: "mean" | "sum" | "none" (shape (N,)).
        chunk_size: the similarity matrix is computed in tiles of at most ``chunk_size`` rows,
            never whole: memory O(N·D + chunk_size·N). None (the default) lets the library
            choose the tile size. Any value gives the same result; only memory and speed change.

    Shape:
        - query, key: (N, D), N >= 2
        - output: () or (N,) for reduction="none"

    Half-precision inputs are computed in float32 and the result is returned in their dtype.
    Finite inputs never give inf or NaN: a result beyond the range of that dtype (float16 tops
    out at 65504, e.g. reduction="sum" over many rows, or a tiny temperature) or of the compute
    dtype raises ``ValueError`` naming the arguments; use float32 inputs or reduction="mean".

    The log-sum-exp terms are computed tile by tile in a custom autograd function: first-order
    gradients only.

    References:
        Chuang et al. 2020, Debiased Contrastive Learning, arXiv:2007.00224;
        Robinson et al. 2021, Contrastive Learning with Hard Negative Samples, arXiv:2010.04592.

    Example:
        >>> import torch, nce
        >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
        >>> a = nce.debiased_info_nce(q, k, tau_plus=0.0, temperature=0.5)
        >>> b = nce.info_nce(q, k, temperature=0.5)
        >>> bool(torch.isclose(a, b))
        True
    """
    check_reduction(reduction)
    tau = check_temperature(temperature)
    check_in_range("tau_plus", tau_plus, 0.0, 1.0)
    check_in_range("beta", beta, 0.0, math.inf)
    check_tensor("query", query, 2)
    check_tensor("key", key, 2)
    if query.shape != key.shape:
        raise ValueError(f"query has shape {shape_str(query)} but key has {shape_str(key)}")
    check_compatible(query=query, key=key)
    n = query.shape[0]
    if n < 2:
        raise ValueError(
            "in-batch negatives need a batch of at least 2 (with N = 1 there is no negative), "
            f"got query of shape {shape_str(query)}"
        )
    m = n - 1
    out_dtype = query.dtype
    dtype = compute_dtype(query)
    q, k = l2_normalize(query.to(dtype)), l2_normalize(key.to(dtype))
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    scale = as_scale(temperature, q)
    scaled = q * scale
    positive = (scaled * k).sum(1)
    # log Σ_j w_j e^{s_ij} over the M negatives, with w_j = e^{β s_ij} / mean_l e^{β s_il}
    coefficients = [1.0 + beta, beta] if beta > 0 else [1.0]
    lse = row_logsumexp(scaled, k, coefficients, exclude_diagonal=True, chunk_size=chunk_size)
    log_mass = lse[0] - (lse[1] - math.log(m)) if beta > 0 else lse[0]
    if tau_plus > 0:
        log_false = math.log(tau_plus * m) + positive
        ratio = (log_false - log_mass).clamp(max=-1e-7)
        valid = log_false < log_mass
        debiased = log_mass + torch.log1p(-torch.exp(ratio))
        log_mass = torch.where(valid, debiased, torch.full_like(debiased, float("-inf")))
        log_mass = log_mass - math.log1p(-tau_plus)
    log_floor = math.log(m) - scale
    log_mass = torch.maximum(log_mass, torch.as_tensor(log_floor, dtype=dtype, device=q.device))
    loss = F.softplus(log_mass - positive)

    def describe() -> str:
        return f"temperature={tau:.6g}, tau_plus={tau_plus}, beta={beta}, {dtype} inputs"

    # |logits| <= 1/t: log_mass <= (1 + 2 beta)/t + log M - log(1 - tau_plus)
    bound = (2.0 + 2.0 * beta) / tau + math.log(n) - math.log1p(-tau_plus) + 1.0
    return finish(loss, reduction, out_dtype, bound=bound, describe=describe)
