"""The built-in data set of the contrastive benchmarks: scikit-learn's handwritten digits.

1797 grey-level 8x8 images of the digits 0–9 (bundled with scikit-learn, nothing downloads),
scaled from 0..16 to [0, 1] and split 70/30, stratified by class, with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nce._validation import check_in_range, check_int

__all__ = ["DigitsSplit", "load_digits_split"]


@dataclass(frozen=True)
class DigitsSplit:
    """Train and test images (N, 1, 8, 8) float32 in [0, 1] and labels (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(test_size: float = 0.3, random_state: int = 0) -> DigitsSplit:
    """scikit-learn's digits as images, split by ``train_test_split(stratify=y)``.

    Args:
        test_size: fraction of the samples held out.
        random_state: seed of the split.

    Example:
        >>> s = load_digits_split()
        >>> tuple(s.x_train.shape), tuple(s.x_test.shape)
        ((1257, 1, 8, 8), (540, 1, 8, 8))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_in_range("test_size", test_size, 0.0, 1.0)
    check_int("random_state", random_state, minimum=0)
    x, y = load_digits(return_X_y=True)
    a, b, ya, yb = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=random_state
    )

    def images(v):
        return torch.as_tensor(v, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0

    def labels(v):
        return torch.as_tensor(v, dtype=torch.long)

    return DigitsSplit(images(a), labels(ya), images(b), labels(yb))
