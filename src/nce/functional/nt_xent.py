r"""NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al., 2020,
arXiv:2002.05709).

Two augmented views of N samples give 2N embeddings :math:`z`, L2-normalized. Each view is an
anchor whose positive is its twin and whose negatives are the 2N − 2 other views:

.. math:: \ell_i = -\log \frac{e^{z_i \cdot z_{t(i)}/\tau}}{\sum_{j \ne i} e^{z_i \cdot z_j/\tau}},
          \qquad t(i) = i \pm N.

The loss is InfoNCE over the symmetric similarity matrix :math:`Z Z^\top`; its symmetry halves the
matrix products a gradient needs (see :mod:`nce.functional._tiled_softmax`).
"""

from __future__ import annotations

import torch

from nce._validation import check_compatible, check_int, check_reduction, check_tensor, shape_str
from nce.functional._common import as_scale, check_temperature, compute_dtype, reduce
from nce.functional._gather import gather_rows, reduce_across_ranks
from nce.functional._tiled_softmax import (
    SELF_TILE,
    PairedSoftmaxCE,
    SelfSoftmaxCE,
    default_rows,
)


def nt_xent(
    view1: torch.Tensor,
    view2: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.5,
    reduction: str = "mean",
    chunk_size: int | None = None,
    gather: bool = False,
) -> torch.Tensor:
    r"""SimCLR's NT-Xent loss over the 2N views of N samples.

    .. math:: \ell_i = \log\sum_{j \ne i} e^{z_i \cdot z_j/\tau} - z_i \cdot z_{t(i)}/\tau,
              \qquad \text{mean} = \frac{1}{2N}\sum_{i=1}^{2N} \ell_i.

    Equals lightly's ``NTXentLoss`` and pytorch-metric-learning's ``NTXentLoss`` (Chen et al. 2020).

    Args:
        view1: embeddings of the first view of each sample.
        view2: embeddings of the second view; row i is the twin of ``view1`` row i.
        temperature: :math:`\tau > 0`, a number or a scalar tensor.
        reduction: "mean" | "sum" | "none" (shape (2N,): the anchors of ``view1`` first, then
            those of ``view2``).
        chunk_size: side of the square tiles of the (2N, 2N) similarity matrix held at once;
            memory O(N·D + chunk_size²) (with ``gather``, rows of the (2N, 2N_global) tiles).
            Changes memory, never the result.
        gather: views from every rank of the torch.distributed process group are negatives (ranks
            may hold different N); as for :func:`nce.info_nce`, "mean" and "sum" are scaled by
            the world size so that DDP's gradient averaging gives exactly the gradient of the
            single-process loss on the global batch.

    Shape:
        - view1, view2: (N, D)
        - output: () or (2N,) for reduction="none"

    Computed by a custom autograd function: first-order gradients only.

    Example:
        >>> import torch, nce
        >>> v = torch.randn(4, 8)
        >>> round(float(nce.nt_xent(v, v, temperature=1e6)), 4)  # uniform: log(2N - 1)
        1.9459
    """
    check_reduction(reduction)
    check_temperature(temperature)
    check_tensor("view1", view1, 2)
    check_tensor("view2", view2, 2)
    if view1.shape != view2.shape:
        raise ValueError(f"view1 has shape {shape_str(view1)} but view2 has {shape_str(view2)}")
    check_compatible(view1=view1, view2=view2)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    out_dtype = view1.dtype
    dtype = compute_dtype(view1)
    views = torch.cat([view1, view2]).to(dtype)
    scale = torch.as_tensor(as_scale(temperature, views), dtype=dtype, device=views.device)
    if gather:
        return _gathered(views, scale, reduction, chunk_size).to(out_dtype)
    loss = SelfSoftmaxCE.apply(views, scale, chunk_size or SELF_TILE)
    return reduce(loss, reduction).to(out_dtype)


def _gathered(views, scale, reduction, chunk_size) -> torch.Tensor:
    """NT-Xent of this rank's 2N views against the views of every rank."""
    everyone, where = gather_rows(views)
    local = torch.arange(views.shape[0], device=views.device)
    twins = local.roll(views.shape[0] // 2) + where.offset
    chunk = chunk_size or default_rows(where.total)
    loss = PairedSoftmaxCE.apply(
        views, everyone, scale, True, False, chunk, twins, local + where.offset
    )
    return reduce_across_ranks(loss, reduction, where)
