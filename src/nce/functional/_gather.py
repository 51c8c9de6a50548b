r"""Negatives from every rank: a row gather whose gradient returns to the rank that owns each row.

With :math:`W` ranks, rank :math:`r` holding :math:`n_r` rows (sizes may differ) and
:math:`N = \sum_r n_r`, each rank scores its own queries against the keys of all ranks. The global
loss is :math:`L = \frac1N\sum_i \ell_i`. DDP averages parameter gradients over ranks, so each rank
returns :math:`L_r = \frac{W}{N}\sum_{i \in r}\ell_i`; then
:math:`\frac1W\sum_r \nabla L_r = \nabla L` exactly, provided the gradient of a gathered row sums
the contributions of every rank's loss. The backward pass of :func:`gather_rows` does that sum
(an all-reduce) and keeps the local slice — neither dropping the other ranks' terms nor scaling
them by :math:`1/W`.

Without an initialized process group every function here is the single-process identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    """True when a torch.distributed process group is up (``torchrun``, ``init_process_group``)."""
    return dist.is_available() and dist.is_initialized()


@dataclass(frozen=True)
class Layout:
    """Where this rank's rows sit in the gathered batch: ``sizes[r]`` rows per rank."""

    sizes: tuple[int, ...]
    rank: int

    @property
    def offset(self) -> int:
        return sum(self.sizes[: self.rank])

    @property
    def total(self) -> int:
        return sum(self.sizes)

    @property
    def world_size(self) -> int:
        return len(self.sizes)


def layout(n_local: int, device: torch.device) -> Layout:
    """Gather every rank's row count (ranks may hold different batch sizes)."""
    if not is_initialized():
        return Layout((n_local,), 0)
    mine = torch.tensor([n_local], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, mine)
    return Layout(tuple(int(s) for s in sizes), dist.get_rank())


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, where: Layout):
        ctx.where = where
        padded = x.new_zeros((max(where.sizes), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in where.sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, where.sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        where = ctx.where
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[where.offset : where.offset + where.sizes[where.rank]], None


def gather_rows(x: torch.Tensor, where: Layout | None = None) -> tuple[torch.Tensor, Layout]:
    r"""All ranks' rows of ``x`` stacked in rank order, differentiable.

    The gradient of the result with respect to this rank's rows is the sum over all ranks of
    their gradients for those rows.

    Shape:
        - x: (n_r, ...)
        - output: (N, ...), with N the sum of the ranks' n_r

    Returns:
        The gathered tensor and the :class:`Layout` (this rank's offset and every rank's size).
    """
    where = where or layout(x.shape[0], x.device)
    if where.world_size == 1:
        return x, where
    return _GatherRows.apply(x, where), where


def reduce_across_ranks(loss: torch.Tensor, reduction: str, where: Layout) -> torch.Tensor:
    r"""Reduce this rank's per-example losses so that DDP's averaging of gradients over the W ranks
    gives the gradient of the global "mean" (:math:`\frac{W}{N}\sum_{local}`) or "sum"
    (:math:`W\sum_{local}`); "none" returns the local losses."""
    if reduction == "mean":
        return loss.sum() * (where.world_size / where.total)
    if reduction == "sum":
        return loss.sum() * where.world_size
    return loss
