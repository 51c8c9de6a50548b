r"""Telescoping ratio estimation (TRE) of mutual information (Rhodes, Xu & Gutmann, 2020,
arXiv:2006.12204).

A single classifier of joint pairs against shuffled pairs learns
:math:`\log p(x, y)/(p(x)p(y))` badly once the two are far apart (tens of nats): it separates them
perfectly long before its log-ratio is right. TRE crosses the gap in K steps. With waymarks
:math:`p_0 = p(x, y), p_1, \dots, p_K = p(x)p(y)` (:mod:`nce.mi.waymarks`),

.. math:: \log \frac{p_0(u)}{p_K(u)} = \sum_{k=0}^{K-1} \log \frac{p_k(u)}{p_{k+1}(u)},

and each bridge :math:`h_k \approx \log p_k/p_{k+1}` is the logit of a binary logistic (NCE)
classifier of :math:`u_k \sim p_k` against :math:`u_{k+1} \sim p_{k+1}`, trained on the K tasks
jointly by minimizing

.. math:: L = \sum_k \mathbb{E}_{p_k}[\mathrm{softplus}(-h_k(u))]
          + \mathbb{E}_{p_{k+1}}[\mathrm{softplus}(h_k(u))],

whose minimizer is the true bridge log-ratios. The estimate is the held-out mean, over joint rows
:math:`u_i = (x_i, y_i)`, of the telescoped log-ratio, every bridge evaluated at the data point:

.. math:: \hat I = \frac1M \sum_i \psi_i, \qquad \psi_i = \sum_k h_k(u_i),
          \qquad \mathrm{se} = \mathrm{sd}(\psi)/\sqrt{M}.

It is not a variational lower bound: no :math:`\log N` ceiling applies, and its error is the
error of the learned log-ratios (over-fit bridges push it up, under-fit ones down).

Critics score a stack of K inputs, head k scoring the k-th: ``forward(u) -> (K, N)`` for u of
shape (K, N, D). :class:`QuadraticHeads` (exact for Gaussian waymarks, where every bridge ratio
is a quadratic) and :class:`MLPHeads` are built in. Training is full-batch L-BFGS with early
stopping on the held-out classification loss. Quadratic heads start at the log-ratio of Gaussians
fitted to each bridge's two waymarks (:meth:`QuadraticHeads.initialize_gaussian`); their loss is
convex, so the start decides how long training takes, not its optimum, and early stopping keeps
the start when no step improves the held-out loss (as on Gaussian data, where the start is the
more efficient estimate: logistic regression loses efficiency to the Gaussian fit when the two
classes are well separated, Efron 1975).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nce._validation import check_int
from nce.mi.critics import MLP
from nce.mi.train import TrainingCurve
from nce.mi.waymarks import (
    canonical_correlations,
    dimensionwise_waymarks,
    equal_information_alphas,
    gaussian_information,
    linear_waymarks,
    product_samples,
)

__all__ = [
    "TRE_CRITICS",
    "MLPHeads",
    "QuadraticHeads",
    "TREFit",
    "bridge_loss",
    "estimate_tre",
    "fit_tre",
]

TRE_CRITICS = ("quadratic", "concat")


class QuadraticHeads(nn.Module):
    r"""K quadratic bridge log-ratios :math:`h_k(u) = u^\top W_k u + b_k^\top u + c_k`, started at
    0.

    Args:
        features: D, the columns of the concatenated pair u = (x, y).
        heads: K.

    Shape:
        - u: (K, N, D), head k scoring u[k]
        - output: (K, N)

    References:
        Rhodes, Xu & Gutmann (2020), Telescoping density-ratio estimation, arXiv:2006.12204.

    Example:
        >>> import torch
        >>> QuadraticHeads(3, 2)(torch.randn(2, 5, 3)).shape
        torch.Size([2, 5])
    """

    def __init__(self, features: int, heads: int):
        super().__init__()
        check_int("features", features, minimum=1)
        check_int("heads", heads, minimum=1)
        self.weight = nn.Parameter(torch.zeros(heads, features, features))
        self.linear = nn.Parameter(torch.zeros(heads, features))
        self.bias = nn.Parameter(torch.zeros(heads))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """The K log-ratios :math:`h_k(u_k)`, (K, N), of the stacked pairs u, (K, N, D)."""
        return (torch.baddbmm(self.linear[:, None, :], u, self.weight) * u).sum(-1) + self.bias[
            :, None
        ]

    @torch.no_grad()
    def initialize_gaussian(self, waymarks: torch.Tensor) -> QuadraticHeads:
        r"""Start each head at the log-ratio of Gaussians fitted to its two waymarks' samples:
        with means :math:`m_k` and precisions :math:`P_k = S_k^{-1}`,

        .. math:: h_k(u) = -\tfrac12 u^\top (P_k - P_{k+1}) u + u^\top (P_k m_k - P_{k+1} m_{k+1})
                  + c_k,

        :math:`c_k` the difference of the two log-normalizers. The logistic loss of quadratic
        heads is convex in their parameters, so this changes where training starts, not where it
        ends; for Gaussian waymarks it starts near the optimum.

        Shape:
            - waymarks: (K + 1, N, D)
        """
        u = waymarks.double()
        means = u.mean(1)
        centered = u - means[:, None, :]
        covariances = centered.transpose(1, 2) @ centered / u.shape[1]
        eye = torch.eye(u.shape[2], dtype=torch.float64)
        scale = covariances.diagonal(dim1=1, dim2=2).mean(1)
        covariances = covariances + 1e-6 * scale[:, None, None] * eye
        precisions = torch.linalg.inv(covariances)
        log_dets = torch.linalg.slogdet(covariances).logabsdet
        shifted = (precisions @ means[:, :, None]).squeeze(-1)  # P m
        constants = -0.5 * (means * shifted).sum(1) - 0.5 * log_dets
        self.weight.copy_(-0.5 * (precisions[:-1] - precisions[1:]))
        self.linear.copy_(shifted[:-1] - shifted[1:])
        self.bias.copy_(constants[:-1] - constants[1:])
        return self


class MLPHeads(nn.Module):
    r"""One ReLU network (with a linear skip path, :class:`~nce.mi.critics.MLP`) on the concatenated
    pair with K outputs, output k the log-ratio of bridge k.

    Args:
        features: D, the columns of the concatenated pair u = (x, y).
        heads: K.
        hidden: width of the hidden layers.
        layers: number of hidden layers.

    Shape:
        - u: (K, N, D), head k scoring u[k]
        - output: (K, N)

    References:
        Rhodes, Xu & Gutmann (2020), arXiv:2006.12204.
    """

    def __init__(self, features: int, heads: int, *, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = MLP(features, heads, hidden=hidden, layers=layers)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """The K log-ratios :math:`h_k(u_k)`, (K, N), of the stacked pairs u, (K, N, D)."""
        out = self.net(u)  # (K, N, K): every head on every stack entry
        return out.diagonal(dim1=0, dim2=2).T


def build_tre_critic(critic, features: int, heads: int, *, hidden: int, layers: int) -> nn.Module:
    """The TRE critic named by ``critic`` ("quadratic" | "concat"), or ``critic`` itself."""
    if isinstance(critic, nn.Module):
        return critic
    if critic == "quadratic":
        return QuadraticHeads(features, heads)
    return MLPHeads(features, heads, hidden=hidden, layers=layers)


def bridge_loss(model: nn.Module, waymarks: torch.Tensor) -> torch.Tensor:
    r"""The summed logistic losses of the K bridges, each a mean over its N pairs of samples.

    Shape:
        - waymarks: (K + 1, N, D), waymark samples :math:`u_0, \dots, u_K`
        - output: ()
    """
    positive = model(waymarks[:-1])  # h_k(u_k), u_k ~ p_k
    negative = model(waymarks[1:])  # h_k(u_{k+1}), u_{k+1} ~ p_{k+1}
    return (F.softplus(-positive).mean(1) + F.softplus(negative).mean(1)).sum()


def telescoped_log_ratio(model: nn.Module, u: torch.Tensor, heads: int) -> torch.Tensor:
    r""":math:`\sum_k h_k(u_i)`, every head at the same points.

    Shape:
        - u: (N, D)
        - output: (N,)
    """
    return model(u.unsqueeze(0).expand(heads, *u.shape)).sum(0)


@dataclass(frozen=True)
class TREFit:
    """What :func:`fit_tre` returns: the held-out estimate, its standard error, the per-row values
    :math:`\\psi` (shape (M,)) and the training curve."""

    value: float
    stderr: float
    per_row: torch.Tensor
    curve: TrainingCurve


def fit_tre(
    model: nn.Module,
    train_waymarks: torch.Tensor,
    monitor_waymarks: torch.Tensor,
    valid_joint: torch.Tensor,
    *,
    max_steps: int,
    eval_every: int,
    patience: int,
    progress: bool,
) -> TREFit:
    r"""Train the bridges by full-batch L-BFGS on the waymarks, keep the weights of the lowest
    held-out classification loss, and evaluate the telescoped log-ratio on held-out joint rows.

    Every ``eval_every`` L-BFGS iterations the held-out loss is measured; training stops after
    ``patience`` measurements without improvement, when L-BFGS stops moving (converged), or after
    ``max_steps`` iterations. ``train_curve`` and ``valid_curve`` hold the mean telescoped
    log-ratio on the training and held-out joint rows at each measurement.

    Args:
        model: the critic, ``forward((K, N, D)) -> (K, N)``.
        train_waymarks: waymark samples of the training rows.
        monitor_waymarks: waymark samples of held-out rows (the early-stopping monitor).
        valid_joint: held-out joint rows, where the estimate is evaluated.
        max_steps: L-BFGS iterations at most.
        eval_every: iterations between held-out measurements.
        patience: measurements without improvement before stopping.
        progress: show a tqdm progress bar.

    Shape:
        - train_waymarks: (K + 1, N, D), monitor_waymarks: (K + 1, M', D)
        - valid_joint: (M, D)
    """
    heads = train_waymarks.shape[0] - 1
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=eval_every,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
    )

    def iterations() -> int:
        """L-BFGS iterations so far (its state lives under its first parameter)."""
        return optimizer.state[optimizer.param_groups[0]["params"][0]].get("n_iter", 0)

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = bridge_loss(model, train_waymarks)
        loss.backward()
        return loss

    best, best_state, best_step, waited, done = math.inf, None, 0, 0, 0
    steps, train_curve, valid_curve = [], [], []
    converged = False
    bar = tqdm(total=max_steps, desc="MI (tre)", disable=not progress, leave=False)
    train_joint = train_waymarks[0]

    def measure(step):
        nonlocal best, best_state, best_step, waited
        with torch.no_grad():
            held_out = float(bridge_loss(model, monitor_waymarks))
            steps.append(step)
            train_curve.append(float(telescoped_log_ratio(model, train_joint, heads).mean()))
            valid_curve.append(float(telescoped_log_ratio(model, valid_joint, heads).mean()))
        if math.isfinite(held_out) and held_out < best:
            best, best_step, waited = held_out, step, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
        bar.set_postfix(held_out_loss=f"{held_out:.4f}", estimate=f"{valid_curve[-1]:.3f}")

    measure(0)  # the starting point (a Gaussian fit for quadratic heads) may already be best
    while done < max_steps:
        chunk = min(eval_every, max_steps - done)
        # iterations, not function evaluations (a line search may take several), set the budget,
        # so that fewer iterations than asked mean L-BFGS met its tolerance
        optimizer.param_groups[0].update(max_iter=chunk, max_eval=25 * chunk)
        before = iterations()
        optimizer.step(closure)
        moved = iterations() - before
        done += max(moved, 1)
        bar.update(max(moved, 1))
        measure(done)
        if waited >= patience or moved < chunk:
            converged = True  # patience ran out, or L-BFGS met its tolerance
            break
    bar.close()
    if best_state is None:
        raise ValueError(
            "the held-out bridge loss was never finite during training: the critic's scores "
            "overflow; use standardize='rank' or fewer waymarks"
        )
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        per_row = telescoped_log_ratio(model, valid_joint, heads).double()
    value = float(per_row.mean())
    stderr = float(per_row.std() / math.sqrt(per_row.numel())) if per_row.numel() > 1 else 0.0
    return TREFit(
        value=value,
        stderr=stderr,
        per_row=per_row,
        curve=TrainingCurve(
            steps=np.asarray(steps),
            train_curve=np.asarray(train_curve),
            valid_curve=np.asarray(valid_curve),
            best_step=best_step,
            converged=converged,
        ),
    )


def default_waymarks(x: torch.Tensor, y: torch.Tensor) -> int:
    r"""One bridge per :data:`NATS_PER_BRIDGE` nats of the Gaussian information of the columns
    (:func:`~nce.mi.waymarks.gaussian_information` at :math:`\alpha = 0`), between 2 and 32.

    Shape:
        - x: (N, Dx), y: (N, Dy)
    """
    information = gaussian_information(canonical_correlations(x, y), 0.0)
    return int(min(32, max(2, math.ceil(information / NATS_PER_BRIDGE))))


NATS_PER_BRIDGE = 2.0
"""Gaussian information carried by one bridge when ``waymarks`` is not given."""


def make_waymarks(
    x: torch.Tensor,
    y: torch.Tensor,
    alphas: torch.Tensor | None,
    waymarks: int,
    generator: torch.Generator,
) -> torch.Tensor:
    r"""Waymark samples of paired rows: linear mixing with ``alphas``, or dimension-wise mixing
    when ``alphas`` is None, each joint row mixed with one row of a fresh product sample.

    Shape:
        - x: (N, Dx), y: (N, Dy)
        - output: (K + 1, N, Dx + Dy)
    """
    x_product, y_product = product_samples(x, y, generator)
    joint, product = torch.cat([x, y], 1), torch.cat([x_product, y_product], 1)
    if alphas is None:
        return dimensionwise_waymarks(joint, product, waymarks, x.shape[1])
    return linear_waymarks(joint, product, alphas)


def estimate_tre(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_valid: torch.Tensor,
    y_valid: torch.Tensor,
    *,
    critic,
    waymarks: int | None,
    mixing: str,
    hidden: int,
    layers: int,
    max_steps: int,
    eval_every: int,
    patience: int,
    generator: torch.Generator,
    progress: bool,
) -> tuple[TREFit, nn.Module, torch.Tensor | None, int]:
    r"""Build the waymarks of the training and held-out rows, train the K bridges and evaluate the
    telescoped log-ratio on the held-out joint rows.

    Returns:
        ``(fit, model, alphas, K)``: the :class:`TREFit`, the trained critic, the linear-mixing
        weights (shape (K + 1,), ``None`` for dimension-wise mixing) and K.

    Shape:
        - x_train: (N, Dx), y_train: (N, Dy), x_valid: (M, Dx), y_valid: (M, Dy)
    """
    if waymarks is None:
        waymarks = default_waymarks(x_train, y_train)
    alphas = equal_information_alphas(x_train, y_train, waymarks) if mixing == "linear" else None
    train_waymarks = make_waymarks(x_train, y_train, alphas, waymarks, generator)
    monitor_waymarks = make_waymarks(x_valid, y_valid, alphas, waymarks, generator)
    features = x_train.shape[1] + y_train.shape[1]
    model = build_tre_critic(critic, features, waymarks, hidden=hidden, layers=layers)
    if critic == "quadratic":
        model.initialize_gaussian(train_waymarks)
    fit = fit_tre(
        model,
        train_waymarks,
        monitor_waymarks,
        torch.cat([x_valid, y_valid], 1),
        max_steps=max_steps,
        eval_every=eval_every,
        patience=patience,
        progress=progress,
    )
    return fit, model, alphas, waymarks
