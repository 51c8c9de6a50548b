r"""Row log-sum-exp of scaled similarity matrices, tiled: the building block of the
memory-efficient (``chunk_size=``) paths of the losses whose log-sum-exp terms are not InfoNCE's.

For :math:`S = A B^\top` (n, m) and coefficients :math:`c_1..c_C > 0`,

.. math:: L_{ci} = \log \sum_{j \ne i} e^{c\, S_{ij}}

(the diagonal left out when ``exclude_diagonal``). The forward pass keeps a tile of rows at a
time; the backward pass recomputes each tile, with
:math:`\partial L_{ci}/\partial S_{ij} = c\, e^{c S_{ij} - L_{ci}}`. Memory O((n + m)·D + chunk·m).
"""

from __future__ import annotations

import torch

from nce.functional._common import first_order_only
from nce.functional._tiled_softmax import LN2, LOG2E, TILE_ELEMENTS, _spans, _TileBuffers


def _masked_tile(a, b, r0, r1, exclude_diagonal, buffers):
    s = torch.matmul(a[r0:r1], b.T, out=buffers.get(0, r1 - r0, b.shape[0]))
    if exclude_diagonal:
        s.diagonal(r0).fill_(float("-inf"))
    return s


class RowLogSumExp(torch.autograd.Function):
    """``RowLogSumExp.apply(a, b, coefficients, exclude_diagonal, chunk)`` -> (C, n)."""

    @staticmethod
    def forward(ctx, a, b, coefficients: tuple[float, ...], exclude_diagonal: bool, chunk: int):
        n, m = a.shape[0], b.shape[0]
        out = a.new_empty(len(coefficients), n)
        buffers = _TileBuffers(a, min(chunk, n), m, count=2)
        for r0, r1 in _spans(n, chunk):
            s = _masked_tile(a, b, r0, r1, exclude_diagonal, buffers)
            for c_index, c in enumerate(coefficients):
                t = torch.mul(s, c * LOG2E, out=buffers.get(1, r1 - r0, m))
                t_max = t.amax(1, keepdim=True)
                total = t.sub_(t_max).exp2_().sum(1)
                out[c_index, r0:r1] = LN2 * (t_max.squeeze(1) + torch.log2(total))
        ctx.coefficients, ctx.exclude_diagonal, ctx.chunk = coefficients, exclude_diagonal, chunk
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        a, b, lse = ctx.saved_tensors
        n, m = a.shape[0], b.shape[0]
        da, db = torch.empty_like(a), torch.zeros_like(b)
        buffers = _TileBuffers(a, min(ctx.chunk, n), m, count=3)
        for r0, r1 in _spans(n, ctx.chunk):
            s = _masked_tile(a, b, r0, r1, ctx.exclude_diagonal, buffers)
            grad = buffers.get(2, r1 - r0, m).zero_()
            for c_index, c in enumerate(ctx.coefficients):
                t = torch.mul(s, c * LOG2E, out=buffers.get(1, r1 - r0, m))
                t.sub_(lse[c_index, r0:r1, None] * LOG2E).exp2_()
                grad.addcmul_(t, g[c_index, r0:r1, None], value=c)
            torch.matmul(grad, b, out=da[r0:r1])
            db.addmm_(grad.T, a[r0:r1])
        return da, db, None, None, None


def row_logsumexp(a, b, coefficients, *, exclude_diagonal: bool, chunk_size: int | None):
    r""":math:`\log\sum_{j} e^{c (A B^\top)_{ij}}` for each coefficient c, shape (C, n), tiled."""
    chunk = chunk_size or max(128, TILE_ELEMENTS // max(b.shape[0], 1))
    return RowLogSumExp.apply(a, b, tuple(float(c) for c in coefficients), exclude_diagonal, chunk)
