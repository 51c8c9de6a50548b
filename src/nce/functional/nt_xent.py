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

import math

import torch

from nce._validation import check_compatible, check_int, check_reduction, check_tensor, shape_str
from nce.functional._common import (
    PassedChecks,
    as_scale,
    check_finite,
    check_temperature,
    compute_dtype,
    finish,
)
from nce.functional._dense_softmax import DenseSelfCE, dense_ok
from nce.functional._gather import Layout, gather_rows, global_layout
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
        chunk_size: the similarity matrix is computed in tiles of at most ``chunk_size`` rows,
            never whole: memory O(N·D + chunk_size·N). None (the default) lets the library
            choose the tile size. Any value gives the same result; only memory and speed change.
            (Tiles of the (2N, 2N) matrix are square; N counts the 2N views.)
        gather: views from every rank of the torch.distributed process group are negatives (ranks
            may hold different N); as for :func:`nce.info_nce`, "mean" and "sum" are scaled by
            the world size so that DDP's gradient averaging gives exactly the gradient of the
            single-process loss on the global batch. Ranks are checked together before any view
            moves, and a rank may hold no rows, as for :func:`nce.info_nce`.

    Shape:
        - view1, view2: (N, D)
        - output: () or (2N,) for reduction="none"

    Computed by a custom autograd function: first-order gradients only.

    Half-precision inputs are computed in float32 and the result is returned in their dtype.
    Finite inputs never give inf or NaN: a result beyond the range of that dtype (float16 tops
    out at 65504, e.g. reduction="sum" over many rows, or a tiny temperature) or of the compute
    dtype raises ``ValueError`` naming the arguments; use float32 inputs or reduction="mean".

    Example:
        >>> import torch, nce
        >>> v = torch.randn(4, 8)
        >>> round(float(nce.nt_xent(v, v, temperature=1e6)), 4)  # uniform: log(2N - 1)
        1.9459
    """
    if gather is False:
        loss = _small_batch(view1, view2, temperature, reduction, chunk_size)
        if loss is not None:
            return loss
    where = None
    if gather:
        where = global_layout(
            "view1",
            view1,
            min_total=1,
            check=lambda: _check_arguments(view1, view2, temperature, reduction, chunk_size, True),
            gathered=(view1, view2),
            why="NT-Xent needs",
        )
        tau = check_temperature(temperature)
    else:
        tau = _check_arguments(view1, view2, temperature, reduction, chunk_size, False)
    out_dtype = view1.dtype
    dtype = compute_dtype(view1)
    views = torch.cat([view1, view2]).to(dtype)

    def describe() -> str:
        return f"temperature={tau:.6g}, {views.dtype} inputs"

    scale = torch.as_tensor(as_scale(temperature, views), dtype=dtype, device=views.device)
    rows = None  # the layout of the (2N, D) views across ranks
    if where is not None:
        rows = Layout(tuple(2 * n for n in where.sizes), where.rank)
        loss = _gathered(views, scale, chunk_size, rows)
    else:
        loss = SelfSoftmaxCE.apply(views, scale, chunk_size or SELF_TILE)

    bound = 2.0 / tau + math.log(views.shape[0] if rows is None else rows.total)
    return finish(loss, reduction, out_dtype, bound=bound, describe=describe, where=rows)


_PASSED = PassedChecks()


def _small_batch(view1, view2, temperature, reduction, chunk_size):
    """NT-Xent as one dense block (see :mod:`._dense_softmax`), or None where that path does
    not apply. The argument checks run once per signature; the values' finiteness is read from
    the loss."""
    tau = _PASSED.pair(
        view1, view2, temperature, reduction, chunk_size,
        lambda: _check_arguments(view1, view2, temperature, reduction, chunk_size, False, False),
    )  # fmt: skip
    if tau is None:
        return None
    n2 = 2 * view1.shape[0]
    if not dense_ok(n2, chunk_size, tau, view1):
        return None
    loss = DenseSelfCE.apply(view1, view2, as_scale(temperature, view1), reduction)
    check_finite(loss, view1=view1, view2=view2)

    def describe() -> str:
        return f"temperature={tau:.6g}, {view1.dtype} inputs"

    bound = 2.0 / tau + math.log(n2)
    return finish(loss, reduction, view1.dtype, bound=bound, describe=describe, rows=n2)


def _check_arguments(
    view1, view2, temperature, reduction, chunk_size, gather, finite=True
) -> float:
    """Every argument check of :func:`nt_xent`; returns the temperature as a float. With
    ``gather`` a rank may hold no rows: the global batch is checked by the caller. Without
    ``finite`` the values of the views are left for the caller to check."""
    check_reduction(reduction)
    tau = check_temperature(temperature)
    check_tensor("view1", view1, 2, nonempty=not gather, finite=finite)
    check_tensor("view2", view2, 2, nonempty=not gather, finite=finite)
    if view1.shape != view2.shape:
        raise ValueError(f"view1 has shape {shape_str(view1)} but view2 has {shape_str(view2)}")
    if view1.shape[1] == 0:
        raise ValueError(f"view1 is empty (shape {shape_str(view1)})")
    check_compatible(view1=view1, view2=view2)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    return tau


def _gathered(views, scale, chunk_size, rows: Layout) -> torch.Tensor:
    """Per-view NT-Xent of this rank's 2N views against the views of every rank."""
    everyone, _ = gather_rows(views, rows)
    local = torch.arange(views.shape[0], device=views.device)
    twins = local.roll(views.shape[0] // 2) + rows.offset
    chunk = chunk_size or default_rows(rows.total)
    return PairedSoftmaxCE.apply(
        views, everyone, scale, True, False, chunk, twins, local + rows.offset
    )
