r"""Uniform noise on an axis-aligned box.

On the box :math:`B = [l_1, h_1] \times \dots \times [l_D, h_D]`, the uniform density is

.. math:: q(x) = \prod_{d=1}^D \frac{1}{h_d - l_d} \ (x \in B), \qquad q(x) = 0 \ (x \notin B),

so :math:`\log q(x) = -\sum_d \log(h_d - l_d)` inside and :math:`-\infty` outside. For NCE the box
must cover the data's support (the log-ratio is undefined where :math:`q = 0`): ``Box.fit`` spans
the data's range, widened on each side.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nce._validation import check_compatible, check_in_range, check_same_shape, check_tensor
from nce.noise._checks import as_data, as_sample_shape, check_generator, check_points
from nce.noise.base import Noise

__all__ = ["Box"]


class Box(Noise):
    r"""Uniform noise on the box :math:`[l_1, h_1] \times \dots \times [l_D, h_D]`.

    .. math:: \log q(x) = -\sum_{d=1}^D \log(h_d - l_d) \ \text{inside the (closed) box},
        \quad -\infty \ \text{outside}.

    Shape:
        * ``low``, ``high``: (D,).
        * ``sample(shape)``: ``(*shape, D)``.
        * ``log_prob(x)``: ``x`` is ``(*, D)``, the result ``(*)``.

    Args:
        low: The lower corner :math:`l`, a finite floating tensor.
        high: The upper corner :math:`h`, with :math:`h_d > l_d` for every :math:`d`.

    References:
        | Noise-contrastive estimation of unnormalized statistical models
        | (Gutmann & Hyvarinen, 2012) https://jmlr.org/papers/v13/gutmann12a.html

    Example:
        >>> noise = Box(torch.tensor([0.0, -1.0]), torch.tensor([2.0, 1.0]))
        >>> noise.log_prob(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
        tensor([-1.3863,    -inf])
        >>> noise.sample(5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
    """

    low: Tensor
    high: Tensor

    def __init__(self, low: Tensor, high: Tensor):
        super().__init__()
        check_tensor("low", low, ndim=1)
        check_tensor("high", high, ndim=1)
        check_same_shape(low=low, high=high)
        check_compatible(low=low, high=high)
        empty = (high <= low).nonzero()
        if empty.numel():
            d = int(empty[0, 0])
            raise ValueError(
                f"high must exceed low in every dimension, got low[{d}] = {float(low[d])} "
                f"and high[{d}] = {float(high[d])}"
            )
        self.register_buffer("low", low.detach().clone())
        self.register_buffer("high", high.detach().clone())

    @classmethod
    def fit(cls, X, margin: float = 0.1) -> Box:
        r"""The box spanning the data's range, widened by ``margin`` times it on each side.

        .. math:: l_d = \min_n X_{nd} - m r_d, \quad h_d = \max_n X_{nd} + m r_d, \quad
            r_d = \max_n X_{nd} - \min_n X_{nd}.

        Args:
            X: The data, an (N, D) floating tensor or numpy array (float32 arrays stay float32,
                others become float64), finite, not constant in any column.
            margin: The widening :math:`m \geq 0`, a fraction of each column's range.

        Example:
            >>> Box.fit(torch.tensor([[0.0, 1.0], [1.0, 3.0]]), margin=0.5).high
            tensor([1.5000, 4.0000])
        """
        X = as_data("X", X, min_rows=1, purpose="Box.fit")
        check_in_range("margin", margin, 0.0, math.inf)
        low, high = X.min(dim=0).values, X.max(dim=0).values
        width = high - low
        constant = (width == 0).nonzero().flatten().tolist()
        if constant:
            raise ValueError(
                f"X is constant in column(s) {constant}, so the box around it has zero width"
            )
        return cls(low - margin * width, high + margin * width)

    @property
    def event_shape(self) -> torch.Size:
        return self.low.shape

    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        shape = as_sample_shape(shape)
        check_generator(generator)
        u = torch.rand(
            shape + self.low.shape,
            generator=generator,
            dtype=self.low.dtype,
            device=self.low.device,
        )
        return self.low + (self.high - self.low) * u

    def log_prob(self, x: Tensor) -> Tensor:
        check_points(x, self.low.shape[0], self.low.device)
        inside = ((x >= self.low) & (x <= self.high)).all(dim=-1)
        dtype = torch.promote_types(x.dtype, self.low.dtype)
        log_volume = (self.high - self.low).to(dtype).log().sum()
        return torch.where(inside, -log_volume, -math.inf)

    def extra_repr(self) -> str:
        return f"dim={self.low.shape[0]}"
