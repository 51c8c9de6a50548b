r"""InfoNCE with soft targets: the positive is a distribution over candidates.

When which candidate is the positive is uncertain (a tracker may have swapped two objects, a
caption may fit several images), the one-hot target of InfoNCE becomes a distribution
:math:`t_i` over the keys, and the loss is the cross-entropy against it:

.. math:: \ell_i = -\sum_j t_{ij} \log \frac{e^{s_{ij}}}{\sum_l e^{s_{il}}}
          = \log\sum_l e^{s_{il}} - \sum_j t_{ij} s_{ij}, \qquad s = q k^\top/\tau.

One-hot targets on the diagonal give in-batch InfoNCE exactly.
"""

from __future__ import annotations

import math

import torch

from nce._validation import (
    check_compatible,
    check_reduction,
    check_same_size,
    check_tensor,
    shape_str,
)
from nce.functional._common import (
    as_scale,
    check_temperature,
    compute_dtype,
    finish,
    l2_normalize,
)


def soft_info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.1,
    normalize: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Cross-entropy of the softmax over keys against soft targets.

    .. math:: \ell_i = \log\sum_l e^{s_{il}} - \sum_j t_{ij} s_{ij}.

    Args:
        query: queries.
        key: candidate keys (the batch's keys for in-batch use, then M = N).
        targets: row i is a probability distribution over the keys: entries >= 0, rows sum to 1.
        temperature: :math:`\tau > 0`, a number or a scalar tensor.
        normalize: L2-normalize the embeddings first (cosine similarity).
        reduction: "mean" | "sum" | "none" (shape (N,)).

    Shape:
        - query: (N, D), key: (M, D), targets: (N, M)
        - output: () or (N,) for reduction="none"

    Half-precision inputs are computed in float32 and the result is returned in their dtype.
    Finite inputs never give inf or NaN: a result beyond the range of that dtype (float16 tops
    out at 65504, e.g. reduction="sum" over many rows, or a tiny temperature) or of the compute
    dtype raises ``ValueError`` naming the arguments; use float32 inputs or reduction="mean".

    References:
        Li et al. 2021, ALBEF (the contrastive loss against soft targets), arXiv:2107.07651.

    Example:
        >>> import torch, nce
        >>> q, k = torch.randn(4, 8), torch.randn(4, 8)
        >>> t = 0.7 * torch.eye(4) + 0.3 * torch.eye(4).roll(1, 1)
        >>> nce.soft_info_nce(q, k, t).shape
        torch.Size([])
    """
    check_reduction(reduction)
    tau = check_temperature(temperature)
    check_tensor("query", query, 2)
    check_tensor("key", key, 2)
    check_tensor("targets", targets, 2)
    check_same_size(-1, "dimension", query=query, key=key)
    check_compatible(query=query, key=key)
    if targets.shape != (query.shape[0], key.shape[0]):
        raise ValueError(
            f"targets must have shape ({query.shape[0]}, {key.shape[0]}) (queries x keys), "
            f"got {shape_str(targets)}"
        )
    if targets.device != query.device:
        raise ValueError(
            f"device mismatch: query is on {query.device} but targets is on {targets.device}"
        )
    negative = int((targets < 0).sum())
    if negative:
        raise ValueError(
            f"targets has {negative} negative {'entry' if negative == 1 else 'entries'}"
        )
    row_sums = targets.double().sum(1)
    # A row of M entries rounded to the dtype sums to 1 within about M rounding errors.
    eps = torch.finfo(targets.dtype).eps
    tolerance = 1e-10 if targets.dtype == torch.float64 else max(1e-4, targets.shape[1] * eps)
    off = (row_sums - 1).abs() > tolerance
    if bool(off.any()):
        row = int(off.nonzero()[0])
        raise ValueError(
            f"targets rows must sum to 1, but {int(off.sum())} do not (row {row} sums to "
            f"{float(row_sums[row]):.6g})"
        )

    out_dtype = query.dtype
    dtype = compute_dtype(query)
    q, k = query.to(dtype), key.to(dtype)
    if normalize:
        q, k = l2_normalize(q), l2_normalize(k)
    t = targets.to(dtype)
    logits = (q * as_scale(temperature, q)) @ k.T
    loss = torch.logsumexp(logits, 1) - (t * logits).sum(1)
    bound = 2.0 / tau + math.log(key.shape[0]) if normalize else None

    def describe() -> str:
        return f"temperature={tau:.6g}, normalize={normalize}, {dtype} inputs"

    return finish(loss, reduction, out_dtype, bound=bound, describe=describe)
