r"""Tiled softmax cross-entropy over similarity matrices that are never materialized whole.

Two autograd functions carry the in-batch losses:

* :class:`PairedSoftmaxCE` — rows of :math:`S = A B^\top` (N, N) with the diagonal as target,
  optionally also its columns (the symmetric, CLIP form). Per example,
  :math:`\ell_i = \operatorname{lse}_j S_{ij} - S_{ii}`.
* :class:`SelfSoftmaxCE` — rows of the symmetric :math:`S = Z Z^\top` (2N, 2N) without its
  diagonal, row :math:`i` targeting its twin :math:`i \pm N` (SimCLR's NT-Xent).

Both walk over tiles of :math:`S`, reusing one buffer, so memory is O(N·D + tile). With
:math:`G = \partial\ell/\partial S`, the input gradients are :math:`G B` and :math:`G^\top A`.

* Paired, one direction: each row's log-sum-exp is known inside its tile of rows, so the forward
  pass computes the gradients of the unit-weighted loss in the same sweep — three products in
  all, the minimum for an exact gradient — and the backward pass rescales them, or sweeps again
  when the upstream gradient differs between examples.
* Self-similarity: :math:`S` is symmetric, so only tiles on and above the diagonal are computed;
  the row log-sum-exp is accumulated online over them, and the backward pass uses
  :math:`\partial\ell/\partial Z = (G + G^\top) Z`, with :math:`(G^\top)_{ij}` read from the same
  tile. Two products' worth of work in all.

Exponentials are taken in base 2 (:math:`e^x = 2^{x \log_2 e}`, the :math:`\log_2 e` folded into
one factor of the product), which is several times cheaper than ``exp`` on CPUs. With unit rows
every base-2 logit lies in :math:`[-c, c]`, :math:`c = \log_2 e/\tau`; when :math:`2^{\pm c}` is far
inside the dtype's range (:math:`c \le` ``UNSHIFTED_MAX``, i.e. :math:`\tau \ge 0.029`), the
log-sum-exp needs no running maximum, and CPU tiles skip those two passes over memory. Results
equal the dense computation up to floating-point rounding.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from nce.functional._common import first_order_only, normalize_eps

LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)
TILE_ELEMENTS = 1 << 21  # the most values a (rows x N) tile holds by default
SELF_TILE = 512  # side of a square tile of the self-similarity matrix
UNSHIFTED_MAX = 50.0  # the largest |base-2 logit| exponentiated without subtracting a maximum


def unshifted_ok(scale: torch.Tensor, like: torch.Tensor) -> bool:
    r"""True when unit-row logits :math:`|S_2| \le` ``scale``·log₂e can be exponentiated as they
    are: on the CPU (reading ``scale`` there costs no device sync), in a dtype with float32's
    exponent range, and with :math:`c \le` ``UNSHIFTED_MAX``, so that :math:`2^{S_2}` and its row
    sums over up to :math:`2^{26}` columns stay normal numbers."""
    if like.device.type != "cpu" or torch.finfo(like.dtype).max < 2.0**127:
        return False
    return abs(float(scale)) * LOG2E <= UNSHIFTED_MAX


def default_rows(n_cols: int) -> int:
    """Rows per tile so that a tile holds at most about ``TILE_ELEMENTS`` values (>= 128 rows)."""
    return max(128, TILE_ELEMENTS // max(n_cols, 1))


def _spans(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(i, min(i + chunk, n)) for i in range(0, n, chunk)]


_cpu_workspace = threading.local()


class _TileBuffers:
    """Scratch storage for tiles, reused across tiles and, on the CPU, across calls.

    Fresh CPU allocations of a megabyte or more are mapped anew by the C allocator and page-fault
    on first touch, which costs as much as the arithmetic on small batches; so each thread keeps
    its largest CPU tiles (``count`` per dtype) for the next call. CUDA has a caching allocator.
    """

    def __init__(self, like: torch.Tensor, rows: int, cols: int, count: int):
        numel = rows * cols
        if like.device.type != "cpu" or torch.is_inference_mode_enabled():
            # Inference tensors cannot be written outside inference mode: never cache them.
            self._flat = [like.new_empty(numel) for _ in range(count)]
            return
        cache = _cpu_workspace.__dict__.setdefault("buffers", {})
        self._flat = []
        for slot in range(count):
            buffer = cache.get((like.dtype, slot))
            if buffer is None or buffer.numel() < numel:
                buffer = cache[(like.dtype, slot)] = like.new_empty(numel)
            self._flat.append(buffer)

    def get(self, which: int, rows: int, cols: int) -> torch.Tensor:
        return self._flat[which][: rows * cols].view(rows, cols)


def _running(n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty running log-sum-exp; the finite minimum keeps all-masked tiles NaN-free."""
    return like.new_full((n,), torch.finfo(like.dtype).min), like.new_zeros(n)


