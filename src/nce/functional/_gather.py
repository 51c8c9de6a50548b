r"""Negatives from every rank: a row gather whose gradient returns to the rank that owns each row.

With :math:`W` ranks, rank :math:`r` holding :math:`n_r` rows (sizes may differ) and
:math:`N = \sum_r n_r`, each rank scores its own queries against the keys of all ranks. The global
loss is :math:`L = \frac1N\sum_i \ell_i`. DDP averages parameter gradients over ranks, so each rank
returns :math:`L_r = \frac{W}{N}\sum_{i \in r}\ell_i`; then
:math:`\frac1W\sum_r \nabla L_r = \nabla L` exactly, provided the gradient of a gathered row sums
the contributions of every rank's loss. The backward pass of :func:`gather_rows` does that sum
(an all-reduce) and keeps the local slice — neither dropping the other ranks' terms nor scaling
them by :math:`1/W`.

Before any rows move, :func:`global_layout` exchanges one small fixed-size integer record per
rank (its row count, the feature shape and dtype of its rows, and whether its own argument checks
passed), so that the global batch is checked and a bad argument on any rank raises the same
error on every rank, instead of leaving the other ranks waiting in a collective.

Without an initialized process group every function here is the single-process identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nce._validation import shape_str


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


_DTYPES = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
)
_MAX_FEATURE_DIMS = 6
# Record per rank: [failed, rows, dtype code, tracks grad, feature ndim, feature sizes...]
_RECORD = 5 + _MAX_FEATURE_DIMS


def _record(rows: torch.Tensor, tracks_grad: int, failed: bool) -> list[int]:
    if failed:
        return [1] + [0] * (_RECORD - 1)
    features = list(rows.shape[1:])
    code = _DTYPES.index(rows.dtype) if rows.dtype in _DTYPES else len(_DTYPES)
    padding = [0] * (_MAX_FEATURE_DIMS - len(features))
    return [0, rows.shape[0], code, tracks_grad, len(features), *features, *padding]


def exchange_device(rows) -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    if isinstance(rows, torch.Tensor) and rows.device.type not in ("meta",):
        return rows.device
    return torch.device("cpu")


def _raise_everywhere(failure: BaseException | None, world: int) -> None:
    """Every rank learns every rank's error message and raises the first one."""
    mine = None if failure is None else (isinstance(failure, TypeError), str(failure))
    messages: list = [None] * world
    dist.all_gather_object(messages, mine)
    rank, (is_type_error, text) = next((r, m) for r, m in enumerate(messages) if m is not None)
    error = (TypeError if is_type_error else ValueError)(f"on rank {rank} of {world}: {text}")
    raise error from failure


def _describe(name: str, records: list[list[int]]) -> str:
    """``rank 0: query of shape (3, 5), rank 1: query of shape (4, 6)`` from the records."""
    shapes = [shape_str(torch.Size([r[1], *r[5 : 5 + r[4]]])) for r in records]
    return ", ".join(f"rank {rank}: {name} of shape {s}" for rank, s in enumerate(shapes))


