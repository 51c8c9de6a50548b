"""One converter from user data (numpy arrays, tensors, pandas DataFrames, nested lists) to
tensors, with one set of dtype rules for every estimator and trainer:

* a floating tensor keeps its dtype (and device); an integer or bool tensor becomes float64;
* a numpy float16/float32 array becomes float32, every other numeric array (float64, ints,
  bools) float64; strings, objects and complex numbers are refused;
* ``dtype=`` overrides the rules with the working dtype of the caller (``torch.float32`` for a
  neural network, say);
* values must be finite, and the result has ``ndim`` dimensions.

Estimators that return per-row values give numpy back for numpy (or DataFrame) input and tensors
for tensor input: :func:`is_numpy_like` tells which.
"""

from __future__ import annotations

import numpy as np
import torch

from nce._validation import check_tensor

__all__ = ["as_float_tensor", "is_numpy_like", "like_input"]


def is_numpy_like(X) -> bool:
    """True for anything but a tensor (numpy arrays, DataFrames, lists)."""
    return not isinstance(X, torch.Tensor)


def as_float_tensor(
    name: str, X, *, ndim: int | tuple[int, ...] | None = 2, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``X`` as a finite floating tensor (see the module docstring for the dtype rules).

    Example:
        >>> as_float_tensor("X", np.zeros((2, 3), dtype=np.float32)).dtype
        torch.float32
        >>> as_float_tensor("X", [[1, 2], [3, 4]]).dtype
        torch.float64
    """
    if not isinstance(X, torch.Tensor):
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name} must be a tensor or an array of numbers, got {type(X).__name__}"
            ) from error
        if array.dtype.kind == "f":
            target = np.float32 if array.dtype.itemsize <= 4 else np.float64
        elif array.dtype.kind in "iub":
            target = np.float64
        else:
            raise TypeError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
        X = torch.from_numpy(np.array(array, dtype=target, copy=True, order="C"))
    elif not X.is_floating_point():
        if X.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        X = X.to(torch.float64)
    if dtype is not None:
        X = X.to(dtype)
    check_tensor(name, X, ndim=ndim)
    return X


def like_input(values: torch.Tensor, X):
    """``values`` as numpy when the user's ``X`` was not a tensor, else as a tensor."""
    if is_numpy_like(X):
        return values.detach().cpu().numpy()
    return values
