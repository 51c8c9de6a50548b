"""Cross-checking a learned log-partition: :class:`PartitionEstimate` and
:func:`estimate_log_partition`, the closed-form or importance-sampling estimate behind
:meth:`NCEDensity.partition_function <nce.density.NCEDensity.partition_function>`."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from nce._random import as_generator
from nce.density._batch import _CHUNK
from nce.density._memory import check_fits, out_of_memory_as
from nce.density.errors import NormalizationWarning
from nce.models import EnergyModel
from nce.noise import Noise

__all__ = ["PartitionEstimate", "estimate_log_partition", "warn_if_unnormalized"]

LOG_Z_TOLERANCE = 0.1  # nats: a learned log Z this close to the sampled one passes the check
MIN_ESS = 100  # fewer effective importance samples (or under a quarter of S) cannot check log Z


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


def warn_if_unnormalized(estimate: PartitionEstimate) -> None:
    r"""Warn (:class:`~nce.density.NormalizationWarning`) when an importance-sampled estimate
    contradicts the learned :math:`\log Z`, or cannot check it.

    The learned value fails when :math:`|\log Z_{\text{learned}} - \log\hat Z| >
    \max(0.1, 3\,\operatorname{se})` for some context: every normalized log density the model
    returns is then off by about that difference. An effective sample size below 100 (and
    below a quarter of the draws) makes
    :math:`\log\hat Z` itself unreliable (the noise rarely reaches the model's mass), which is
    said instead.
    """
    if estimate.method != "importance":
        return
    ess = float(estimate.ess.min())
    if ess < min(MIN_ESS, estimate.n_samples / 4):
        warnings.warn(
            f"the importance sample that checks log Z has an effective size of {ess:.0f} of "
            f"S = {estimate.n_samples} draws: the noise rarely reaches where the model puts its "
            "mass, so the check is unreliable; raise n_samples or fit with a noise closer to "
            "the data",
            NormalizationWarning,
            stacklevel=3,
        )
        return
    gap = estimate.difference.abs()
    limit = torch.clamp(3.0 * estimate.stderr, min=LOG_Z_TOLERANCE)
    if bool((gap > limit).any()):
        worst = int(gap.argmax()) if gap.dim() else None
        at = "" if worst is None else f" (context {worst}, the largest of {gap.numel()})"
        d = float(gap.max())
        se = float(estimate.stderr if worst is None else estimate.stderr[worst])
        warnings.warn(
            f"the learned log Z differs from the importance-sampled one by {d:.3f} nats{at}, "
            f"more than {LOG_Z_TOLERANCE} and 3 standard errors ({se:.3f}): the model's "
            "normalized log densities are off by about that much; fit longer or with more "
            "noise samples (noise_ratio), a noise closer to the data, or waymarks",
            NormalizationWarning,
            stacklevel=3,
        )
