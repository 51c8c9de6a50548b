"""Random states, one way for the whole library: ``random_state`` is ``None``, an int or a
:class:`torch.Generator`, and nothing here reads or reseeds torch's global generator.

* :func:`as_generator` gives the generator that draws a run's random numbers (splits, batches,
  noise samples).
* :func:`seeded` initializes modules (whose ``reset_parameters`` draw from the global generator)
  reproducibly: inside it the global generator is seeded, and on leaving it is restored, so the
  caller's own stream of random numbers is untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["as_generator", "as_seed", "check_random_state", "seeded"]


def check_random_state(random_state, name: str = "random_state") -> None:
    """``None``, an int >= 0 or a :class:`torch.Generator`; anything else raises, naming it."""
    if random_state is None or isinstance(random_state, torch.Generator):
        return
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(
            f"{name} must be None, an int or a torch.Generator, got {type(random_state).__name__}"
        )
    if random_state < 0:
        raise ValueError(f"{name} must be >= 0, got {random_state}")


def as_seed(random_state, name: str = "random_state") -> int:
    """An int seed: the int itself, a fresh one drawn by a generator, or an unpredictable one for
    ``None`` (from the operating system, not from torch's global generator)."""
    check_random_state(random_state, name)
    if isinstance(random_state, torch.Generator):
        return int(torch.randint(2**62, (), generator=random_state, dtype=torch.int64))
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 2)
    return int(random_state)


def as_generator(random_state, name: str = "random_state") -> torch.Generator:
    """The generator of a run: a given :class:`torch.Generator` itself (its stream advances), a new
    CPU generator seeded with an int, or one seeded unpredictably for ``None``.

    Example:
        >>> g = as_generator(0)
        >>> torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=as_generator(0)))
        True
    """
    if isinstance(random_state, torch.Generator):
        return random_state
    return torch.Generator().manual_seed(as_seed(random_state, name))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generators for the block and restore their states afterwards, so that
    module initialization (or a ``torch.distributions`` sample) inside is reproducible and the
    caller's random numbers are unchanged. The CPU generator is always forked; CUDA generators
    only once CUDA is initialized (seeding them before would queue a seed for later).

    Example:
        >>> before = torch.random.get_rng_state()
        >>> with seeded(0):
        ...     a = torch.nn.Linear(2, 2).weight.detach().clone()
        >>> with seeded(0):
        ...     b = torch.nn.Linear(2, 2).weight.detach().clone()
        >>> torch.equal(a, b), torch.equal(before, torch.random.get_rng_state())
        (True, True)
    """
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
