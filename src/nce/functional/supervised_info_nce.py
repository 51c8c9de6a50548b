r"""Supervised contrastive loss, SupCon (Khosla et al., 2020, arXiv:2004.11362), the
:math:`\mathcal{L}^{sup}_{out}` form.

Labels say which pairs are positive: every other sample of the anchor's class. With L2-normalized
embeddings :math:`z`, positives :math:`P(i) = \{p \ne i: y_p = y_i\}` and
:math:`A(i) = \{a \ne i\}`,

.. math:: \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
          \log \frac{e^{z_i \cdot z_p / \tau}}{\sum_{a \in A(i)} e^{z_i \cdot z_a/\tau}}.

Anchors without a positive have no term; the mean runs over the anchors that have one.
"""

from __future__ import annotations

import math

import torch

from nce._validation import check_ids, check_int, check_reduction, check_tensor
from nce.functional._common import as_scale, check_temperature, compute_dtype, finish, l2_normalize
from nce.functional._row_lse import row_logsumexp


def supervised_info_nce(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.1,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""SupCon loss (Khosla et al. 2020, eq. 2, :math:`\mathcal{L}^{sup}_{out}`).

    .. math:: \ell_i = \log\sum_{a \ne i} e^{s_{ia}}
              - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip}, \qquad s = z z^\top / \tau.

    Equals pytorch-metric-learning's ``SupConLoss``.

    Args:
        embeddings: one embedding per sample (all views stacked), L2-normalized inside.
        labels: integer class of each row.
        temperature: :math:`\tau > 0`, a number or a scalar tensor.
        reduction: "mean" over anchors with at least one positive, "sum" over them, or "none":
            shape (N,), 0 for anchors without a positive.
        chunk_size: the similarity matrix is computed in tiles of at most ``chunk_size`` rows,
            never whole: memory O(N·D + chunk_size·N). None (the default) lets the library
            choose the tile size. Any value gives the same result; only memory and speed change.
            (The positive term needs only per-class sums.)

    Shape:
        - embeddings: (N, D)
        - labels: (N,)
        - output: () or (N,) for reduction="none"

    Raises:
        ValueError: if no anchor has a positive (every label occurs once): the loss is undefined.

    Half-precision inputs are computed in float32 and the result is returned in their dtype.
    Finite inputs never give inf or NaN: a result beyond the range of that dtype (float16 tops
    out at 65504, e.g. reduction="sum" over many rows, or a tiny temperature) or of the compute
    dtype raises ``ValueError`` naming the arguments; use float32 inputs or reduction="mean".

    The log-sum-exp terms are computed tile by tile in a custom autograd function: first-order
    gradients only.

    Example:
        >>> import torch, nce
        >>> z, y = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> nce.supervised_info_nce(z, y).shape
        torch.Size([])
    """
    check_reduction(reduction)
    tau = check_temperature(temperature)
    check_tensor("embeddings", embeddings, 2)
    n = embeddings.shape[0]
    check_ids("labels", labels, shape=torch.Size([n]))
    if labels.device != embeddings.device:
        raise ValueError(
            f"device mismatch: embeddings is on {embeddings.device} "
            f"but labels is on {labels.device}"
        )
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    classes, label_index = torch.unique(labels, return_inverse=True)
    n_positive = torch.bincount(label_index, minlength=classes.numel())[label_index] - 1
    has_positive = n_positive > 0
    if not bool(has_positive.any()):
        raise ValueError(
            "supervised_info_nce needs at least one anchor with a positive, but every label in "
            f"labels occurs once (N = {n})"
        )

    out_dtype = embeddings.dtype
    z = l2_normalize(embeddings.to(compute_dtype(embeddings)))
    scaled = z * as_scale(temperature, z)
    # Σ_{p ∈ P(i)} s_ip = s_i · (sum of z over the class of i) − s_ii
    class_sum = z.new_zeros(classes.numel(), z.shape[1]).index_add(0, label_index, z)
    positive_sum = (scaled * class_sum[label_index]).sum(1) - (scaled * z).sum(1)
    mean_positive = positive_sum / n_positive.clamp(min=1)
    log_denominator = row_logsumexp(scaled, z, [1.0], exclude_diagonal=True, chunk_size=chunk_size)[
        0
    ]
    loss = torch.where(
        has_positive, log_denominator - mean_positive, torch.zeros_like(mean_positive)
    )
    if reduction == "mean":
        # the mean over the anchors with a positive: N / |anchors| times the mean over all
        loss = loss * (n / has_positive.sum().to(loss.dtype))

    def describe() -> str:
        return f"temperature={tau:.6g}, {z.dtype} inputs"

    bound = (2.0 / tau + math.log(n)) * n
    return finish(loss, reduction, out_dtype, bound=bound, describe=describe)
