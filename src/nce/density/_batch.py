"""Tensors in batches and chunks: :class:`_Batch` (points with their noise log densities and
contexts), the NCE loss of a data batch against a noise batch (refusing non-finite model log
densities), and the chunks that bound the memory of scoring."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nce.functional.binary_nce import binary_nce
from nce.models import EnergyModel

_CHUNK = 65536


@dataclass
class _Batch:
    """Points with their noise log densities (and contexts)."""

    x: Tensor
    log_q: Tensor
    context: Tensor | None

    def take(self, rows: Tensor) -> _Batch:
        return _Batch(self.x[rows], self.log_q[rows], _rows(self.context, rows))


def _rows(context: Tensor | None, rows: Tensor) -> Tensor | None:
    return None if context is None else context[rows]


class NonFiniteLogDensity(FloatingPointError):
    """The model's log density became NaN or infinite at points where it must be finite."""


def check_finite_log_densities(log_data: Tensor, log_noise: Tensor) -> None:
    """Raises :class:`NonFiniteLogDensity`, counting the points, when the model's log densities
    at the data or at the noise are not all finite."""
    for what, values in (("data", log_data), ("noise", log_noise)):
        bad = int((~torch.isfinite(values.detach())).sum())
        if bad:
            raise NonFiniteLogDensity(
                f"the model's log density is NaN or infinite at {bad} of {values.numel()} "
                f"{what} points"
            )


def _nce_loss(model: EnergyModel, noise_ratio: float, data: _Batch, noise: _Batch) -> Tensor:
    """:func:`~nce.binary_nce` of a data batch against a noise batch; raises
    :class:`NonFiniteLogDensity` when the model's log densities are not all finite."""
    log_model_data = model.log_prob(data.x, data.context)
    log_model_noise = model.log_prob(noise.x, noise.context)
    check_finite_log_densities(log_model_data, log_model_noise)
    return binary_nce(
        log_model_data, data.log_q, log_model_noise, noise.log_q, noise_ratio=noise_ratio
    )


def _chunks(X: Tensor, context: Tensor | None):
    for start in range(0, X.shape[0], _CHUNK):
        stop = start + _CHUNK
        yield X[start:stop], None if context is None else context[start:stop]
    if X.shape[0] == 0:
        yield X, context
