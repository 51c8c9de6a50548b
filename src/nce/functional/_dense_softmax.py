r"""One dense block for small batches: the in-batch losses in the fewest tensor operations.

At a few hundred rows the three matrix products of an exact gradient take well under a
millisecond, and the cost of a loss is set by how many tensor operations it dispatches, not by
its arithmetic. The two autograd functions here compute the whole similarity matrix at once and
reduce inside the function, so that a "mean" or "sum" loss sees a scalar upstream gradient:

* :class:`DensePairedCE` — InfoNCE of unit rows, :math:`S = s \hat Q \hat K^\top` (N, N), the
  diagonal as target, optionally with its columns too (CLIP's symmetric loss).
* :class:`DenseSelfCE` — NT-Xent, :math:`S = s \hat Z \hat Z^\top` (2N, 2N) without its diagonal,
  row i targeting its twin :math:`i \pm N`.

Both apply only where :func:`nce.functional._tiled_softmax.unshifted_ok` holds (unit rows, the
CPU, :math:`\tau \ge 0.029`): every base-2 logit lies in :math:`[-c, c]`, so
:math:`E = 2^{S \log_2 e}` needs no running maximum and is kept for the backward pass, which then
needs no exponential. With row sums :math:`r_i = \sum_j E_{ij}` and per-row upstream weights
:math:`w_i`, the softmax gradient :math:`G = \operatorname{diag}(w/r) E - \operatorname{diag}(w)
T` (T the targets) gives :math:`\partial\hat Q = s G \hat K` and :math:`\partial\hat K = s G^\top
\hat Q`: one product forward, two backward (NT-Xent: one, as :math:`\partial\hat Z = s (G +
G^\top) \hat Z`), the row weights applied to the thin (·, D) factors. Results equal the tiled
path's up to floating-point rounding.
"""

from __future__ import annotations

import torch

from nce.functional._common import first_order_only
from nce.functional._tiled_softmax import LN2, LOG2E, UNSHIFTED_MAX, _UnitRows

DENSE_MAX_ROWS = 1024  # the largest side of a similarity matrix computed as one dense block


def dense_ok(side: int, chunk_size: int | None, temperature: float, like: torch.Tensor) -> bool:
    r"""True when a (side, side) similarity matrix of unit rows may be computed as one dense
    block: ``chunk_size`` (if given) allows tiles of ``side`` rows, ``side`` is at most
    ``DENSE_MAX_ROWS``, and the logits :math:`|S| \le 1/\tau` can be exponentiated without
    maxima (on the CPU, float32 or float64; see :func:`unshifted_ok`)."""
    return (
        side <= DENSE_MAX_ROWS
        and (chunk_size is None or chunk_size >= side)
        and like.is_cpu
        and like.dtype in (torch.float32, torch.float64)
        and LOG2E / temperature <= UNSHIFTED_MAX
    )


def _reduced(lse2: torch.Tensor, target2: torch.Tensor, reduction: str, count: int):
    r"""Reduce :math:`\ln 2\,(\operatorname{lse}_2 - t_2)`; ``target2`` is the sum of the target
    logits for "mean" and "sum", the per-row ones for "none"."""
    if reduction == "none":
        return (lse2 - target2).mul_(LN2)
    factor = LN2 / count if reduction == "mean" else LN2
    return (lse2.sum() - target2).mul_(factor)


def _row_weights(g: torch.Tensor, reduction: str, count: int, scale) -> torch.Tensor:
    """Each row's upstream weight times the scale: a 0-dim tensor for "mean" and "sum"."""
    if reduction == "mean":
        return g * (scale / count)
    return g * scale