def global_layout(
    name: str,
    rows: torch.Tensor,
    *,
    min_total: int = 0,
    check: Callable[[], None] | None = None,
    gathered: Sequence[torch.Tensor] | None = None,
    why: str = "",
    agree: dict[str, int] | None = None,
) -> Layout:
    r"""Every rank's row count, after checking the batch that a gathered loss will see.

    The check every loss with ``gather=True`` runs before its first data collective:

    1. this rank runs ``check()``, its own argument checks (its ``ValueError`` or ``TypeError`` is
       caught, not raised yet);
    2. the ranks exchange one small integer record each (one ``all_gather``): whether the checks
       passed, the row count, the feature shape and dtype of ``rows``, and which of the tensors
       to be ``gathered`` (default: ``rows``) track gradients (a rank whose gathered rows do not
       would leave the others waiting in the backward all-reduce);
    3. every rank then raises the same error if any rank's checks failed (quoting that rank's
       message), if the feature shapes, dtypes or gradient tracking differ between ranks, or if
       the global batch has fewer than ``min_total`` rows (``why`` says what needs them), or if
       the small integers ``agree`` (options that decide which collectives follow, by name; the
       same names on every rank) differ between ranks.

    Ranks may hold different numbers of rows, zero included. Without an initialized process
    group it runs ``check()`` and the ``min_total`` check on the local batch.

    Shape:
        - rows: (n_r, ...) on rank r

    Returns:
        The :class:`Layout` of the global batch.
    """
    failure = None
    if check is not None:
        try:
            check()
        except (TypeError, ValueError) as error:
            if not is_initialized():
                raise
            failure = error
    if not is_initialized():
        where = Layout((rows.shape[0],), 0)
        _check_total(name, rows, where, min_total, why)
        return where
    if failure is None and rows.dim() - 1 > _MAX_FEATURE_DIMS:
        failure = ValueError(
            f"gather=True takes {name} of at most {_MAX_FEATURE_DIMS + 1} dimensions, "
            f"got shape {shape_str(rows)}"
        )
    tracks_grad = 0
    if failure is None and torch.is_grad_enabled():
        for bit, x in enumerate((rows,) if gathered is None else gathered):
            tracks_grad |= int(x.requires_grad) << bit
    world = dist.get_world_size()
    options = list((agree or {}).values())
    mine = torch.tensor(
        _record(rows, tracks_grad, failure is not None) + options,
        dtype=torch.int64,
        device=exchange_device(rows),
    )
    table = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(table, mine)
    records = [t.tolist() for t in table]
    if any(r[0] for r in records):
        _raise_everywhere(failure, world)
    if len({tuple(r[_RECORD:]) for r in records}) > 1:
        shown = ", ".join(
            f"rank {rank}: " + _options(agree, r) for rank, r in enumerate(records)
        )
        raise ValueError(f"gather=True needs the same options on every rank, got {shown}")
    if len({tuple(r[4:_RECORD]) for r in records}) > 1:
        raise ValueError(
            "gather=True needs the same feature shape on every rank, got "
            + _describe(name, records)
        )
    if len({r[2] for r in records}) > 1:
        dtypes = ", ".join(
            f"rank {rank}: {_DTYPES[r[2]] if r[2] < len(_DTYPES) else 'other'}"
            for rank, r in enumerate(records)
        )
        raise TypeError(f"gather=True needs {name} of the same dtype on every rank, got {dtypes}")
    if len({r[3] for r in records}) > 1:
        tracking = ", ".join(f"rank {rank}: {r[3]:b}" for rank, r in enumerate(records))
        raise ValueError(
            "gather=True needs every rank to track gradients alike (a rank whose loss needs a "
            "backward pass waits for all the others in it); requires_grad under grad mode of "
            f"the gathered tensors, one bit each: {tracking}"
        )
    where = Layout(tuple(r[1] for r in records), dist.get_rank())
    _check_total(name, rows, where, min_total, why)
    return where


def _options(agree: dict[str, int], record: list[int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(agree, record[_RECORD:], strict=True))


def _check_total(name: str, rows: torch.Tensor, where: Layout, min_total: int, why: str) -> None:
    if where.total >= min_total:
        return
    if where.world_size == 1:
        got = f"got {name} of shape {shape_str(rows)}"
    else:
        sizes = " + ".join(str(n) for n in where.sizes)
        got = f"got {sizes} = {where.total} rows of {name} over {where.world_size} ranks"
    raise ValueError(f"{why or 'this loss needs'} a batch of at least {min_total}, {got}")


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
    their gradients for those rows. Without ``where``, the ranks first agree on the layout with
    :func:`global_layout` (same feature shape and dtype on every rank, or the same error on all).

    Shape:
        - x: (n_r, ...)
        - output: (N, ...), with N the sum of the ranks' n_r

    Returns:
        The gathered tensor and the :class:`Layout` (this rank's offset and every rank's size).
    """
    where = where or global_layout("x", x)
    if where.world_size == 1:
        return x, where
    return _GatherRows.apply(x, where), where


def reduce_across_ranks(loss: torch.Tensor, reduction: str, where: Layout) -> torch.Tensor:
    r"""Reduce this rank's per-example losses so that DDP's averaging of gradients over the W ranks
    gives the gradient of the global "mean" (:math:`\frac{W}{N}\sum_{local}`) or "sum"
    (:math:`W\sum_{local}`); "none" returns the local losses.

    Shape:
        - loss: (N_local,); output: () or (N_local,) for "none"
    """
    if reduction == "mean":
        return loss.sum() * (where.world_size / where.total)
    if reduction == "sum":
        return loss.sum() * where.world_size
    return loss