def _merge_lse2(run_max, run_sum, tile: torch.Tensor, dim: int, scratch: torch.Tensor) -> None:
    """Fold ``tile``'s base-2 log-sum-exp along ``dim`` into a running (max, sum), in place."""
    new_max = torch.maximum(run_max, tile.amax(dim))
    run_sum.mul_(torch.exp2(run_max - new_max))
    run_sum.add_(torch.sub(tile, new_max.unsqueeze(dim), out=scratch).exp2_().sum(dim))
    run_max.copy_(new_max)


@dataclass(frozen=True)
class ColumnRule:
    r"""Changes to the logits :math:`S_{ij}` of a tile beyond the product, column by column:

    * ``bias`` (m,): added to every logit of column j, the target's included
      (:math:`S_{ij} + b_j`; the log-Q correction passes :math:`b = -\log Q`). Constant: no
      gradient flows to it.
    * ``row_ids`` (n,) and ``column_ids`` (m,): accidental hits, every column whose id equals
      row i's id except row i's target column, drop out of row i (logit :math:`-\infty`).
    """

    bias: torch.Tensor | None = None
    row_ids: torch.Tensor | None = None
    column_ids: torch.Tensor | None = None

    def bias2(self, s2: torch.Tensor) -> None:
        """Add the base-2 bias to a tile, in place."""
        if self.bias is not None:
            s2.add_(self.bias, alpha=LOG2E)

    def mask(self, s2: torch.Tensor, targets: torch.Tensor, r0: int, r1: int) -> None:
        """Set the accidental hits of rows r0..r1 to -inf, in place (targets kept)."""
        if self.row_ids is None:
            return
        hit = self.row_ids[r0:r1, None] == self.column_ids
        hit.scatter_(1, targets[r0:r1, None], False)
        s2.masked_fill_(hit, float("-inf"))


def _bias(s2: torch.Tensor, exclude) -> None:
    if isinstance(exclude, ColumnRule):
        exclude.bias2(s2)


def _exclude(s2: torch.Tensor, exclude, r0: int, r1: int, targets=None) -> None:
    """Mask each row's excluded column (its own view, for NT-Xent) with -inf, or a
    :class:`ColumnRule`'s accidental hits, in place."""
    if isinstance(exclude, ColumnRule):
        exclude.mask(s2, targets, r0, r1)
    elif exclude is not None:
        s2.scatter_(1, exclude[r0:r1, None], float("-inf"))