class DensePairedCE(torch.autograd.Function):
    r"""``DensePairedCE.apply(query, key, scale, symmetric, reduction)``: in-batch InfoNCE of unit
    rows, reduced; (N,) for "none", () otherwise.

    :math:`\ell_i = \operatorname{lse}_j S_{ij} - S_{ii}`, or with ``symmetric``
    :math:`\tfrac12(\operatorname{lse}_j S_{ij} + \operatorname{lse}_j S_{ji}) - S_{ii}`, for
    :math:`S = s \hat Q \hat K^\top`. ``scale`` is :math:`s = 1/\tau`, a number or a 0-dim tensor
    (then its gradient flows too).
    """

    @staticmethod
    def forward(ctx, query, key, scale, symmetric: bool, reduction: str):
        q, k = _UnitRows(query, True), _UnitRows(key, True)
        e = torch.mm(q.unit * (scale * LOG2E), k.unit.T)  # scaled on the (N, D) side
        target2 = e.diagonal().clone() if reduction == "none" else torch.trace(e)
        e.exp2_()
        row_sum = e.sum(1)
        lse2 = row_sum.log2()
        col_sum = None
        if symmetric:
            col_sum = e.sum(0)
            lse2 = lse2.add_(col_sum.log2()).mul_(0.5)
        ctx.q, ctx.k, ctx.symmetric, ctx.reduction = q, k, symmetric, reduction
        ctx.tensor_scale = isinstance(scale, torch.Tensor)
        ctx.scale = None if ctx.tensor_scale else scale
        # query and key are saved so that autograd refuses a backward after an in-place change.
        scales = (scale,) if ctx.tensor_scale else ()
        ctx.save_for_backward(e, row_sum, col_sum, query, key, *scales)
        return _reduced(lse2, target2, reduction, e.shape[0])

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        e, row_sum, col_sum, *rest = ctx.saved_tensors
        q, k = ctx.q.unit, ctx.k.unit
        scale = 1.0 if ctx.tensor_scale else ctx.scale
        w = _row_weights(g, ctx.reduction, e.shape[0], scale)  # () or (N,)
        if ctx.reduction == "none":
            w = w.unsqueeze(1)
        if ctx.symmetric:
            half = 0.5 * w
            grad = torch.add(half / row_sum.unsqueeze(1), half.reshape(1, -1) / col_sum).mul_(e)
            da, db = torch.mm(grad, k), torch.mm(grad.T, q)
        else:
            u = w / row_sum.unsqueeze(1)
            da = torch.mm(e, k).mul_(u)
            db = torch.mm(e.T, q * u)
        da.addcmul_(k, w, value=-1.0)
        db.addcmul_(q, w, value=-1.0)
        d_scale = None
        if ctx.tensor_scale:
            s = rest[2]
            if ctx.needs_input_grad[2]:
                d_scale = torch.dot(da.reshape(-1), q.reshape(-1)).reshape(s.shape)
            da.mul_(s)
            db.mul_(s)
        d_query = ctx.q.backward(da) if ctx.needs_input_grad[0] else None
        d_key = ctx.k.backward(db) if ctx.needs_input_grad[1] else None
        return d_query, d_key, d_scale, None, None


def _twins(m: torch.Tensor) -> torch.Tensor:
    r"""The twin entries of a (2N, 2N) matrix as a (2, N) view: :math:`m_{i, i+N}` in row 0,
    :math:`m_{i+N, i}` in row 1 (both are arithmetic sequences of step 2N + 1)."""
    n = m.shape[0] // 2
    return m.as_strided((2, n), (2 * n * n - n, 2 * n + 1), m.storage_offset() + n)


class DenseSelfCE(torch.autograd.Function):
    r"""``DenseSelfCE.apply(view1, view2, scale, reduction)``: NT-Xent of the 2N unit views
    :math:`Z = [V_1; V_2]`, reduced; (2N,) for "none", () otherwise.

    :math:`\ell_i = \operatorname{lse}_{j \ne i} S_{ij} - S_{i, i \pm N}` for
    :math:`S = s \hat Z \hat Z^\top`; ``scale`` :math:`s = 1/\tau` as for :class:`DensePairedCE`.
    """

    @staticmethod
    def forward(ctx, view1, view2, scale, reduction: str):
        z = _UnitRows(torch.cat([view1, view2]), True)
        e = torch.mm(z.unit * (scale * LOG2E), z.unit.T)  # scaled on the (2N, D) side
        twins = _twins(e)
        target2 = twins.flatten() if reduction == "none" else twins.sum()
        e.exp2_().diagonal().zero_()
        row_sum = e.sum(1)
        ctx.z, ctx.reduction, ctx.n = z, reduction, view1.shape[0]
        ctx.tensor_scale = isinstance(scale, torch.Tensor)
        ctx.scale = None if ctx.tensor_scale else scale
        ctx.save_for_backward(e, row_sum, view1, view2, *((scale,) if ctx.tensor_scale else ()))
        return _reduced(row_sum.log2(), target2, reduction, e.shape[0])

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        e, row_sum, *rest = ctx.saved_tensors
        z, n = ctx.z.unit, ctx.n
        scale = 1.0 if ctx.tensor_scale else ctx.scale
        w = _row_weights(g, ctx.reduction, e.shape[0], scale)  # () or (2N,)
        u = w / row_sum
        # G + Gᵀ = E ∘ (u_i + u_j) - (w_i + w_twin(i)) at the twin entries.
        grad = torch.add(u.unsqueeze(1), u).mul_(e)
        _twins(grad).sub_(2.0 * w if ctx.reduction != "none" else w[:n] + w[n:])
        dz = torch.mm(grad, z)
        d_scale = None
        if ctx.tensor_scale:
            s = rest[2]
            if ctx.needs_input_grad[2]:
                d_scale = 0.5 * torch.dot(dz.reshape(-1), z.reshape(-1)).reshape(s.shape)
            dz.mul_(s)
        dz = ctx.z.backward(dz)
        return dz[:n], dz[n:], d_scale, None
