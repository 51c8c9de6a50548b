r"""Training a critic: maximize an estimator's objective on minibatches, with early stopping on a
held-out bound.

Each step draws B training pairs without replacement (a fresh permutation per pass), scores all
B² combinations and takes one AdamW step up the objective; a minibatch whose scores or objective
overflow is skipped. Every ``eval_every`` steps the held-out bound of the current critic is
measured on a fixed monitor set (and once before the first step); the critic with the best
measurement is kept, and training stops after ``patience`` measurements without improvement, or
when ``max_steps`` run out.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nce.mi._scores import logmeanexp_off_diagonal
from nce.mi.estimators import Estimator


@dataclass(frozen=True)
class TrainingCurve:
    """What :func:`train_critic` measured.

    Attributes:
        steps: steps at which the held-out bound was measured, shape (T,).
        train_curve: running mean of the minibatch objective at those steps, shape (T,).
        valid_curve: the held-out bound at those steps, shape (T,).
        best_step: the step of the critic that was kept.
        converged: True when ``patience`` measurements passed without improvement, False when
            ``max_steps`` ran out first.
    """

    steps: np.ndarray
    train_curve: np.ndarray
    valid_curve: np.ndarray
    best_step: int
    converged: bool


def mine_average(scores: torch.Tensor, average: float | None, momentum: float = 0.99) -> float:
    """MINE's moving average of the batch mean of e^s over negatives, in float64, kept in
    [1e-6, 1e30]; a batch whose mean overflows leaves it unchanged."""
    with torch.no_grad():
        batch = math.exp(min(float(logmeanexp_off_diagonal(scores.detach().double())), 700.0))
    if math.isfinite(batch):
        average = batch if average is None else momentum * average + (1 - momentum) * batch
    return min(max(1.0 if average is None else average, 1e-6), 1e30)


def train_critic(
    model: nn.Module,
    estimator: Estimator,
    x: torch.Tensor,
    y: torch.Tensor,
    x_monitor: torch.Tensor,
    y_monitor: torch.Tensor,
    *,
    batch_size: int,
    max_steps: int,
    lr: float,
    weight_decay: float,
    eval_every: int,
    patience: int,
    clip: float,
    generator: torch.Generator,
    progress: bool,
) -> TrainingCurve:
    """Train ``model`` in place and load the weights of its best held-out measurement.

    Args:
        model: the critic, ``forward(x, y) -> (N, M)`` scores.
        estimator: the record of the estimator (its objective and held-out bound).
        x, y: paired training rows.
        x_monitor, y_monitor: paired held-out rows measured for early stopping.
        batch_size: pairs per step, B.
        max_steps: steps at most.
        lr: AdamW step size.
        weight_decay: AdamW's decoupled weight decay.
        eval_every: steps between held-out measurements.
        patience: measurements without improvement before stopping.
        clip: SMILE's clipping threshold.
        generator: draws the minibatches.
        progress: show a tqdm progress bar.

    Shape:
        - x: (N, Dx), y: (N, Dy)
        - x_monitor: (M, Dx), y_monitor: (M, Dy)
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    perm, cursor = torch.randperm(n, generator=generator), 0
    average = None
    running = None
    best, best_state, best_step, waited = -math.inf, None, 0, 0
    steps, train_curve, valid_curve = [], [], []
    bar = tqdm(
        range(1, max_steps + 1), desc=f"MI ({estimator.name})", disable=not progress, leave=False
    )

    def measure(step):
        nonlocal best, best_state, best_step, waited
        held_out = held_out_bound(model, estimator, x_monitor, y_monitor, clip)
        steps.append(step)
        train_curve.append(math.nan if running is None else running)
        valid_curve.append(held_out)
        if math.isfinite(held_out) and held_out > best:
            best, best_step, waited = held_out, step, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
        bar.set_postfix(held_out=f"{held_out:.3f}", best=f"{best:.3f}", refresh=False)

    measure(0)  # a critic that starts at a fitted log-ratio may already be the best
    waited = 0
    model.train()
    for step in bar:
        if cursor + batch_size > n:
            perm, cursor = torch.randperm(n, generator=generator), 0
        idx = perm[cursor : cursor + batch_size]
        cursor += batch_size
        scores = model(x[idx], y[idx])
        if bool(torch.isfinite(scores).all()):
            if estimator.moving_average:
                average = mine_average(scores, average)
            objective = estimator.training_objective(scores, clip, average)
            value = float(objective.detach())
            if math.isfinite(value):
                optimizer.zero_grad(set_to_none=True)
                (-objective).backward()
                optimizer.step()
                running = value if running is None else 0.95 * running + 0.05 * value
        if step % eval_every and step != max_steps:
            continue
        measure(step)
        if waited >= patience:
            break
    bar.close()
    if best_state is None:
        raise ValueError(
            "the held-out bound was never finite during training: the critic's scores overflow; "
            "use standardize='rank' or a critic with bounded scores"
        )
    model.load_state_dict(best_state)
    model.eval()
    return TrainingCurve(
        steps=np.asarray(steps),
        train_curve=np.asarray(train_curve),
        valid_curve=np.asarray(valid_curve),
        best_step=best_step,
        converged=waited >= patience,
    )


def held_out_bound(model, estimator: Estimator, x, y, clip: float) -> float:
    """The held-out bound of the current critic on (x, y), NaN when its scores overflow; leaves
    the critic in training mode."""
    model.eval()
    with torch.no_grad():
        scores = model(x, y)
        finite = bool(torch.isfinite(scores).all())
        value = float(estimator.held_out_bound(scores, clip)) if finite else math.nan
    model.train()
    return value