def _paired_lse2(a2, b, chunk: int, columns: bool, targets, exclude=None, unshifted=False):
    r"""Base-2 row (and column) log-sum-exp of :math:`S_2 = A_2 B^\top` and each row's target
    logit :math:`S_2[i, t_i]`; ``unshifted`` (see :func:`unshifted_ok`) sums :math:`2^{S_2}`
    without subtracting maxima."""
    n, m = a2.shape[0], b.shape[0]
    lse2_row, target2 = a2.new_empty(n), a2.new_empty(n)
    # Unshifted sums need no running maximum: it stays 0.
    col_max, col_sum = (a2.new_zeros(m), a2.new_zeros(m)) if unshifted else _running(m, a2)
    buffers = _TileBuffers(a2, min(chunk, n), m, count=2)
    for r0, r1 in _spans(n, chunk):
        s2 = torch.matmul(a2[r0:r1], b.T, out=buffers.get(0, r1 - r0, m))
        _bias(s2, exclude)
        target2[r0:r1] = s2.gather(1, targets[r0:r1, None]).squeeze(1)
        _exclude(s2, exclude, r0, r1, targets)
        if unshifted:
            e = s2.exp2_()
            if columns:
                col_sum.add_(e.sum(0))
            lse2_row[r0:r1] = torch.log2(e.sum(1))
            continue
        if columns:
            _merge_lse2(col_max, col_sum, s2, 0, buffers.get(1, r1 - r0, m))
        row_max = s2.amax(1, keepdim=True)
        row_sum = s2.sub_(row_max).exp2_().sum(1)
        lse2_row[r0:r1] = row_max.squeeze(1) + torch.log2(row_sum)
    lse2_col = col_max + torch.log2(col_sum) if columns else None
    return lse2_row, lse2_col, target2


def _paired_grad(
    a2,
    b,
    chunk,
    g_row,
    targets,
    exclude=None,
    lse2_row=None,
    g_col=None,
    lse2_col=None,
    unshifted=False,
):
    r"""Gradients of :math:`\sum_i g^r_i(\operatorname{lse}^r_i - S_{i t_i}) + \sum_j g^c_j
    (\operatorname{lse}^c_j - S_{jj})` with respect to A and B, where :math:`S = A B^\top`,
    :math:`A_2 = A \log_2 e` is given, row i's target column is :math:`t_i` and its excluded
    column (if any) drops out of its log-sum-exp. The column terms need a square S with
    :math:`t_i = i`.

    With :math:`E = e^{S - \operatorname{lse}^r}` (rows), the row part of :math:`G` is
    :math:`\operatorname{diag}(g^r) E`; the row weights are applied to the (·, D) factors of the
    products rather than to the tile. The target part of :math:`G`, :math:`-g` at each
    :math:`(i, t_i)`, is added once at the end.

    When ``lse2_row`` is None it is computed tile by tile in the same sweep (rows only) and
    returned with the target logits, so that the forward pass needs no other sweep.
    ``unshifted`` (see :func:`unshifted_ok`) exponentiates each tile once, as it is, and applies
    the log-sum-exps as row and column factors.
    """
    n, m = a2.shape[0], b.shape[0]
    fused = lse2_row is None
    if fused:
        lse2_row, target2 = a2.new_empty(n), a2.new_empty(n)
    da, db = torch.empty_like(a2), torch.zeros_like(b)
    buffers = _TileBuffers(a2, min(chunk, n), m, count=1 if lse2_col is None else 2)
    for r0, r1 in _spans(n, chunk):
        s2 = torch.matmul(a2[r0:r1], b.T, out=buffers.get(0, r1 - r0, m))
        _bias(s2, exclude)
        if fused:
            target2[r0:r1] = s2.gather(1, targets[r0:r1, None]).squeeze(1)
        _exclude(s2, exclude, r0, r1, targets)
        if fused and unshifted:
            e = s2.exp2_()
            row_sum = e.sum(1)
            lse2_row[r0:r1] = torch.log2(row_sum)
            weight = (g_row[r0:r1] / row_sum).unsqueeze(1)
        elif fused:
            row_max = s2.amax(1, keepdim=True)
            e = s2.sub_(row_max).exp2_()
            row_sum = e.sum(1)
            lse2_row[r0:r1] = row_max.squeeze(1) + torch.log2(row_sum)
            weight = (g_row[r0:r1] / row_sum).unsqueeze(1)
        elif unshifted:
            # E_ij = 2^(S_ij - lse_i): the row factor 2^(-lse_i) joins the row weight, and the
            # column part's 2^(-lse_j) g_j joins it inside one product with a single exp2.
            weight = (g_row[r0:r1] * torch.exp2(-lse2_row[r0:r1])).unsqueeze(1)
            e = s2.exp2_()
            if lse2_col is not None:
                col_weight = g_col * torch.exp2(-lse2_col)
                e.mul_(torch.add(weight, col_weight, out=buffers.get(1, r1 - r0, m)))
                weight = None
        else:
            weight = g_row[r0:r1].unsqueeze(1)
            if lse2_col is not None:
                e_col = torch.sub(s2, lse2_col, out=buffers.get(1, r1 - r0, m)).exp2_()
                e = s2.sub_(lse2_row[r0:r1, None]).exp2_().mul_(weight).add_(e_col.mul_(g_col))
                weight = None
            else:
                e = s2.sub_(lse2_row[r0:r1, None]).exp2_()
        # dA = G B and dB = Gᵀ A = ln 2 · Gᵀ A₂, the row weights folded into the thin factors.
        torch.matmul(e, b, out=da[r0:r1])
        if weight is None:
            db.addmm_(e.T, a2[r0:r1], alpha=LN2)
        else:
            da[r0:r1].mul_(weight)
            db.addmm_(e.T, a2[r0:r1] * (weight * LN2))
    target_weight = (g_row if g_col is None else g_row + g_col).unsqueeze(1)
    da.addcmul_(b[targets], target_weight, value=-1.0)
    db.index_add_(0, targets, a2 * target_weight, alpha=-LN2)
    return (da, db, lse2_row, target2) if fused else (da, db)


