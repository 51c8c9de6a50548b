"""The training loops of :class:`~nce.density.NCEDensity`: :func:`adam_epochs` (minibatches) and
:func:`lbfgs_epochs` (full batch), each a generator of the training objective after every epoch,
over a :class:`FitPlan` that holds what ``fit`` prepared."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from nce.density._batch import _Batch, _nce_loss
from nce.models import EnergyModel
from nce.noise import Noise

__all__ = ["FitPlan", "adam_epochs", "draw_noise", "lbfgs_epochs", "new_adamw", "new_lbfgs"]


@dataclass
class FitPlan:
    """What a fit works on: the model, the frozen noise, the training (and held-out) data with
    their noise log densities, a fixed noise sample (None: fresh noise every epoch), the run's
    generator, the optimizer's settings, and the change of coordinates the fit works in (see
    :mod:`~nce.density._standardize`). ``steps`` counts the evaluations that succeeded (Adam
    steps, L-BFGS objective evaluations); ``gradient_max`` is the largest gradient entry of the
    objective after the last L-BFGS epoch."""

    model: EnergyModel
    noise: Noise
    data: _Batch
    validation: _Batch | None
    validation_noise: _Batch | None
    fixed_noise: _Batch | None
    generator: torch.Generator
    noise_ratio: float
    lr: float
    batch_size: int
    lbfgs_steps: int
    weight_decay: float = 0.0
    standardization: tuple[torch.Tensor, torch.Tensor] | None = None
    steps: int = 0
    gradient_max: float = math.inf


def draw_noise(noise: Noise, noise_ratio: float, data: _Batch, generator) -> _Batch:
    r""":math:`\lceil \nu N \rceil` noise draws for the N points of ``data``, with their log
    densities (and the points' contexts, cycled: draw :math:`j` takes context :math:`j \bmod N`).
    """
    count = math.ceil(noise_ratio * data.x.shape[0])
    with torch.no_grad():
        y = noise.sample((count,), generator=generator).to(data.x.device, data.x.dtype)
        log_q = noise.log_prob(y).to(data.x.dtype)
    context = None
    if data.context is not None:
        context = data.context[torch.arange(count, device=y.device) % data.x.shape[0]]
    return _Batch(y, log_q, context)


def adam_epochs(plan: FitPlan) -> Iterator[float]:
    """Adam over minibatches of ``batch_size`` data points and their share of the noise (the
    fixed sample, shuffled, or fresh draws); yields the mean training objective of each epoch.
    The parameters of the model's submodules (a network) take ``weight_decay``, decoupled as in
    AdamW; its own parameters (a Gaussian base, ``log_z``) take none."""
    model, data = plan.model, plan.data
    optimizer = new_adamw(plan)
    n = data.x.shape[0]
    batches = max(1, math.ceil(n / plan.batch_size))
    while True:
        model.train()
        data_order = torch.randperm(n, generator=plan.generator).to(data.x.device)
        noise_parts: list = [None] * batches
        if plan.fixed_noise is not None:
            noise_order = torch.randperm(plan.fixed_noise.x.shape[0], generator=plan.generator)
            noise_parts = list(noise_order.to(data.x.device).tensor_split(batches))
        total, weight = 0.0, 0
        for rows, noise_rows in zip(data_order.tensor_split(batches), noise_parts, strict=True):
            batch = data.take(rows)
            if noise_rows is None:
                batch_noise = draw_noise(plan.noise, plan.noise_ratio, batch, plan.generator)
            else:
                batch_noise = plan.fixed_noise.take(noise_rows)
                if batch.context is not None:
                    index = torch.arange(noise_rows.shape[0], device=rows.device)
                    batch_noise = _Batch(
                        batch_noise.x, batch_noise.log_q, batch.context[index % rows.shape[0]]
                    )
            optimizer.zero_grad(set_to_none=True)
            loss = _nce_loss(model, plan.noise_ratio, batch, batch_noise)
            loss.backward()
            optimizer.step()
            plan.steps += 1
            total += float(loss.detach()) * rows.shape[0]
            weight += rows.shape[0]
        yield total / weight


def lbfgs_epochs(plan: FitPlan) -> Iterator[float]:
    """Full-batch L-BFGS with a strong-Wolfe line search, ``lbfgs_steps`` iterations per epoch
    (a fresh optimizer whenever the noise is redrawn); yields the objective after each epoch and
    records its largest gradient entry in ``plan.gradient_max``."""
    model, data = plan.model, plan.data
    optimizer = new_lbfgs(plan)
    while True:
        model.train()
        epoch_noise = plan.fixed_noise
        if epoch_noise is None:
            epoch_noise = draw_noise(plan.noise, plan.noise_ratio, data, plan.generator)
            optimizer = new_lbfgs(plan)

        def closure(epoch_noise=epoch_noise, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = _nce_loss(model, plan.noise_ratio, data, epoch_noise)
            loss.backward()
            plan.steps += 1
            return loss

        optimizer.step(closure)
        model.zero_grad(set_to_none=True)
        loss = _nce_loss(model, plan.noise_ratio, data, epoch_noise)
        loss.backward()
        gradients = [p.grad.abs().max() for p in model.parameters() if p.grad is not None]
        plan.gradient_max = float(torch.stack(gradients).max()) if gradients else 0.0
        model.zero_grad(set_to_none=True)
        yield float(loss.detach())


def new_adamw(plan: FitPlan) -> torch.optim.AdamW:
    """AdamW over the plan's model at ``plan.lr``: ``plan.weight_decay`` on the parameters of its
    submodules (a network), none on its own (a Gaussian base, ``log_z``)."""
    model = plan.model
    own = [p for name, p in model.named_parameters() if "." not in name]
    nested = [p for name, p in model.named_parameters() if "." in name]
    groups = [{"params": own, "weight_decay": 0.0}]
    if nested:
        groups.append({"params": nested, "weight_decay": plan.weight_decay})
    return torch.optim.AdamW(groups, lr=plan.lr)


def new_lbfgs(plan: FitPlan, parameters=None) -> torch.optim.LBFGS:
    """L-BFGS over ``parameters`` (the plan's model's by default), ``plan.lbfgs_steps``
    iterations per step, strong Wolfe."""
    return torch.optim.LBFGS(
        plan.model.parameters() if parameters is None else parameters,
        max_iter=plan.lbfgs_steps,
        history_size=20,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )
