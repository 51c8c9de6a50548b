r"""Tiled softmax cross-entropy over similarity matrices that are never materialized.

Two autograd functions carry the in-batch losses:

* :class:`PairedSoftmaxCE` — rows of :math:`S = A B^\top` (N, N) with the diagonal as target,
  optionally also its columns (the symmetric, CLIP form). Per example,
  :math:`\ell_i = \operatorname{lse}_j S_{ij} - S_{ii}`.
* :class:`SelfSoftmaxCE` — rows of the symmetric :math:`S = Z Z^\top` (2N, 2N) without its diagonal,
  row :math:`i` targeting its twin :math:`i \pm N` (SimCLR's NT-Xent).

Both walk over tiles of rows small enough to stay in cache, so the elementwise work (max, exp,
sum) costs little next to the matrix products, and memory is O(N·D + N·chunk).
With :math:`G = \partial\ell/\partial S`, the input gradients are :math:`G B` and :math:`G^\top A`.

* Paired, one direction: each row's log-sum-exp is known inside its tile, so the forward pass
  computes the gradients of the unit-weighted loss in the same sweep (three products in all, the
  minimum for an exact gradient); the backward pass rescales them, or sweeps again if the
  upstream gradient is not the same for every example.
* Self-similarity: :math:`S` is symmetric, so only tiles on and above the diagonal are computed;
  the row log-sum-exp is accumulated online over them, and the backward pass uses
  :math:`\partial\ell/\partial Z = (G + G^\top) Z` with :math:`(G^\top)_{ij}` read from the same
  tile.
  Two products' worth of work in all.

Results equal the dense computation up to floating-point summation order.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

TILE_ELEMENTS = 1 << 18  # a (rows x columns) tile of this many floats stays in cache
SELF_TILE = 512  # side of a square tile of the self-similarity matrix


def default_rows(n_cols: int) -> int:
    """Rows per tile so that a tile holds about ``TILE_ELEMENTS`` values."""
    return max(16, TILE_ELEMENTS // max(n_cols, 1))


def _spans(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def _merge_lse(run_max: torch.Tensor, run_sum: torch.Tensor, tile: torch.Tensor, dim: int) -> None:
    """Fold ``tile``'s log-sum-exp along ``dim`` into a running (max, sum of exp) pair, in place."""
    new_max = torch.maximum(run_max, tile.amax(dim))
    run_sum.mul_(torch.exp(run_max - new_max))
    run_sum.add_(torch.exp(tile - new_max.unsqueeze(dim)).sum(dim))
    run_max.copy_(new_max)