class _UnitRows:
    r"""Rows scaled to unit length, :math:`\hat x = x / \max(\lVert x\rVert, \epsilon)`, with the
    backward pass done by hand (fewer temporaries than autograd's):
    :math:`\partial x = (\partial\hat x - \hat x\,\langle\hat x, \partial\hat x\rangle) /
    \lVert x\rVert`, without the projection where the norm is clamped to :math:`\epsilon`.
    With ``normalize=False`` it is the identity.
    """

    def __init__(self, x: torch.Tensor, normalize: bool):
        self.normalize = normalize
        if not normalize:
            self.unit = x
            return
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        self.clamped = norm < normalize_eps(x.dtype)
        self.inv_norm = norm.clamp_min_(normalize_eps(x.dtype)).reciprocal_()
        self.unit = x * self.inv_norm

    def backward(self, grad_unit: torch.Tensor) -> torch.Tensor:
        """Gradient with respect to x from the gradient with respect to the unit rows (in place)."""
        if not self.normalize:
            return grad_unit
        radial = (grad_unit * self.unit).sum(1, keepdim=True).masked_fill_(self.clamped, 0.0)
        return grad_unit.addcmul_(self.unit, radial, value=-1.0).mul_(self.inv_norm)


class PairedSoftmaxCE(torch.autograd.Function):
    r"""Per-row InfoNCE of queries Q (n, D) against keys K (m, D): returns (n,)

    With :math:`\hat Q, \hat K` the (optionally) unit rows and scale :math:`s = 1/\tau`, the
    logits are :math:`S = s \hat Q \hat K^\top` and
    :math:`\ell_i = \operatorname{lse}_j S_{ij} - S_{i t_i}` for target columns ``targets`` (n,),
    the column ``exclude[i]`` (if given, an (n,) index tensor) left out of row i; ``exclude`` may
    instead be a :class:`ColumnRule` (a column bias and accidental hits; not with ``symmetric``).
    With ``symmetric`` (square, ``targets`` the diagonal)
    :math:`\tfrac12(\ell_i + \operatorname{lse}_j S_{ji} - S_{ii})`.
    The gradient flows to Q, K and the scale (a 0-dim tensor).
    """

    @staticmethod
    def forward(ctx, query, key, scale, normalize, symmetric, chunk, targets, exclude):
        q, k = _UnitRows(query, normalize), _UnitRows(key, normalize)
        a2 = q.unit * (scale * LOG2E)
        biased = isinstance(exclude, ColumnRule) and exclude.bias is not None
        unshifted = normalize and not biased and unshifted_ok(scale, a2)
        ctx.q, ctx.k, ctx.symmetric, ctx.chunk, ctx.unshifted = q, k, symmetric, chunk, unshifted
        ctx.targets, ctx.exclude = targets, exclude
        # The backward reads key (and, unnormalized, query) as given: saving them makes autograd
        # refuse a backward after an in-place change to either.
        if symmetric:
            lse2_row, lse2_col, diag2 = _paired_lse2(
                a2, k.unit, chunk, True, targets, None, unshifted
            )
            ctx.save_for_backward(a2, scale, lse2_row, lse2_col, query, key)
            return LN2 * (0.5 * (lse2_row + lse2_col) - diag2)
        if any(ctx.needs_input_grad[:3]):
            ones = a2.new_ones(a2.shape[0])
            da, db, lse2_row, target2 = _paired_grad(
                a2, k.unit, chunk, ones, targets, exclude, unshifted=unshifted
            )
            ctx.save_for_backward(a2, scale, lse2_row, da, db, query, key)
        else:
            lse2_row, _, target2 = _paired_lse2(
                a2, k.unit, chunk, False, targets, exclude, unshifted
            )
        return LN2 * (lse2_row - target2)

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        g = g.contiguous()
        q, k, targets, exclude = ctx.q, ctx.k, ctx.targets, ctx.exclude
        if ctx.symmetric:
            a2, scale, lse2_row, lse2_col, _, _ = ctx.saved_tensors
            half = 0.5 * g
            da, db = _paired_grad(
                a2, k.unit, ctx.chunk, half, targets, None, lse2_row, half, lse2_col, ctx.unshifted
            )
        else:
            a2, scale, lse2_row, da, db, _, _ = ctx.saved_tensors
            if g.numel() == 0:
                pass  # a rank without queries: da is empty and db is zero
            elif bool((g == g[0]).all()):
                da, db = da * g[0], db * g[0]
            else:
                da, db = _paired_grad(
                    a2, k.unit, ctx.chunk, g, targets, exclude, lse2_row, unshifted=ctx.unshifted
                )
        # da is dℓ/dA for A = s·Q̂: dℓ/ds = <da, Q̂>, dℓ/dQ̂ = s·da.
        d_scale = None
        if ctx.needs_input_grad[2]:
            d_scale = torch.dot(da.reshape(-1), q.unit.reshape(-1)).reshape(scale.shape)
        d_query = q.backward(da.mul_(scale)) if ctx.needs_input_grad[0] else None
        d_key = k.backward(db) if ctx.needs_input_grad[1] else None
        return d_query, d_key, d_scale, None, None, None, None, None


