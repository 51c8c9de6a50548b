"""Argument checks shared by the noise distributions: sample shapes, data, query points."""

from __future__ import annotations

import torch

from nce._convert import as_float_tensor
from nce._validation import check_tensor, shape_str


def as_sample_shape(shape) -> torch.Size:
    """``5 -> (5,)``; a tuple, list or :class:`torch.Size` of sizes >= 0 is kept."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}")
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must hold sizes >= 0, got {tuple(shape)}")
    return torch.Size(shape)


def check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )


def as_data(name: str, X, *, min_rows: int, purpose: str) -> torch.Tensor:
    """``X`` converted by :func:`nce._convert.as_float_tensor` (finite, floating, (N, D)), with
    N >= ``min_rows``."""
    X = as_float_tensor(name, X, ndim=2)
    if X.shape[0] < min_rows:
        raise ValueError(
            f"{name} has {X.shape[0]} row(s) but {purpose} needs at least {min_rows} "
            f"(shape {shape_str(X)})"
        )
    return X


def check_fit_dtype(name: str, X: torch.Tensor, purpose: str) -> None:
    """Fitting needs a Cholesky factorization, which half precision lacks."""
    if X.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"{name} must be float32 or float64 for {purpose}, got {X.dtype}")


def check_points(x, dim: int, device: torch.device) -> torch.Tensor:
    """Points ``x`` of shape (*, D) for a continuous noise of dimension ``dim``."""
    check_tensor("x", x, finite=False, nonempty=False)
    if x.dim() == 0:
        raise ValueError(f"x must have a last dimension of size {dim}, got shape ()")
    if x.shape[-1] != dim:
        raise ValueError(
            f"x has {x.shape[-1]} columns but the noise has dimension {dim} "
            f"(x has shape {shape_str(x)})"
        )
    if x.device != device:
        raise ValueError(f"device mismatch: x is on {x.device} but the noise is on {device}")
    return x
