"""Pieces shared by the loss functions: reduction, compute dtype, temperature, normalization."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from nce._validation import check_positive


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


def check_temperature(temperature) -> None:
    """A temperature is a finite number > 0, or a scalar tensor (possibly learnable) > 0."""
    check_positive("temperature", temperature, allow_tensor=True)


def as_scale(temperature, like: torch.Tensor):
    """``1 / temperature`` as a Python float, or as a 0-dim tensor in ``like``'s dtype."""
    if isinstance(temperature, torch.Tensor):
        return 1.0 / temperature.to(like.dtype).reshape(())
    return 1.0 / float(temperature)
