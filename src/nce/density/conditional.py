r"""``NCEDensity(noise="conditional")``: conditional NCE (Ceylan & Gutmann 2018), noise drawn
around each data point, so that neither a noise density nor :math:`\log Z` enters the fit.

For each training row :math:`x_i` the fit draws :math:`\kappa` = ``noise_ratio`` points

.. math:: y_{ij} = x_i + \varepsilon_{ij}, \qquad
    \varepsilon_{ij} \sim \mathcal{N}\big(0, \operatorname{diag}(\epsilon\, s)^2\big),

with :math:`s` the columns' standard deviations (:math:`\epsilon` = ``noise_scale`` is in
standardized units), and minimizes :func:`nce.conditional_nce` of
:math:`G(x, y) = f_\theta(x) - f_\theta(y)`: the noise is symmetric, so its density cancels, and
:math:`\log Z` cancels in the difference. The loss fixes the *shape* of :math:`f_\theta` only; after
the fit, :math:`\log Z` is estimated by importance sampling with the Gaussian fitted to the data
(the noise of ``noise="gaussian"``) as proposal,

.. math:: \log\hat Z = \log\frac1S \sum_{s=1}^S e^{f_\theta(u_s)} / q(u_s), \qquad
    u_s \sim q, \quad S = 10^5,

so that ``score_samples`` is a normalized log density. That Gaussian stays the estimator's
``noise_``: ``log_ratio`` and ``partition_function`` use it.

The scale :math:`\epsilon` trades two failures. As :math:`\epsilon \to 0` the pairs become
indistinguishable, the loss tends to :math:`\log 2` and its gradient vanishes like
:math:`\epsilon^2` (the estimator tends to score matching); as :math:`\epsilon \to \infty` the noise
leaves the data and the classifier separates the pairs without learning the density's shape.
``noise_scale=None`` ("auto") follows the rule of Ceylan & Gutmann's code: the classification
should start neither too hard nor too easy. It sets :math:`\epsilon` so that the loss of the
model at its starting point, on (up to 1000 of) the training rows with common random numbers, is
``AUTO_LOSS_FRACTION`` = 0.7 of its :math:`\epsilon \to 0` value :math:`\log 2` (their code keeps it
between 0.5 and 0.9 of it), solved by bisection in :math:`\log \epsilon`.

References:
    | Conditional noise-contrastive estimation of unnormalised models (Ceylan & Gutmann, ICML
    | 2018), https://arxiv.org/abs/1806.03664
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from nce._validation import check_positive
from nce.density._batch import NonFiniteLogDensity, check_finite_log_densities
from nce.density._training import FitPlan, new_adamw, new_lbfgs
from nce.density.partition import PartitionEstimate, estimate_log_partition
from nce.functional.conditional_nce import conditional_nce
from nce.models import EnergyModel

__all__ = [
    "AUTO_LOSS_FRACTION",
    "IMPORTANCE_SAMPLES",
    "ConditionalFitPlan",
    "auto_noise_scale",
    "check_conditional_options",
    "conditional_epochs",
    "conditional_held_out_loss",
    "conditional_plan",
    "normalize_by_sampling",
]

#: "auto" sets the starting loss to this fraction of its small-noise limit log 2.
AUTO_LOSS_FRACTION = 0.7
#: Draws of the importance-sampling estimate of log Z after a conditional fit.
IMPORTANCE_SAMPLES = 100_000
#: A log Z whose importance-sampling standard error exceeds this (nats) is reported by a warning.
STDERR_WARNING = 0.1
_AUTO_ROWS = 1000
_AUTO_RANGE = (1e-4, 1e2)


def check_conditional_options(noise, noise_scale, noise_ratio) -> None:
    """The constructor's checks of ``noise_scale`` (and of ``noise_ratio`` for conditional noise):
    ``noise_scale`` is for ``noise="conditional"`` only, where it is None, "auto" or a number
    > 0, and ``noise_ratio`` is then a whole number of noise points per datum."""
    conditional = isinstance(noise, str) and noise == "conditional"
    if not conditional:
        if noise_scale is not None:
            name = noise if isinstance(noise, str) else type(noise).__name__
            raise ValueError(
                f"noise_scale is only used with noise='conditional', got noise_scale = "
                f"{noise_scale!r} with noise = {name!r}; leave noise_scale at None"
            )
        return
    if not (isinstance(noise_scale, str) and noise_scale == "auto") and noise_scale is not None:
        check_positive("noise_scale", noise_scale)
    if noise_ratio == "auto":  # resolved by the data's size; the fit rounds it down
        return
    if float(noise_ratio) != int(noise_ratio) or noise_ratio < 1:
        raise ValueError(
            f"noise_ratio must be a whole number >= 1 with noise='conditional' (the noise points "
            f"drawn around each datum), got {noise_ratio}"
        )


@dataclass
class ConditionalFitPlan(FitPlan):
    """A :class:`~nce.density._training.FitPlan` for conditional NCE: ``noise`` is the proposal
    of the importance sampling that normalizes the fit, ``scale`` (D,) the standard deviation of
    :math:`\\varepsilon` per column in the fit's coordinates, ``kappa`` the noise points per
    datum, ``around`` (N, K, D) the fixed noise points of the training rows (None: fresh every
    epoch) and ``validation_around`` those of the held-out rows."""

    scale: Tensor | None = None
    noise_scale: float = math.nan
    kappa: int = 1
    around: Tensor | None = None
    validation_around: Tensor | None = None


def conditional_plan(
    plan: FitPlan, noise_scale: float | str | None, resample_noise: bool
) -> ConditionalFitPlan:
    """The plan of a conditional fit: ``plan`` (prepared as for ``noise="gaussian"``, without its
    noise samples) with the scale of :math:`\\varepsilon` chosen and the noise drawn around the
    training and held-out rows."""
    model = plan.model
    if model.conditional:
        raise ValueError(
            f"noise='conditional' fits models of x alone; the model ({type(model).__name__}) "
            "takes a context, whose log-partition log Z(c) conditional NCE cannot identify"
        )
    values = {f.name: getattr(plan, f.name) for f in fields(FitPlan)}
    kappa = int(plan.noise_ratio)
    column_std = plan.data.x.std(0) if plan.data.x.shape[0] > 1 else torch.ones_like(plan.data.x[0])
    column_std = torch.where(column_std > 0, column_std, torch.ones_like(column_std))
    if noise_scale is None or noise_scale == "auto":
        noise_scale = auto_noise_scale(model, plan.data.x, column_std, kappa, plan.generator)
    scale = float(noise_scale) * column_std
    out = ConditionalFitPlan(**values, scale=scale, noise_scale=float(noise_scale), kappa=kappa)
    if plan.validation is not None:
        out.validation_around = _draw_around(plan.validation.x, scale, kappa, plan.generator)
    if not resample_noise:
        out.around = _draw_around(plan.data.x, scale, kappa, plan.generator)
    return out


def _draw_around(x: Tensor, scale: Tensor, kappa: int, generator: torch.Generator) -> Tensor:
    """:math:`y_{ij} = x_i + \\operatorname{scale} \\odot e_{ij}`, :math:`e_{ij} \\sim
    \\mathcal{N}(0, I)`: shape (N, K, D)."""
    e = torch.randn(x.shape[0], kappa, x.shape[1], generator=generator, dtype=x.dtype)
    return x[:, None, :] + scale * e.to(x.device)


def _loss(model: EnergyModel, x: Tensor, y: Tensor) -> Tensor:
    """:func:`~nce.conditional_nce` of rows ``x`` (N, D) against their noise ``y`` (N, K, D);
    raises :class:`~nce.density._batch.NonFiniteLogDensity` when the model's log densities are
    not all finite."""
    log_data = model(x)
    log_noise = model(y.reshape(-1, y.shape[-1])).reshape(y.shape[:2])
    check_finite_log_densities(log_data, log_noise)
    return conditional_nce(log_data, log_noise)


def auto_noise_scale(
    model: EnergyModel, x: Tensor, column_std: Tensor, kappa: int, generator: torch.Generator
) -> float:
    r"""The ``noise_scale`` :math:`\epsilon` (standardized units) at which the loss of ``model``
    as it stands, on up to 1000 rows of ``x`` (N, D) with one fixed draw of standard normal
    :math:`e`, is ``AUTO_LOSS_FRACTION`` :math:`\cdot \log 2`: bisection in :math:`\log\epsilon`
    over :math:`[10^{-4}, 10^2]` (an end of the range when the loss stays on one side)."""
    rows = torch.randperm(x.shape[0], generator=generator)[:_AUTO_ROWS].to(x.device)
    x = x[rows]
    e = torch.randn(x.shape[0], kappa, x.shape[1], generator=generator, dtype=x.dtype)
    e = e.to(x.device) * column_std
    target = AUTO_LOSS_FRACTION * math.log(2)

    def loss(log_eps: float) -> float:
        with torch.no_grad():
            try:
                return float(_loss(model, x, x[:, None, :] + math.exp(log_eps) * e))
            except NonFiniteLogDensity as error:
                raise ValueError(
                    f"{error} at the model's starting point, while choosing noise_scale: check "
                    "the model and X, or give noise_scale"
                ) from error

    low, high = math.log(_AUTO_RANGE[0]), math.log(_AUTO_RANGE[1])
    if loss(low) <= target:
        return _AUTO_RANGE[0]
    if loss(high) >= target:
        return _AUTO_RANGE[1]
    for _ in range(40):
        middle = 0.5 * (low + high)
        if loss(middle) > target:
            low = middle
        else:
            high = middle
    return math.exp(0.5 * (low + high))


def conditional_held_out_loss(plan: ConditionalFitPlan) -> float:
    """The conditional NCE loss on the held-out rows and their fixed noise."""
    with torch.no_grad():
        return float(_loss(plan.model, plan.validation.x, plan.validation_around))


def conditional_epochs(plan: ConditionalFitPlan, lbfgs: bool) -> Iterator[float]:
    """The training loop of a conditional fit, Adam over minibatches of rows with their own noise
    or full-batch L-BFGS (as :func:`~nce.density._training.adam_epochs` and
    :func:`~nce.density._training.lbfgs_epochs`); yields the training loss after each epoch."""
    return _lbfgs_epochs(plan) if lbfgs else _adam_epochs(plan)


def _noise_for(plan: ConditionalFitPlan, rows: Tensor | None) -> Tensor:
    x = plan.data.x if rows is None else plan.data.x[rows]
    if plan.around is None:
        return _draw_around(x, plan.scale, plan.kappa, plan.generator)
    return plan.around if rows is None else plan.around[rows]


def _adam_epochs(plan: ConditionalFitPlan) -> Iterator[float]:
    model, x = plan.model, plan.data.x
    optimizer = new_adamw(plan)
    n = x.shape[0]
    batches = max(1, math.ceil(n / plan.batch_size))
    while True:
        model.train()
        total = 0.0
        order = torch.randperm(n, generator=plan.generator).to(x.device)
        for rows in order.tensor_split(batches):
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(model, x[rows], _noise_for(plan, rows))
            loss.backward()
            optimizer.step()
            plan.steps += 1
            total += float(loss.detach()) * rows.shape[0]
        yield total / n


def _lbfgs_epochs(plan: ConditionalFitPlan) -> Iterator[float]:
    model, x = plan.model, plan.data.x
    optimizer = None
    while True:
        model.train()
        if optimizer is None or plan.around is None:
            y = _noise_for(plan, None)
            optimizer = new_lbfgs(plan)

        def closure(y=y, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(model, x, y)
            loss.backward()
            plan.steps += 1
            return loss

        optimizer.step(closure)
        model.zero_grad(set_to_none=True)
        loss = _loss(model, x, y)
        loss.backward()
        gradients = [p.grad.abs().max() for p in model.parameters() if p.grad is not None]
        plan.gradient_max = float(torch.stack(gradients).max()) if gradients else 0.0
        model.zero_grad(set_to_none=True)
        yield float(loss.detach())


def normalize_by_sampling(plan: ConditionalFitPlan) -> PartitionEstimate:
    r"""Sets the model's ``log_z`` (which the fit left untouched) to the importance-sampling
    estimate of :math:`\log Z` with the plan's proposal (``IMPORTANCE_SAMPLES`` draws from the
    run's generator), and returns the estimate; warns when its standard error exceeds
    ``STDERR_WARNING`` nats."""
    estimate = estimate_log_partition(
        plan.model, plan.noise, "importance", IMPORTANCE_SAMPLES, plan.generator, None
    )
    with torch.no_grad():
        plan.model.log_z.copy_(estimate.log_z)
    stderr = float(estimate.stderr)
    if not stderr <= STDERR_WARNING:
        warnings.warn(
            f"NCEDensity: the importance-sampled log Z of the conditional fit has standard error "
            f"{stderr:.3g} nats (effective sample size {float(estimate.ess):.0f} of "
            f"{IMPORTANCE_SAMPLES} draws from the Gaussian fitted to the data): score_samples is "
            "uncertain by about as much; partition_function(n_samples=...) measures it again",
            UserWarning,
            stacklevel=4,
        )
    return estimate
