"""Argument checks shared by every public function.

Each check raises :class:`ValueError` or :class:`TypeError` whose message names the argument and
quotes the offending shape or value, e.g. ``query has shape (8, 16) but key has (8, 32)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

REDUCTIONS = ("mean", "sum", "none")


def shape_str(x: torch.Tensor | torch.Size) -> str:
    """``(8, 16)`` for a tensor (or a ``torch.Size``) of that shape, ``()`` for a scalar."""
    shape = x if isinstance(x, torch.Size) else x.shape
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_tensor(
    name: str,
    x,
    ndim: int | Sequence[int] | None = None,
    *,
    floating: bool = True,
    finite: bool = True,
    nonempty: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a tensor with values (not a meta tensor) of the expected rank,
    floating dtype and finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _check_not_meta(name, x)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {shape_str(x)}")
    if floating and not (x.is_floating_point()):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {shape_str(x)})")
    if finite and x.is_floating_point() and not _all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s)")
    return x


def _check_not_meta(name: str, x: torch.Tensor) -> None:
    if x.is_meta:
        raise TypeError(
            f"{name} is a meta tensor (a shape without values, shape {shape_str(x)}): "
            "pass a tensor that holds data"
        )


def _all_finite(x: torch.Tensor) -> bool:
    """True when no element is NaN or ±Inf. A finite sum proves it with one fast reduction; only a
    non-finite sum (a bad element, or an overflow of large finite ones) needs the elementwise test.
    """
    if bool(torch.isfinite(x.detach().sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_same_size(dim: int, what: str, **tensors: torch.Tensor) -> None:
    """All tensors have the same size along ``dim`` (``what`` names it: "batch", "dimension")."""
    items = list(tensors.items())
    first_name, first = items[0]
    for name, x in items[1:]:
        if x.shape[dim] != first.shape[dim]:
            raise ValueError(
                f"{what} mismatch: {first_name} has shape {shape_str(first)} "
                f"but {name} has {shape_str(x)}"
            )


def check_same_shape(**tensors: torch.Tensor) -> None:
    items = list(tensors.items())
    first_name, first = items[0]
    for name, x in items[1:]:
        if x.shape != first.shape:
            raise ValueError(
                f"{first_name} has shape {shape_str(first)} but {name} has {shape_str(x)}"
            )


def check_compatible(**tensors: torch.Tensor) -> None:
    """Same device and same dtype for all tensors."""
    items = list(tensors.items())
    first_name, first = items[0]
    for name, x in items[1:]:
        if x.device != first.device:
            raise ValueError(
                f"device mismatch: {first_name} is on {first.device} but {name} is on {x.device}"
            )
        if x.dtype != first.dtype:
            raise TypeError(
                f"dtype mismatch: {first_name} is {first.dtype} but {name} is {x.dtype}"
            )


def check_positive(name: str, value, *, allow_tensor: bool = False) -> float:
    """A finite number > 0; a 0-dim tensor (e.g. a learned temperature) when ``allow_tensor``.
    Returns the value as a Python float."""
    if isinstance(value, torch.Tensor):
        if not allow_tensor:
            raise TypeError(f"{name} must be a number, got a tensor")
        _check_not_meta(name, value)
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {shape_str(value)}")
        v = float(value.detach())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
    else:
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v}")
    return v


def check_in_range(name: str, value, low: float, high: float, *, closed_high: bool = False) -> None:
    """``low <= value < high`` (or ``<= high`` when ``closed_high``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = low <= value <= high if closed_high else low <= value < high
    if not ok or math.isnan(value):
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name} must lie in [{low}, {high}{bracket}, got {value}")


def check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_ids(name: str, ids, *, shape: torch.Size | None = None, num_classes: int | None = None):
    """Integer class ids, optionally of a given shape and within ``[0, num_classes)``."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype, got {ids.dtype}")
    if shape is not None and ids.shape != shape:
        want = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want}, got {shape_str(ids)}")
    if num_classes is not None and ids.numel() > 0:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} holds class id {bad}, outside [0, {num_classes})")
    return ids


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type when the message is empty), for
    one-line error reports."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
