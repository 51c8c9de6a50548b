r"""The change of coordinates behind ``NCEDensity(standardize=True)``: the fit sees
:math:`u = (x - a) / s` (column means :math:`a` and standard deviations :math:`s` of the training
rows), and :class:`StandardizedNoise` shows it the noise in the same coordinates,

.. math:: \log q_u(u) = \log q(a + s \odot u) + \textstyle\sum_i \log s_i,

a density in :math:`u`. The fitted model is mapped back to :math:`x` afterwards
(:meth:`~nce.models.EnergyModel.change_coordinates_`), so every log density the estimator returns
is in the user's units."""

from __future__ import annotations

import torch
from torch import Tensor

from nce.noise import Noise

__all__ = ["StandardizedNoise", "column_scaling"]


def column_scaling(X: Tensor, centre: bool) -> tuple[Tensor, Tensor]:
    """``(a, s)``: the column means (zeros unless ``centre``) and standard deviations of ``X``
    (N, D), each (D,) in ``X``'s dtype; a column without spread keeps the scale 1."""
    X64 = X.detach().to(torch.float64)
    shift = X64.mean(0) if centre else torch.zeros_like(X64[0])
    scale = X64.std(0) if X64.shape[0] > 1 else torch.ones_like(X64[0])
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return shift.to(X.dtype), scale.to(X.dtype)


class StandardizedNoise(Noise):
    """The noise ``noise`` of :math:`x`, seen in the coordinates :math:`u = (x - a) / s`.

    Shape:
        - shift, scale: (D,)
        - ``sample(shape)``: (*shape, D); ``log_prob(u)``: u (*, D), the result (*)
    """

    def __init__(self, noise: Noise, shift: Tensor, scale: Tensor):
        super().__init__()
        self.noise = noise
        self.register_buffer("shift", shift.detach().clone())
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("log_det", scale.detach().log().sum())

    @property
    def event_shape(self) -> torch.Size:
        return self.noise.event_shape

    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        y = self.noise.sample(shape, generator=generator).to(self.shift.dtype)
        return (y - self.shift) / self.scale

    def log_prob(self, u: Tensor) -> Tensor:
        return self.noise.log_prob(self.shift + self.scale * u).to(u.dtype) + self.log_det