def _self_lse2(z2: torch.Tensor, tile: int, unshifted: bool = False) -> torch.Tensor:
    r"""Base-2 row log-sum-exp of :math:`Z_2 Z_2^\top` without its diagonal, from the tiles on and
    above the diagonal; ``unshifted`` (see :func:`unshifted_ok`) sums :math:`2^{S_2}` without
    running maxima."""
    n = z2.shape[0]
    run_max, run_sum = (z2.new_zeros(n), z2.new_zeros(n)) if unshifted else _running(n, z2)
    spans = _spans(n, tile)
    buffers = _TileBuffers(z2, min(tile, n), min(tile, n), count=2)
    for bi, (i0, i1) in enumerate(spans):
        for j0, j1 in spans[bi:]:
            s2 = torch.matmul(z2[i0:i1], z2[j0:j1].T, out=buffers.get(0, i1 - i0, j1 - j0))
            scratch = buffers.get(1, i1 - i0, j1 - j0)
            if i0 == j0:
                s2.diagonal().fill_(float("-inf"))
            if unshifted:
                e = s2.exp2_()
                run_sum[i0:i1] += e.sum(1)
                if i0 != j0:
                    run_sum[j0:j1] += e.sum(0)
                continue
            _merge_lse2(run_max[i0:i1], run_sum[i0:i1], s2, 1, scratch)
            if i0 != j0:
                _merge_lse2(run_max[j0:j1], run_sum[j0:j1], s2, 0, scratch)
    return run_max + torch.log2(run_sum)


