"""Pieces shared by the loss functions: reduction, compute dtype, temperature, normalization,
and the overflow check of the result."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from nce._validation import _all_finite, check_positive, check_reduction, check_tensor
from nce.functional._gather import Layout, reduce_across_ranks


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` ("mean" | "sum" | "none") to per-example losses."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def first_order_only(backward):
    """Decorates the ``backward`` of a custom autograd function whose gradient is computed by hand
    and is not itself differentiable: a double backward (``create_graph=True``) raises instead of
    silently dropping the second-order terms."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "this loss's fast path has a first-order gradient only: second derivatives "
                "(create_graph=True, e.g. a gradient penalty) are not supported"
            )
        return backward(ctx, *grads)

    return wrapper


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Half-precision inputs are computed in float32; float32 and float64 stay as they are."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def upcast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast half-precision tensors to float32 (a no-op otherwise)."""
    return tuple(t.to(compute_dtype(t)) for t in tensors)


def normalize_eps(dtype: torch.dtype) -> float:
    """The smallest norm divided by when normalizing: ``x / max(||x||, eps)``."""
    return 1e-12 if dtype == torch.float64 else 1e-6


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """``x / max(||x||, eps)`` along the last dimension: zero vectors stay zero, finite gradient."""
    return F.normalize(x, dim=-1, eps=normalize_eps(x.dtype))


def check_finite(loss: torch.Tensor | None = None, **inputs: torch.Tensor) -> None:
    r"""Raise ``ValueError`` naming the first of ``inputs`` that holds a NaN or ±Inf.

    Given ``loss``, an in-batch loss of these inputs, the check reads the loss instead, when it
    can: a NaN or ±Inf in row i of any input (normalized or not) makes the target logit
    :math:`S_{ii}` non-finite, hence :math:`\ell_i` and every reduction of it, so a finite loss
    proves the inputs finite with one read of the result; only a non-finite loss checks each
    input.
    """
    if loss is not None:
        finite = math.isfinite(loss.item()) if loss.dim() == 0 else _all_finite(loss)
        if finite:
            return
    for name, x in inputs.items():
        check_tensor(name, x, nonempty=False)


class PassedChecks:
    """The argument signatures (shapes, dtypes, devices, ``chunk_size``) of two-input losses
    that passed their checks, so that a training loop calling a loss with the same shapes every
    step runs the checks once. Only signatures whose checks passed are stored (up to
    ``maxsize``); the temperature and the reduction are checked on every call."""

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._seen: dict = {}

    def pair(self, a, b, temperature, reduction, chunk_size, check: Callable[[], object]):
        """The temperature as a float after ``check()`` passed for this signature (now or
        before); None for inputs other than plain tensors or a ``chunk_size`` other than None
        or an int, which the caller leaves to its general path."""
        if type(a) is not torch.Tensor or type(b) is not torch.Tensor:
            return None
        if chunk_size is not None and type(chunk_size) is not int:
            return None
        check_reduction(reduction)
        tau = check_temperature(temperature)
        signature = (a.shape, b.shape, a.dtype, b.dtype, a.device, b.device, chunk_size)
        if signature not in self._seen:
            check()
            if len(self._seen) >= self.maxsize:
                self._seen.clear()
            self._seen[signature] = None
        return tau


def check_temperature(temperature) -> float:
    """A temperature is a finite number > 0, or a scalar tensor (possibly learnable) > 0.
    Returns its value as a Python float."""
    return check_positive("temperature", temperature, allow_tensor=True)


def as_scale(temperature, like: torch.Tensor):
    """``1 / temperature`` as a Python float, or as a 0-dim tensor in ``like``'s dtype."""
    if isinstance(temperature, torch.Tensor):
        return 1.0 / temperature.to(like.dtype).reshape(())
    return 1.0 / float(temperature)


_LARGEST = {
    t: torch.finfo(t).max for t in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


def finish(
    loss: torch.Tensor,
    reduction: str,
    out_dtype: torch.dtype,
    *,
    bound: float | None,
    describe: Callable[[], str],
    where: Layout | None = None,
    rows: int | None = None,
) -> torch.Tensor:
    r"""Reduce per-example losses (across ranks when ``where`` is given) and return the result in
    ``out_dtype``, refusing a result that overflows instead of returning inf or NaN.

    ``bound`` is an upper bound on every :math:`|\ell_i|` known without reading the values (e.g.
    :math:`2/\tau + \log N` for unit embeddings), or None. When the bound proves that the reduced
    result fits both the compute dtype and ``out_dtype``, nothing is read; otherwise the result is
    checked and a ``ValueError`` names the arguments (``describe()``) and what to change. Given
    ``rows``, ``loss`` is already reduced over that many examples (single process only). With
    ``where`` spanning several ranks the check always runs and is collective (one all-reduce of a
    flag): every rank raises alike, whatever options each rank passed.
    """
    if rows is not None:
        out, n = loss, rows
    elif where is None:
        out, n = reduce(loss, reduction), loss.shape[0]
    else:
        out, n = reduce_across_ranks(loss, reduction, where), where.total
    limit = min(_LARGEST[out_dtype], _LARGEST[out.dtype])
    collective = where is not None and where.world_size > 1
    # Across ranks the check always runs: a skip decided from each rank's own options (which
    # may differ by mistake) would leave the ranks that do check waiting in the all-reduce.
    if not collective and bound is not None and bound * (n if reduction == "sum" else 1) < limit:
        return out if out.dtype == out_dtype else out.to(out_dtype)
    result = out.to(out_dtype)
    status = 0 if _all_finite(result) else 2 if _all_finite(out) else 1
    if collective:
        flag = torch.tensor([status], device=out.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        status = int(flag)
    if status == 1:
        raise ValueError(
            f"the loss overflows {out.dtype} although the inputs are finite ({describe()}): "
            "raise the temperature, bring the embeddings to a smaller scale, or pass float64 "
            "inputs"
        )
    if status == 2:
        advice = "pass float32 inputs" + (' or use reduction="mean"' if reduction == "sum" else "")
        raise ValueError(
            f"the loss exceeds the largest {out_dtype} value {torch.finfo(out_dtype).max:.6g} "
            f"(reduction={reduction!r} over {n} rows, {describe()}): {advice}"
        )
    return result
