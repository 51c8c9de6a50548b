"""Argument checks of :class:`~nce.density.NCEDensity`: random states (and the generator one
seeds), and the check that a noise stays fixed while the model learns."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nce.models import EnergyModel
from nce.noise import DistributionNoise, Noise


def _check_random_state(random_state) -> None:
    if random_state is None or isinstance(random_state, torch.Generator):
        return
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(
            f"random_state must be None, an int or a torch.Generator, got "
            f"{type(random_state).__name__}"
        )
    if random_state < 0:
        raise ValueError(f"random_state must be >= 0, got {random_state}")


def _generator(random_state) -> torch.Generator:
    if isinstance(random_state, torch.Generator):
        return random_state
    seed = (
        int(random_state)
        if random_state is not None
        else int(torch.randint(2**62, (), dtype=torch.int64))
    )
    return torch.Generator().manual_seed(seed)


def _noise_tensors(noise: Noise):
    """(name, tensor) for every tensor held by the noise, a wrapped distribution's included."""
    for name, tensor in noise.named_parameters():
        yield name, tensor
    for name, tensor in noise.named_buffers():
        yield name, tensor
    if isinstance(noise, DistributionNoise):
        seen: set[int] = set()

        def walk(obj, name, depth):
            if id(obj) in seen or depth > 6:
                return
            seen.add(id(obj))
            if isinstance(obj, Tensor):
                yield name, obj
            elif isinstance(obj, (list, tuple)):
                for i, item in enumerate(obj):
                    yield from walk(item, f"{name}[{i}]", depth + 1)
            elif hasattr(obj, "__dict__") and not isinstance(obj, type):
                for key, value in vars(obj).items():
                    yield from walk(value, f"{name}.{key}", depth + 1)

        yield from walk(noise.distribution, "distribution", 0)


def _check_frozen(noise: Noise, model: EnergyModel) -> None:
    """Refuses noise that shares memory with the model's parameters (a ``detach()`` of one would
    move as the model learns), or has trainable tensors of its own."""
    owners = {}
    for name, p in model.named_parameters():
        owners[p.untyped_storage().data_ptr()] = name
    for name, tensor in _noise_tensors(noise):
        ptr = tensor.untyped_storage().data_ptr() if tensor.grad_fn is None else None
        if ptr in owners:
            raise ValueError(
                f"noise shares the memory of parameter {owners[ptr]!r} of the model (noise "
                f"tensor {name!r}): NCE needs a noise that stays fixed while the model learns; "
                "pass a copy (tensor.detach().clone())"
            )
        if not tensor.requires_grad:
            continue
        raise ValueError(
            f"noise holds a trainable tensor {name!r} (requires_grad=True"
            + (", computed from other parameters" if tensor.grad_fn is not None else "")
            + "): NCE needs a noise that stays fixed while the model learns; detach it"
        )
