"""Cross-checking a learned log-partition: :class:`PartitionEstimate` and
:func:`estimate_log_partition`, the closed-form or importance-sampling estimate behind
:meth:`NCEDensity.partition_function <nce.density.NCEDensity.partition_function>`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nce._random import as_generator
from nce.density._batch import _CHUNK
from nce.density._memory import check_fits, out_of_memory_as
from nce.models import EnergyModel
from nce.noise import Noise

__all__ = ["PartitionEstimate", "estimate_log_partition"]


@dataclass(frozen=True)
class PartitionEstimate:
    r"""An estimate of :math:`\log Z` with its standard error, next to the learned value.

    Attributes:
        log_z: The estimate :math:`\log\hat Z`, shape () (or (N,), one per context).
        stderr: Its standard error (delta method), same shape; 0 for ``method="exact"``.
        learned: The model's learned :math:`\log Z`, same shape.
        n_samples: The number of importance samples :math:`S` (0 for ``method="exact"``).
        ess: The effective sample size :math:`(\sum_s w_s)^2 / \sum_s w_s^2`, same shape.
        method: "importance" or "exact".
    """

    log_z: Tensor
    stderr: Tensor
    learned: Tensor
    n_samples: int
    ess: Tensor
    method: str

    @property
    def difference(self) -> Tensor:
        r"""learned :math:`-` estimate."""
        return self.learned - self.log_z

    def __str__(self) -> str:
        if self.log_z.dim() == 0:
            return (
                f"log Z = {float(self.log_z):.4f} ± {float(self.stderr):.4f} ({self.method}, "
                f"S = {self.n_samples}, ESS = {float(self.ess):.0f}); learned "
                f"{float(self.learned):.4f}"
            )
        return (
            f"log Z for {self.log_z.shape[0]} contexts ({self.method}, S = {self.n_samples}); "
            f"max |learned - estimate| = {float(self.difference.abs().max()):.4f}"
        )


def estimate_log_partition(
    model: EnergyModel,
    noise: Noise,
    method: str,
    n_samples: int,
    random_state: int | torch.Generator | None,
    context: Tensor | None,
) -> PartitionEstimate:
    """The estimate of :meth:`NCEDensity.partition_function
    <nce.density.NCEDensity.partition_function>`, for arguments it has checked: ``context`` is
    None, or (N, C) on the model's device and dtype for a conditional model."""
    param = next(model.parameters())
    with torch.no_grad():
        learned = model.log_partition(context).detach()
        if method == "exact":
            if not hasattr(model, "true_log_partition"):
                raise ValueError(
                    f"{type(model).__name__} has no closed-form log-partition; "
                    "use method='importance'"
                )
            exact = model.true_log_partition().detach()
            zero = torch.zeros_like(exact)
            return PartitionEstimate(exact, zero, learned, 0, zero, "exact")
        generator = as_generator(random_state)
        rows = n_samples * (1 if context is None else context.shape[0])
        row_bytes = (model.dim + 3) * param.element_size()
        check_fits("the importance sample", rows, row_bytes, param.device, "n_samples", n_samples)
        with out_of_memory_as("the importance sample", rows, row_bytes, "n_samples", n_samples):
            y = noise.sample((n_samples,), generator=generator).to(param.device, param.dtype)
        log_q = noise.log_prob(y).to(param.dtype)
        if context is None:
            log_w = torch.cat([model(chunk) for chunk in y.split(_CHUNK)]) - log_q
        else:
            rows = []
            for c in context:
                c_rep = c.expand(_CHUNK, -1)
                rows.append(
                    torch.cat([model(chunk, c_rep[: chunk.shape[0]]) for chunk in y.split(_CHUNK)])
                    - log_q
                )
            log_w = torch.stack(rows)
        log_z = torch.logsumexp(log_w, -1) - math.log(n_samples)
        w = torch.exp(log_w - log_w.max(-1, keepdim=True).values)
        stderr = w.std(-1) / (math.sqrt(n_samples) * w.mean(-1))
        ess = w.sum(-1).square() / w.square().sum(-1)
    return PartitionEstimate(log_z, stderr, learned, n_samples, ess, "importance")
