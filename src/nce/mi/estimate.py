r"""One call from data to an estimate of :math:`I(X; Y)` with its error bar and its ceiling.

``estimate_mi(x, y)`` standardizes each column, splits the rows into a training part and a
held-out part, trains a critic on the training part by maximizing the chosen bound on minibatches,
stops early when the bound on held-out rows stops improving, and reports the bound of the best
critic evaluated on the held-out rows only. A bound evaluated on the rows the critic was fit to is
optimistic (the critic memorizes pairs); on held-out rows it is a lower bound of the information
for that fixed critic, up to sampling error.

**Standardization** (:mod:`nce.mi.standardize`). I(X; Y) is unchanged by any invertible map of
each column. The default ``standardize="rank"`` replaces every column by its normal scores
:math:`\Phi^{-1}((\mathrm{rank} - 1/2)/N)` (ties keep equal values equal): heavy tails and
monotone distortions disappear before training, at no cost in information. ``"zscore"`` only
centers and scales. A standardization that would merge distinct values or overflow float32 is
refused.

**Evaluation and the cap.** The held-out rows are cut into near-equal blocks of M rows; the bound
is computed on each block's full M × M score matrix and averaged. ``log_n_cap = log M``: the
InfoNCE estimate never exceeds it, and no distribution-free lower bound from M samples can be
trusted much above it (McAllester & Stratos, 2020, arXiv:1811.04251). An InfoNCE critic meets a
second ceiling while it trains: each minibatch of B pairs scores at most log B, so the objective
stops rewarding a sharper critic near ``log_batch_cap = log B``, however large M is. ``capped`` is
True when the estimate lies within ``cap_margin`` nats of log M, or, for InfoNCE, of log B: the
truth may then be anywhere above.

**Standard error** (:mod:`nce.mi.influence`). Each block estimate is a smooth function of means
over rows and over pairs of rows; its delta-method influence :math:`\psi_k` for row k (its
positive term, plus its share of every negative term as an x and as a y) gives
:math:`\mathrm{se} = \mathrm{sd}(\psi)/\sqrt{M}`.
It measures the sampling error of the held-out evaluation for the trained critic, not the spread
over retrained critics.

**Telescoping ratio estimation** (``estimator="tre"``, :mod:`nce.mi.tre`). Instead of one
bound, K binary classifiers learn the log-ratios between consecutive waymarks from the joint to
the product of marginals (:mod:`nce.mi.waymarks`), trained jointly by full-batch L-BFGS; the
estimate is the held-out mean of their sum over joint rows, with the standard error of that mean.
It is not a bound and has no log M ceiling: ``capped`` is always False.

**Sanity.** Mutual information is never negative: an estimate more than three standard errors
(plus 0.1 nats) below 0 means the critic did not learn, and comes with a warning naming the
options to change.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nce._deprecation import renamed_keywords
from nce._random import as_seed, seeded
from nce._validation import check_int
from nce.mi._validate import (
    as_columns,
    check_options,
    check_varying,
    check_waymark_options,
    split_sizes,
)
from nce.mi.critics import CRITICS, SeparableCritic, build_critic
from nce.mi.estimators import ESTIMATORS, get_estimator
from nce.mi.evaluate import evaluate_critic
from nce.mi.gaussian_critic import GaussianSeparableCritic, choose_pairs
from nce.mi.standardize import STANDARDIZE, standardize_columns
from nce.mi.train import held_out_bound, train_critic
from nce.mi.tre import TRE_CRITICS, estimate_tre

__all__ = ["ESTIMATORS", "STANDARDIZE", "MIEstimate", "estimate_mi"]


@dataclass(frozen=True)
class MIEstimate:
    """An estimate of :math:`I(X; Y)` in nats, from :func:`estimate_mi`.

    Attributes:
        value: the held-out bound of the best critic, in nats (for "tre", the held-out mean of
            the telescoped log-ratio: an estimate, not a bound).
        stderr: its standard error (sampling error of the held-out evaluation).
        log_n_cap: log M, M the evaluation block size: the InfoNCE ceiling (the size-weighted
            mean of log M over the blocks when their sizes differ by one). For "tre", log of the
            number of held-out rows, for comparison only: TRE is not an InfoNCE bound and is not
            limited by it.
        capped: True when ``value`` is within ``cap_margin`` of ``log_n_cap`` or, for InfoNCE,
            of ``log_batch_cap``; the true information may then be anywhere above the estimate.
            Always False for "tre", which no log N ceiling limits.
        estimator: "infonce" | "nwj" | "mine" | "smile" | "js" | "tre" (an alias such as
            "info_nce" is reported by its name here, "infonce").
        steps: training steps at which the held-out bound was measured, shape (T,) (for "tre",
            L-BFGS iterations).
        train_curve: running mean of the training minibatch bound at those steps, shape (T,)
            (for "tre", the mean telescoped log-ratio on the training joint rows).
        valid_curve: held-out bound at those steps (the early-stopping monitor), shape (T,) (for
            "tre", the held-out estimate; early stopping watches the held-out bridge loss).
        best_step: the step of the critic that was kept.
        n_train: rows used to train the critic.
        n_valid: held-out rows used to evaluate it.
        critic: the trained critic (in evaluation mode), scoring standardized inputs.
        log_batch_cap: log B, B the training minibatch size: the InfoNCE training objective's
            ceiling, past which it gives the critic no reason to sharpen (for "tre", trained on
            the full batch, log of the training rows).
        converged: True when training ended because the held-out bound had not improved for
            ``patience`` measurements; False when ``max_steps`` ran out first, so that a larger
            ``max_steps`` may raise the estimate.
        waymarks: K, the number of bridges of "tre" (0 for the other estimators).
        alphas: the linear-mixing weights :math:`\\alpha_0 = 0, \\dots, \\alpha_K = 1` of "tre",
            shape (K + 1,) (``None`` for the other estimators and for dimension-wise mixing).
    """

    value: float
    stderr: float
    log_n_cap: float
    capped: bool
    estimator: str
    steps: np.ndarray = field(repr=False)
    train_curve: np.ndarray = field(repr=False)
    valid_curve: np.ndarray = field(repr=False)
    best_step: int = 0
    n_train: int = 0
    n_valid: int = 0
    critic: nn.Module | None = field(default=None, repr=False, compare=False)
    log_batch_cap: float = math.inf
    converged: bool = True
    waymarks: int = 0
    alphas: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        flag = " (capped: the true MI may be higher)" if self.capped else ""
        if not self.converged:
            flag += " (max_steps ran out before early stopping; more steps may raise it)"
        if get_estimator(self.estimator).telescoping:
            return (
                f"I(X; Y) = {self.value:.4f} ± {self.stderr:.4f} nats [tre, K = {self.waymarks} "
                f"waymarks], a telescoped log-ratio, not a bound: no log N ceiling{flag}"
            )
        caps = f"cap log M = {self.log_n_cap:.4f}"
        if get_estimator(self.estimator).capped_by_batch and math.isfinite(self.log_batch_cap):
            caps += f", log B = {self.log_batch_cap:.4f}"
        return (
            f"I(X; Y) = {self.value:.4f} ± {self.stderr:.4f} nats [{self.estimator}], {caps}{flag}"
        )


@renamed_keywords(learning_rate="lr", valid_fraction="validation_fraction")
def estimate_mi(
    x,
    y,
    *,
    estimator: str = "infonce",
    critic: str | nn.Module | None = None,
    batch_size: int | None = None,
    max_steps: int = 4000,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    embed_dim: int | None = None,
    validation_fraction: float = 0.3,
    eval_batch_size: int | None = None,
    eval_every: int | None = None,
    patience: int | None = None,
    standardize: str = "rank",
    hidden: int = 256,
    layers: int = 2,
    clip: float = 5.0,
    cap_margin: float = 1.5,
    random_state: int | torch.Generator | None = None,
    progress: bool = True,
    waymarks: int | None = None,
    waymark_mixing: str = "linear",
) -> MIEstimate:
    r"""Estimate the mutual information :math:`I(X; Y)` in nats with a trained critic.

    The critic f is trained on a ``1 - validation_fraction`` share of the rows to maximize the
    bound of ``estimator``, then evaluated on the held-out rows:

    * "infonce": :math:`\frac{1}{M}\sum_i [s_{ii} - \log\sum_j e^{s_{ij}}] + \log M \le \log M`
      (:func:`nce.mi.info_nce_bound`); low variance, capped.
    * "nwj": :math:`\bar s_{\mathrm{diag}} - e^{-1}\,\overline{e^{s}}_{\mathrm{off}}`
      (:func:`nce.mi.nwj_bound`); unbiased, variance grows like :math:`e^{I}`.
    * "mine": :math:`\bar s_{\mathrm{diag}} - \log \overline{e^{s}}_{\mathrm{off}}`, trained with
      the moving-average gradient (:func:`nce.mi.mine_bound`, momentum 0.99).
    * "smile": DV with :math:`e^{s}` clipped to :math:`[e^{-\tau}, e^{\tau}]`, critic trained by
      Jensen–Shannon (:func:`nce.mi.smile_bound`, :math:`\tau` = ``clip``).
    * "js": critic trained by Jensen–Shannon, evaluated with NWJ at f + 1 (:func:`nce.mi.js_bound`).
    * "tre": telescoping ratio estimation (:mod:`nce.mi.tre`): K bridge classifiers between
      waymarks of :math:`p(x, y)` and :math:`p(x)p(y)`, their log-ratios summed at held-out joint
      rows, :math:`\frac1M\sum_i \sum_k h_k(x_i, y_i)`. Not a bound, no log N ceiling: it
      reaches tens of nats where the others cannot.

    Defaults need no tuning from 1-D to 50-D, Gaussian or heavy-tailed, 500 to 100 000 rows: rank
    standardization; a critic that starts at the Gaussian log-ratio of the data's canonical pairs
    (fitted by CCA on the training rows, the leading pairs kept whose held-out bound is highest,
    :mod:`nce.mi.gaussian_critic`) plus a separable MLP that starts at zero (2 × 256 ReLU,
    embeddings of max(32, 2 max(Dx, Dy)) dimensions); Adam at 3e-4, minibatches of 256 pairs (128
    for the concatenated critic), the held-out bound measured before the first step and every 50
    steps on up to 1024 rows, and training stopped after 10 measurements without improvement.
    The Gaussian start is exact after rank standardization for any monotone map of each column of
    a multivariate normal, and removes most of the shortfall of a critic learned from scratch in
    many dimensions (benchmark-mi suite, BENCHMARKS.md); many weak dependent directions still
    cost: 50 pairs of correlation 0.28 (I = 2) on 4000 rows give 1.59 nats.

    Args:
        x: samples of X, one row per draw (a numpy array, tensor, DataFrame or nested list of
            numbers); 1-D means one column.
        y: samples of Y, paired row by row with ``x``.
        estimator: "infonce" | "nwj" | "mine" | "smile" | "js" | "tre"
            (:mod:`nce.mi.estimators`); "info_nce" is accepted for "infonce".
        critic: "gaussian-separable" (the default, :class:`~nce.mi.GaussianSeparableCritic`) |
            "separable" (the MLP alone) | "concat", or a module with
            ``forward(x, y) -> (N, M)`` scores taking standardized float32 inputs. For "tre":
            "quadratic" (the default, :class:`~nce.mi.tre.QuadraticHeads`, exact for Gaussian
            waymarks) | "concat" (:class:`~nce.mi.tre.MLPHeads`, one MLP on the pair with K
            outputs), or a module with ``forward(u) -> (K, N)`` for u of shape (K, N, Dx + Dy).
        batch_size: pairs per training step (the training batch's InfoNCE cap is its log).
        max_steps: training steps at most (a budget in optimizer steps).
        lr: Adam step size (formerly ``learning_rate``, still accepted with a
            DeprecationWarning).
        weight_decay: AdamW's decoupled weight decay (default none).
        embed_dim: embedding dimension K of the separable critic (default
            ``max(32, 2 * max(Dx, Dy))``). The critic's bilinear part :math:`x^\top W y` has
            rank at most K, so K must reach the number of dependent directions: at K = 32, 50
            independent coordinate pairs lose 18 of them.
        validation_fraction: share of rows held out for early stopping and the reported estimate
            (formerly ``valid_fraction``, still accepted with a DeprecationWarning).
        eval_batch_size: rows per evaluation block, M (default: all held-out rows up to 4096 for
            the separable critics, 512 for the others); the held-out rows are cut into
            near-equal blocks of at most M rows and at least 2. ``log_n_cap = log M``.
        eval_every: steps between held-out measurements (default 50; for "tre", 10 L-BFGS
            iterations).
        patience: measurements without improvement before stopping (default 10; for "tre", 5).
        standardize: "rank" (normal scores, MI-preserving) | "zscore" | "none". A column that
            the chosen standardization would merge (half its distinct values lost in float32) or
            overflow is refused; with "none" and a built-in critic, a column far from unit scale
            gives a warning.
        hidden: width of the built-in critics' hidden layers.
        layers: number of hidden layers of the built-in critics.
        clip: SMILE's :math:`\tau`.
        cap_margin: ``capped`` when ``value >= log_n_cap - cap_margin`` (for InfoNCE, also when
            ``value >= log_batch_cap - cap_margin``). The default 1.5 nats: with the exact critic
            of a Gaussian pair whose MI equals log M, InfoNCE already sits 0.6–1.2 nats under
            log M (1-D to 20-D).
        random_state: None, an int or a :class:`torch.Generator`: the seed of the split, the
            critic's initialization and the minibatches. Torch's global generator is left as it
            was.
        progress: show a tqdm progress bar.
        waymarks: "tre" only: K, the number of bridges (an int >= 1; default: one bridge per 2
            nats of the data's Gaussian information, between 2 and 32). For "tre", ``max_steps``
            counts L-BFGS iterations and ``lr``, ``weight_decay``, ``batch_size``,
            ``eval_batch_size``, ``clip``, ``embed_dim`` and ``cap_margin`` play no part.
        waymark_mixing: "tre" only: "linear" (the default, weights spaced for equal Gaussian
            information per bridge) | "dimensionwise" (:mod:`nce.mi.waymarks`).

    Returns:
        :class:`MIEstimate` with ``value``, ``stderr``, ``log_n_cap``, ``capped``, ``estimator``
        and the training curve.

    Shape:
        - x: (N, Dx) or (N,)
        - y: (N, Dy) or (N,)

    References:
        Poole et al. (2019), arXiv:1905.06922. van den Oord et al. (2018), arXiv:1807.03748.
        Belghazi et al. (2018), arXiv:1801.04062. Song & Ermon (2020), arXiv:1910.06222.

    Example:
        >>> import numpy as np
        >>> from nce.mi import estimate_mi
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal(2000)
        >>> y = 0.8 * x + 0.6 * rng.standard_normal(2000)   # I = -log(0.6) = 0.51 nats
        >>> est = estimate_mi(x, y, random_state=0, progress=False)
        >>> abs(est.value - 0.51) < 0.1
        True
    """
    record = get_estimator(estimator)
    if critic is None:
        critic = "quadratic" if record.telescoping else "gaussian-separable"
    if eval_every is None:
        eval_every = 10 if record.telescoping else 50
    if patience is None:
        patience = 5 if record.telescoping else 10
    check_waymark_options(record, waymarks, waymark_mixing)
    check_options(
        critic=critic,
        critics=TRE_CRITICS if record.telescoping else CRITICS,
        max_steps=max_steps,
        lr=lr,
        weight_decay=weight_decay,
        embed_dim=embed_dim,
        validation_fraction=validation_fraction,
        eval_every=eval_every,
        patience=patience,
        standardize=standardize,
        clip=clip,
        cap_margin=cap_margin,
        random_state=random_state,
    )
    xs, ys = as_columns("x", x), as_columns("y", y)
    n_train, n_valid = split_sizes(xs.shape[0], ys.shape[0], validation_fraction)
    check_varying("x", xs)
    check_varying("y", ys)
    built_in = not isinstance(critic, nn.Module)
    xt = standardize_columns("x", xs, standardize, built_in_critic=built_in)
    yt = standardize_columns("y", ys, standardize, built_in_critic=built_in)
    if record.telescoping:
        return _estimate_tre(
            xt, yt, n_train, critic=critic, waymarks=waymarks, mixing=waymark_mixing,
            hidden=hidden, layers=layers, max_steps=max_steps, eval_every=eval_every,
            patience=patience, random_state=random_state, progress=progress,
            standardize=standardize, lr=lr,
        )  # fmt: skip
    if embed_dim is None:
        embed_dim = max(32, 2 * max(xs.shape[1], ys.shape[1]))

    is_separable = isinstance(critic, (SeparableCritic, GaussianSeparableCritic)) or critic in (
        "separable",
        "gaussian-separable",
    )
    if batch_size is None:
        batch_size = 256 if is_separable else 128
    check_int("batch_size", batch_size, minimum=2)
    batch_size = min(batch_size, n_train)
    if eval_batch_size is None:
        eval_batch_size = 4096 if is_separable else 512
    check_int("eval_batch_size", eval_batch_size, minimum=2)

    seed = as_seed(random_state)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(xs.shape[0], generator=generator)
    train_idx, valid_idx = order[:n_train], order[n_train:]
    monitor_idx = valid_idx[: min(n_valid, 1024 if is_separable else 256)]
    with seeded(seed):
        model = build_critic(
            critic, xs.shape[1], ys.shape[1], hidden=hidden, layers=layers, embed_dim=embed_dim
        )
        if critic == "gaussian-separable":
            model.initialize(xt[train_idx], yt[train_idx])
            choose_pairs(
                model.gaussian,
                lambda: held_out_bound(model, record, xt[monitor_idx], yt[monitor_idx], clip),
                n_train,
            )
        curve = train_critic(
            model,
            record,
            xt[train_idx],
            yt[train_idx],
            xt[monitor_idx],
            yt[monitor_idx],
            batch_size=batch_size,
            max_steps=max_steps,
            lr=lr,
            weight_decay=weight_decay,
            eval_every=eval_every,
            patience=patience,
            clip=clip,
            generator=generator,
            progress=progress,
        )
        value, stderr, log_n_cap = evaluate_critic(
            model, record, xt[valid_idx], yt[valid_idx], eval_batch_size, clip
        )
    _check_estimate(value, stderr, standardize=standardize, lr=lr)
    log_batch_cap = math.log(batch_size)
    ceiling = min(log_n_cap, log_batch_cap) if record.capped_by_batch else log_n_cap
    return MIEstimate(
        value=value,
        stderr=stderr,
        log_n_cap=log_n_cap,
        capped=bool(value >= ceiling - cap_margin),
        estimator=record.name,
        steps=curve.steps,
        train_curve=curve.train_curve,
        valid_curve=curve.valid_curve,
        best_step=curve.best_step,
        n_train=n_train,
        n_valid=n_valid,
        critic=model,
        log_batch_cap=log_batch_cap,
        converged=curve.converged,
    )


def _estimate_tre(
    xt, yt, n_train, *, critic, waymarks, mixing, hidden, layers, max_steps, eval_every, patience,
    random_state, progress, standardize, lr,
) -> MIEstimate:  # fmt: skip
    """The "tre" branch of :func:`estimate_mi` on standardized columns."""
    seed = as_seed(random_state)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(xt.shape[0], generator=generator)
    train_idx, valid_idx = order[:n_train], order[n_train:]
    with seeded(seed):
        fit, model, alphas, waymarks = estimate_tre(
            xt[train_idx], yt[train_idx], xt[valid_idx], yt[valid_idx],
            critic=critic, waymarks=waymarks, mixing=mixing, hidden=hidden, layers=layers,
            max_steps=max_steps, eval_every=eval_every, patience=patience, generator=generator,
            progress=progress,
        )  # fmt: skip
    _check_estimate(fit.value, fit.stderr, standardize=standardize, lr=lr)
    n_valid = xt.shape[0] - n_train
    return MIEstimate(
        value=fit.value,
        stderr=fit.stderr,
        log_n_cap=math.log(n_valid),
        capped=False,
        estimator="tre",
        steps=fit.curve.steps,
        train_curve=fit.curve.train_curve,
        valid_curve=fit.curve.valid_curve,
        best_step=fit.curve.best_step,
        n_train=n_train,
        n_valid=n_valid,
        critic=model,
        log_batch_cap=math.log(n_train),
        converged=fit.curve.converged,
        waymarks=waymarks,
        alphas=None if alphas is None else alphas.numpy(),
    )


def _check_estimate(value: float, stderr: float, *, standardize: str, lr: float) -> None:
    """Refuse a non-finite estimate; warn about one significantly below 0 (MI never is)."""
    if not (math.isfinite(value) and math.isfinite(stderr)):
        raise ValueError(
            f"the critic's scores overflow on the held-out rows (estimate {value}, standard "
            f"error {stderr}); use standardize='rank' or a critic with bounded scores"
        )
    if value < -(3 * stderr + 0.1):
        warnings.warn(
            f"the held-out estimate is {value:.4g} ± {stderr:.2g} nats, below 0 by more than 3 "
            "standard errors, but mutual information is never negative: the critic did not "
            f"learn (standardize={standardize!r}, lr={lr:g}); use standardize='rank', a smaller "
            "lr or more rows",
            UserWarning,
            stacklevel=4,  # the caller of estimate_mi, through renamed_keywords
        )