def _self_grad(z, z2, lse2, g, tile: int, unshifted: bool = False) -> torch.Tensor:
    r""":math:`(G + G^\top) Z` with :math:`G_{ij} = g_i\, \mathrm{softmax}_{j \ne i}(S_i)_j`,
    the softmax part of the NT-Xent gradient (the caller adds the target part).

    :math:`(G^\top)_{ij} = g_j e^{S_{ij} - \operatorname{lse}_j}` comes from the same tile, as
    :math:`S` is symmetric. Uniform weights :math:`g` are applied once, at the end. With
    ``unshifted`` (see :func:`unshifted_ok`), :math:`G + G^\top = 2^{S_2} \odot (u_i + u_j)`,
    :math:`u = g\, 2^{-\operatorname{lse}_2}`: one exponential per tile instead of two.
    """
    n = z.shape[0]
    uniform = bool((g == g[0]).all())
    if unshifted:
        u = torch.exp2(-lse2) if uniform else g * torch.exp2(-lse2)
    dz = torch.zeros_like(z)
    spans = _spans(n, tile)
    buffers = _TileBuffers(z, min(tile, n), min(tile, n), count=2)
    for bi, (i0, i1) in enumerate(spans):
        for j0, j1 in spans[bi:]:
            s2 = torch.matmul(z2[i0:i1], z2[j0:j1].T, out=buffers.get(0, i1 - i0, j1 - j0))
            if unshifted:
                pair = torch.add(u[i0:i1, None], u[j0:j1], out=buffers.get(1, i1 - i0, j1 - j0))
                h = s2.exp2_().mul_(pair)
            else:
                h_t = torch.sub(s2, lse2[j0:j1], out=buffers.get(1, i1 - i0, j1 - j0)).exp2_()
                h = s2.sub_(lse2[i0:i1, None]).exp2_()
                if not uniform:
                    h.mul_(g[i0:i1, None])
                    h_t.mul_(g[j0:j1])
                h.add_(h_t)
            if i0 == j0:
                h.diagonal().zero_()
            dz[i0:i1].addmm_(h, z[j0:j1])
            if i0 != j0:
                dz[j0:j1].addmm_(h.T, z[i0:i1])
    return dz.mul_(g[0]) if uniform else dz


def _twin(n2: int, device) -> torch.Tensor:
    """Index of each view's positive: i + N for the first N views, i - N for the rest."""
    return torch.arange(n2, device=device).roll(n2 // 2)


class SelfSoftmaxCE(torch.autograd.Function):
    r"""Per-view NT-Xent of 2N views Z (views i and i ± N are twins): returns (2N,)

    With :math:`\hat Z` the unit rows and scale :math:`s = 1/\tau`, :math:`S = s \hat Z \hat Z^\top`
    and :math:`\ell_i = \operatorname{lse}_{j \ne i} S_{ij} - S_{i,\mathrm{twin}(i)}`.
    The gradient flows to Z and the scale (a 0-dim tensor).
    """

    @staticmethod
    def forward(ctx, views, scale, tile: int):
        z = _UnitRows(views, normalize=True)
        z2 = z.unit * (scale * LOG2E).sqrt()
        unshifted = unshifted_ok(scale, z2)
        lse2 = _self_lse2(z2, tile, unshifted)
        twin = _twin(z2.shape[0], z2.device)
        positive = scale * (z.unit * z.unit[twin]).sum(1)
        ctx.z, ctx.tile, ctx.unshifted = z, tile, unshifted
        ctx.save_for_backward(z2, scale, lse2)
        return LN2 * lse2 - positive

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        z2, scale, lse2 = ctx.saved_tensors
        z, g = ctx.z, g.contiguous()
        twin = _twin(z2.shape[0], z2.device)
        # (G + Gᵀ) Ẑ, whose inner product with Ẑ is twice dℓ/ds.
        dz = _self_grad(z.unit, z2, lse2, g, ctx.tile, ctx.unshifted)
        dz.sub_((g + g[twin]).unsqueeze(1) * z.unit[twin])
        d_scale = None
        if ctx.needs_input_grad[1]:
            d_scale = 0.5 * (dz * z.unit).sum().reshape(scale.shape)
        return z.backward(dz.mul_(scale)), d_scale, None
