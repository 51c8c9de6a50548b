r"""Squared norms of whitened points that stay finite (or become :math:`+\infty`), never NaN.

A Gaussian-shaped log density needs :math:`\tfrac12 \lVert A (x - \mu) \rVert^2`. Computed as
written, a finite point far out overflows: :math:`x - \mu` or :math:`A (x - \mu)` becomes
:math:`\pm\infty` and a sum of opposite infinities NaN. Here each row is divided first by a power
of two :math:`s \geq 1` of the size of its largest entry (or the mean's),

.. math:: u = x / s - \mu / s, \qquad
    \tfrac12 \lVert A (x - \mu) \rVert^2 = \big(\tfrac12 \lVert A u \rVert^2 \cdot s\big) \cdot s,

so :math:`A u` is finite and only the final products can overflow, to :math:`+\infty`. Dividing by
a power of two is exact, so rows that did not overflow before give bit-identical results.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["half_squared_norm", "scaled_difference"]


def scaled_difference(x: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(u, s)`` with :math:`u = x / s - \mu / s` and :math:`s` a power of two, :math:`s \geq 1`.

    Shape:
        - x: (*, D); mean: broadcastable to it
        - u: the broadcast shape; s: that shape with a last dimension of 1
    """
    with torch.no_grad():
        largest = torch.maximum(
            x.detach().abs().amax(-1, keepdim=True), mean.detach().abs().max().to(x.dtype)
        )
        exponent = torch.frexp(largest).exponent
        scale = torch.ldexp(torch.ones_like(largest), (exponent - 1).clamp_min(0))
    return x / scale - mean / scale, scale


def half_squared_norm(z: Tensor, scale: Tensor) -> Tensor:
    r""":math:`\tfrac12 \lVert s z \rVert^2` over the last dimension, as
    :math:`(\tfrac12 \lVert z \rVert^2 s) s`: :math:`+\infty` past the dtype's range, never NaN.

    Shape:
        - z: (*, D); scale: (*, 1)
        - output: (*)
    """
    return (0.5 * z.square().sum(-1) * scale.squeeze(-1)) * scale.squeeze(-1)
