r"""Uniform noise over class ids.

Over a vocabulary of :math:`V` classes, the uniform noise is

.. math:: q(i) = \frac{1}{V}, \qquad \log q(i) = -\log V, \qquad i \in \{0, \dots, V - 1\},

the simplest choice for NCE over a large output space (Mnih & Teh, 2012 compare it with the
unigram distribution, which usually works better: see :class:`nce.noise.Unigram`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nce._validation import check_ids, check_int
from nce.noise._checks import as_sample_shape, check_generator
from nce.noise.base import Noise

__all__ = ["Uniform"]


class Uniform(Noise):
    r"""Discrete uniform noise :math:`q(i) = 1 / V` over the class ids :math:`0, \dots, V - 1`.

    Shape:
        * ``sample(shape)``: ``shape``, int64 ids.
        * ``log_prob(ids)``: ``ids`` is ``(*)`` integer, the result ``(*)`` of the module's
          floating dtype (the default dtype unless cast with ``.to(dtype)``).

    Args:
        n: The number of classes :math:`V \geq 1`.

    References:
        | A fast and simple algorithm for training neural probabilistic language models
        | (Mnih & Teh, 2012) https://arxiv.org/abs/1206.6426

    Example:
        >>> noise = Uniform(10)
        >>> ids = noise.sample((2, 3), generator=torch.Generator().manual_seed(0))
        >>> ids.shape, ids.dtype
        (torch.Size([2, 3]), torch.int64)
        >>> noise.log_prob(torch.tensor([0, 9]))
        tensor([-2.3026, -2.3026])
    """

    log_num_classes: Tensor

    def __init__(self, n: int):
        super().__init__()
        self.num_classes = check_int("n", n, minimum=1)
        self.register_buffer("log_num_classes", torch.tensor(math.log(n)))

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size()

    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        shape = as_sample_shape(shape)
        check_generator(generator)
        device = self.log_num_classes.device
        return torch.randint(self.num_classes, shape, generator=generator, device=device)

    def log_prob(self, ids: Tensor) -> Tensor:
        check_ids("ids", ids, num_classes=self.num_classes)
        return (-self.log_num_classes).to(ids.device).expand(ids.shape).clone()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
