"""Argument checks of :class:`~nce.density.NCEDensity`: data that vary in every column, and a
noise that stays fixed while the model learns."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from nce.models import EnergyModel
from nce.noise import DistributionNoise, Noise


def check_varying_columns(X: Tensor, names: Sequence[str] | None = None, source: str = "X") -> None:
    """Refuses data constant in a column: its density is concentrated on a hyperplane, which no
    density on :math:`R^D` (nor its log-partition) can fit. ``names`` label the columns (their
    indices by default); ``source`` names the data."""
    if X.shape[0] == 0:
        return
    constant = (X.amax(0) == X.amin(0)).nonzero().flatten().tolist()
    if constant:
        labels = [str(names[j]) if names is not None else str(j) for j in constant]
        raise ValueError(
            f"{source} is constant in column(s) {', '.join(labels)}: a density cannot be fitted "
            "to a constant column (its log-likelihood is unbounded); drop it"
        )


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