def _running(n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty running log-sum-exp: the finite minimum keeps all-masked tiles NaN-free."""
    return like.new_full((n,), torch.finfo(like.dtype).min), like.new_zeros(n)


def _paired_lse(a: torch.Tensor, b: torch.Tensor, chunk: int, columns: bool):
    """Row (and column) log-sum-exp and the diagonal of :math:`A B^\top`."""
    n = a.shape[0]
    lse_row, diag = a.new_empty(n), a.new_empty(n)
    col_max, col_sum = _running(n, a)
    for r0, r1 in _spans(n, chunk):
        s = a[r0:r1] @ b.T
        diag[r0:r1] = s.diagonal(r0)
        lse_row[r0:r1] = torch.logsumexp(s, 1)
        if columns:
            _merge_lse(col_max, col_sum, s, 0)
    lse_col = col_max + torch.log(col_sum) if columns else None
    return lse_row, lse_col, diag


def _paired_grad(a, b, chunk, g_row, lse_row=None, g_col=None, lse_col=None):
    r"""Gradients of :math:`\sum_i g^r_i(\operatorname{lse}^r_i - S_{ii}) + \sum_j g^c_j
    (\operatorname{lse}^c_j - S_{jj})` with respect to A and B.

    When ``lse_row`` is None it is computed tile by tile in the same sweep (rows only), and
    returned with the diagonal so that the forward pass needs no other sweep.
    """
    n = a.shape[0]
    fused = lse_row is None
    if fused:
        lse_row, diag = a.new_empty(n), a.new_empty(n)
    da, db = torch.empty_like(a), torch.zeros_like(b)
    for r0, r1 in _spans(n, chunk):
        s = a[r0:r1] @ b.T
        if fused:
            diag[r0:r1] = s.diagonal(r0)
            lse_row[r0:r1] = torch.logsumexp(s, 1)
        grad = torch.exp(s - lse_row[r0:r1, None]).mul_(g_row[r0:r1, None])
        grad.diagonal(r0).sub_(g_row[r0:r1])
        if lse_col is not None:
            grad.add_(torch.exp(s.sub_(lse_col)).mul_(g_col))
            grad.diagonal(r0).sub_(g_col[r0:r1])
        torch.matmul(grad, b, out=da[r0:r1])
        db.addmm_(grad.T, a[r0:r1])
    return (da, db, lse_row, diag) if fused else (da, db)


class PairedSoftmaxCE(torch.autograd.Function):
    r"""Per-example in-batch InfoNCE on logits :math:`S = A B^\top`: returns (N,)

    :math:`\ell_i = \operatorname{lse}_j S_{ij} - S_{ii}`, or with ``symmetric``
    :math:`\tfrac12(\ell_i + \operatorname{lse}_j S_{ji} - S_{ii})`.
    """

    @staticmethod
    def forward(ctx, a, b, symmetric: bool, chunk: int):
        ctx.symmetric, ctx.chunk = symmetric, chunk
        ctx.eager = not symmetric and any(ctx.needs_input_grad[:2])
        if symmetric:
            lse_row, lse_col, diag = _paired_lse(a, b, chunk, columns=True)
            ctx.save_for_backward(a, b, lse_row, lse_col)
            return 0.5 * ((lse_row - diag) + (lse_col - diag))
        if ctx.eager:
            ones = a.new_ones(a.shape[0])
            da, db, lse_row, diag = _paired_grad(a, b, chunk, ones)
            ctx.save_for_backward(a, b, lse_row, da, db)
        else:
            lse_row, _, diag = _paired_lse(a, b, chunk, columns=False)
        return lse_row - diag

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        g = g.contiguous()
        if ctx.symmetric:
            a, b, lse_row, lse_col = ctx.saved_tensors
            half = 0.5 * g
            da, db = _paired_grad(a, b, ctx.chunk, half, lse_row, half, lse_col)
            return da, db, None, None
        a, b, lse_row, da, db = ctx.saved_tensors
        if bool((g == g[0]).all()):
            return da * g[0], db * g[0], None, None
        da, db = _paired_grad(a, b, ctx.chunk, g, lse_row)
        return da, db, None, None


def _self_lse(z: torch.Tensor, tile: int) -> torch.Tensor:
    """Row log-sum-exp of :math:`Z Z^\top` without its diagonal, from tiles on and above it."""
    run_max, run_sum = _running(z.shape[0], z)
    spans = _spans(z.shape[0], tile)
    for bi, (i0, i1) in enumerate(spans):
        for j0, j1 in spans[bi:]:
            s = z[i0:i1] @ z[j0:j1].T
            if i0 == j0:
                s.diagonal().fill_(float("-inf"))
            _merge_lse(run_max[i0:i1], run_sum[i0:i1], s, 1)
            if i0 != j0:
                _merge_lse(run_max[j0:j1], run_sum[j0:j1], s, 0)
    return run_max + torch.log(run_sum)


def _self_grad(z: torch.Tensor, lse: torch.Tensor, g: torch.Tensor, tile: int) -> torch.Tensor:
    r""":math:`(G + G^\top) Z` with :math:`G_{ij} = g_i\, \mathrm{softmax}_{j \ne i}(S_i)_j`,
    the softmax part of the NT-Xent gradient (the target part is added by the caller)."""
    dz = torch.zeros_like(z)
    spans = _spans(z.shape[0], tile)
    for bi, (i0, i1) in enumerate(spans):
        for j0, j1 in spans[bi:]:
            s = z[i0:i1] @ z[j0:j1].T
            h = torch.exp(s - lse[i0:i1, None]).mul_(g[i0:i1, None])
            h.add_(torch.exp(s.sub_(lse[j0:j1])).mul_(g[j0:j1]))
            if i0 == j0:
                h.diagonal().zero_()
            dz[i0:i1].addmm_(h, z[j0:j1])
            if i0 != j0:
                dz[j0:j1].addmm_(h.T, z[i0:i1])
    return dz


def _twin(n2: int, device) -> torch.Tensor:
    """Index of each view's positive: i + N for the first N views, i - N for the rest."""
    return torch.arange(n2, device=device).roll(n2 // 2)


class SelfSoftmaxCE(torch.autograd.Function):
    r"""Per-view NT-Xent on :math:`S = Z Z^\top` (views i and i ± N are twins): returns (2N,)

    :math:`\ell_i = \operatorname{lse}_{j \ne i} S_{ij} - S_{i,\mathrm{twin}(i)}`.
    """

    @staticmethod
    def forward(ctx, z, tile: int):
        lse = _self_lse(z, tile)
        twin = _twin(z.shape[0], z.device)
        positive = (z * z[twin]).sum(1)
        ctx.tile = tile
        ctx.save_for_backward(z, lse)
        return lse - positive

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        z, lse = ctx.saved_tensors
        g = g.contiguous()
        twin = _twin(z.shape[0], z.device)
        dz = _self_grad(z, lse, g, ctx.tile)
        dz.sub_((g + g[twin]).unsqueeze(1) * z[twin])
        return dz, None
