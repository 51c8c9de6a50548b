r"""Any :class:`torch.distributions.Distribution` as noise.

A distribution already has :math:`\log q(x)` (``log_prob``) and draws :math:`y \sim q` (``sample``),
but its ``sample`` takes no :class:`torch.Generator`. The adapter makes a draw reproducible all the
same: it takes a seed :math:`s` from the generator and samples under a forked global RNG seeded
with :math:`s`, so the same generator state gives the same samples and the global RNG is left as
it was.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from nce._random import seeded
from nce.noise._checks import as_sample_shape, check_generator
from nce.noise.base import Noise

__all__ = ["DistributionNoise", "as_noise"]

_SEED_BOUND = 2**62


class DistributionNoise(Noise):
    r"""Wraps a :class:`torch.distributions.Distribution` :math:`q` as a :class:`Noise`.

    ``log_prob`` and ``event_shape`` are the distribution's; ``sample(shape, generator)`` draws a
    seed from ``generator`` and calls ``distribution.sample(shape)`` under a forked, reseeded
    global RNG. The distribution's tensors are held as they are: ``.to(device)`` does not move them.

    Shape:
        * ``sample(shape)``: ``(*shape, *batch_shape, *event_shape)``.
        * ``log_prob(x)``: ``x`` is ``(*, *batch_shape, *event_shape)``, the result
          ``(*, *batch_shape)``.

    Args:
        distribution: The distribution to wrap.

    Example:
        >>> from torch.distributions import Independent, Normal
        >>> noise = DistributionNoise(Independent(Normal(torch.zeros(3), torch.ones(3)), 1))
        >>> y = noise.sample(4, generator=torch.Generator().manual_seed(0))
        >>> y.shape, noise.log_prob(y).shape
        (torch.Size([4, 3]), torch.Size([4]))
    """

    def __init__(self, distribution: Distribution):
        super().__init__()
        if not isinstance(distribution, Distribution):
            raise TypeError(
                "distribution must be a torch.distributions.Distribution, "
                f"got {type(distribution).__name__}"
            )
        self.distribution = distribution

    @property
    def event_shape(self) -> torch.Size:
        return self.distribution.event_shape

    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        shape = as_sample_shape(shape)
        check_generator(generator)
        if generator is None:
            return self.distribution.sample(shape)
        seed = int(torch.randint(_SEED_BOUND, (), generator=generator, device=generator.device))
        with seeded(seed):
            return self.distribution.sample(shape)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.distribution.log_prob(x)

    def extra_repr(self) -> str:
        return repr(self.distribution)


def as_noise(noise, *, name: str = "noise") -> Noise:
    r"""Returns ``noise`` as a :class:`Noise`.

    A :class:`Noise` is returned as is, a :class:`torch.distributions.Distribution` is wrapped in
    a :class:`DistributionNoise`; anything else raises a :class:`TypeError`.

    Args:
        noise: A :class:`Noise` or a :class:`~torch.distributions.Distribution`.
        name: The argument's name, quoted in the error message.

    Example:
        >>> from torch.distributions import Independent, Normal
        >>> noise = as_noise(Independent(Normal(torch.zeros(2), torch.ones(2)), 1))
        >>> noise.sample((5,), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
    """
    if isinstance(noise, Noise):
        return noise
    if isinstance(noise, Distribution):
        return DistributionNoise(noise)
    raise TypeError(
        f"{name} must be a nce.noise.Noise or a torch.distributions.Distribution, "
        f"got {type(noise).__name__}"
    )
