r"""One call from data to an estimate of :math:`I(X; Y)` with its error bar and its ceiling.

``estimate_mi(x, y)`` standardizes each column, splits the rows into a training part and a
held-out part, trains a critic on the training part by maximizing the chosen bound on minibatches,
stops early when the bound on held-out rows stops improving, and reports the bound of the best
critic evaluated on the held-out rows only. A bound evaluated on the rows the critic was fit to is
optimistic (the critic memorizes pairs); on held-out rows it is a lower bound of the information
for that fixed critic, up to sampling error.

**Standardization.** I(X; Y) is unchanged by any invertible map of each column. The default
``standardize="rank"`` replaces every column by its normal scores
:math:`\Phi^{-1}((\mathrm{rank} - 1/2)/N)` (ties keep equal values equal): heavy tails and
monotone distortions disappear before training, at no cost in information. ``"zscore"`` only
centers and scales.

**Evaluation and the cap.** The held-out rows are cut into near-equal blocks of M rows; the bound
is computed on each block's full M × M score matrix and averaged. ``log_n_cap = log M``: the
InfoNCE estimate never exceeds it, and no distribution-free lower bound from M samples can be
trusted much above it (McAllester & Stratos, 2020, arXiv:1811.04251). An InfoNCE critic meets a
second ceiling while it trains: each minibatch of B pairs scores at most log B, so the objective
stops rewarding a sharper critic near ``log_batch_cap = log B``, however large M is. ``capped`` is
True when the estimate lies within ``cap_margin`` nats of log M, or, for InfoNCE, of log B: the
truth may then be anywhere above.

**Standard error.** Each block estimate is a smooth function of means over rows and over pairs of
rows; its delta-method influence :math:`\psi_k` for row k (its positive term, plus its share of
every negative term as an x and as a y) gives :math:`\mathrm{se} = \mathrm{sd}(\psi)/\sqrt{M}`.
It measures the sampling error of the held-out evaluation for the trained critic, not the spread
over retrained critics.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nce._validation import check_int, check_positive
from nce.mi._scores import logmeanexp_off_diagonal
from nce.mi.critics import ConcatCritic, SeparableCritic
from nce.mi.dv import dv_bound, mine_bound
from nce.mi.infonce import infonce_bound
from nce.mi.js import js_bound
from nce.mi.nwj import nwj_bound
from nce.mi.smile import smile_bound

ESTIMATORS = ("infonce", "nwj", "mine", "smile", "js")
CRITICS = ("separable", "concat")
STANDARDIZE = ("rank", "zscore", "none")


@dataclass(frozen=True)
class MIEstimate:
    """An estimate of :math:`I(X; Y)` in nats, from :func:`estimate_mi`.

    Attributes:
        value: the held-out bound of the best critic, in nats.
        stderr: its standard error (sampling error of the held-out evaluation).
        log_n_cap: log M, M the evaluation block size: the InfoNCE ceiling (the size-weighted
            mean of log M over the blocks when their sizes differ by one).
        capped: True when ``value`` is within ``cap_margin`` of ``log_n_cap`` or, for InfoNCE,
            of ``log_batch_cap``; the true information may then be anywhere above the estimate.
        estimator: "infonce" | "nwj" | "mine" | "smile" | "js".
        steps: training steps at which the held-out bound was measured, shape (T,).
        train_curve: running mean of the training minibatch bound at those steps, shape (T,).
        valid_curve: held-out bound at those steps (the early-stopping monitor), shape (T,).
        best_step: the step of the critic that was kept.
        n_train: rows used to train the critic.
        n_valid: held-out rows used to evaluate it.
        critic: the trained critic (in evaluation mode), scoring standardized inputs.
        log_batch_cap: log B, B the training minibatch size: the InfoNCE training objective's
            ceiling, past which it gives the critic no reason to sharpen.
        converged: True when training ended because the held-out bound had not improved for
            ``patience`` measurements; False when ``max_steps`` ran out first, so that a larger
            ``max_steps`` may raise the estimate.
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

    def __str__(self) -> str:
        flag = " (capped: the true MI may be higher)" if self.capped else ""
        if not self.converged:
            flag += " (max_steps ran out before early stopping; more steps may raise it)"
        caps = f"cap log M = {self.log_n_cap:.4f}"
        if self.estimator == "infonce" and math.isfinite(self.log_batch_cap):
            caps += f", log B = {self.log_batch_cap:.4f}"
        return (
            f"I(X; Y) = {self.value:.4f} ± {self.stderr:.4f} nats [{self.estimator}], {caps}{flag}"
        )


def estimate_mi(
    x,
    y,
    *,
    estimator: str = "infonce",
    critic: str | nn.Module = "separable",
    batch_size: int | None = None,
    max_steps: int = 4000,
    learning_rate: float = 3e-4,
    weight_decay: float = 0.0,
    embed_dim: int | None = None,
    valid_fraction: float = 0.3,
    eval_batch_size: int | None = None,
    eval_every: int = 50,
    patience: int = 10,
    standardize: str = "rank",
    hidden: int = 256,
    layers: int = 2,
    clip: float = 5.0,
    cap_margin: float = 1.5,
    random_state: int | None = None,
    progress: bool = True,
) -> MIEstimate:
    r"""Estimate the mutual information :math:`I(X; Y)` in nats with a trained critic.

    The critic f is trained on a ``1 - valid_fraction`` share of the rows to maximize the bound of
    ``estimator``, then evaluated on the held-out rows:

    * "infonce": :math:`\frac{1}{M}\sum_i [s_{ii} - \log\sum_j e^{s_{ij}}] + \log M \le \log M`
      (:func:`nce.mi.infonce_bound`); low variance, capped.
    * "nwj": :math:`\bar s_{\mathrm{diag}} - e^{-1}\,\overline{e^{s}}_{\mathrm{off}}`
      (:func:`nce.mi.nwj_bound`); unbiased, variance grows like :math:`e^{I}`.
    * "mine": :math:`\bar s_{\mathrm{diag}} - \log \overline{e^{s}}_{\mathrm{off}}`, trained with
      the moving-average gradient (:func:`nce.mi.mine_bound`, momentum 0.99).
    * "smile": DV with :math:`e^{s}` clipped to :math:`[e^{-\tau}, e^{\tau}]`, critic trained by
      Jensen–Shannon (:func:`nce.mi.smile_bound`, :math:`\tau` = ``clip``).
    * "js": critic trained by Jensen–Shannon, evaluated with NWJ at f + 1 (:func:`nce.mi.js_bound`).

    Defaults need no tuning from 1-D to 50-D, Gaussian or heavy-tailed, 500 to 100 000 rows: rank
    standardization, a separable MLP critic (2 × 256 ReLU, embeddings of max(32, 2 max(Dx, Dy))
    dimensions), Adam at 3e-4, minibatches of 256 pairs (128 for the concatenated critic), the
    held-out bound measured every 50 steps on up to 1024 rows and training stopped after 10
    measurements without improvement.

    Args:
        x: samples of X, one row per draw; 1-D means one column.
        y: samples of Y, paired row by row with ``x``.
        estimator: "infonce" | "nwj" | "mine" | "smile" | "js".
        critic: "separable" | "concat", or a module with ``forward(x, y) -> (N, M)`` scores taking
            standardized float32 inputs.
        batch_size: pairs per training step (the training batch's InfoNCE cap is its log).
        max_steps: training steps at most.
        learning_rate: Adam step size.
        weight_decay: AdamW's decoupled weight decay (default none).
        embed_dim: embedding dimension K of the separable critic (default
            ``max(32, 2 * max(Dx, Dy))``). The critic's bilinear part :math:`x^\top W y` has
            rank at most K, so K must reach the number of dependent directions: at K = 32, 50
            independent coordinate pairs lose 18 of them.
        valid_fraction: share of rows held out for early stopping and the reported estimate.
        eval_batch_size: rows per evaluation block, M (default: all held-out rows up to 4096 for
            the separable critic, 512 for the others); the held-out rows are cut into
            near-equal blocks of at most M rows and at least 2. ``log_n_cap = log M``.
        eval_every: steps between held-out measurements.
        patience: measurements without improvement before stopping.
        standardize: "rank" (normal scores, MI-preserving) | "zscore" | "none".
        hidden: width of the built-in critics' hidden layers.
        layers: number of hidden layers of the built-in critics.
        clip: SMILE's :math:`\tau`.
        cap_margin: ``capped`` when ``value >= log_n_cap - cap_margin`` (for InfoNCE, also when
            ``value >= log_batch_cap - cap_margin``). The default 1.5 nats: with the exact critic
            of a Gaussian pair whose MI equals log M, InfoNCE already sits 0.6–1.2 nats under
            log M (1-D to 20-D).
        random_state: seed of the split, the critic's initialization and the minibatches.
        progress: show a tqdm progress bar.

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
    _check_options(
        estimator,
        critic,
        max_steps,
        learning_rate,
        valid_fraction,
        eval_every,
        patience,
        standardize,
        clip,
        cap_margin,
        random_state,
    )
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise TypeError(f"weight_decay must be a number, got {type(weight_decay).__name__}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if embed_dim is not None:
        check_int("embed_dim", embed_dim, minimum=1)
    xs = _as_matrix("x", x)
    ys = _as_matrix("y", y)
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(
            f"x and y must have the same number of rows (paired samples): x has {xs.shape[0]} "
            f"rows but y has {ys.shape[0]}"
        )
    n = xs.shape[0]
    if n < 2:
        raise ValueError(f"estimate_mi needs at least 2 rows (paired samples), got N = {n}")
    n_valid = int(round(n * valid_fraction))
    n_train = n - n_valid
    if n_valid < 2 or n_train < 2:
        raise ValueError(
            f"estimate_mi needs at least 2 training and 2 held-out rows, got N = {n} with "
            f"valid_fraction={valid_fraction} ({n_train} for training, {n_valid} held out)"
        )
    _check_constant("x", xs)
    _check_constant("y", ys)
    xs = _standardize(xs, standardize)
    ys = _standardize(ys, standardize)
    if embed_dim is None:
        embed_dim = max(32, 2 * max(xs.shape[1], ys.shape[1]))

    is_separable = isinstance(critic, SeparableCritic) or critic == "separable"
    if batch_size is None:
        batch_size = 256 if is_separable else 128
    check_int("batch_size", batch_size, minimum=2)
    batch_size = min(batch_size, n_train)
    if eval_batch_size is None:
        eval_batch_size = 4096 if is_separable else 512
    check_int("eval_batch_size", eval_batch_size, minimum=2)

    if random_state is None:
        random_state = int(np.random.SeedSequence().generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        g = torch.Generator().manual_seed(random_state)
        order = torch.randperm(n, generator=g)
        train_idx, valid_idx = order[:n_train], order[n_train:]
        xt = torch.from_numpy(xs).float()
        yt = torch.from_numpy(ys).float()
        for name, t in (("x", xt), ("y", yt)):
            if not torch.isfinite(t).all():
                raise ValueError(
                    f"{name} has values beyond float32's range after standardize="
                    f"{standardize!r}; rescale it or use standardize='rank'"
                )
        model = _build_critic(critic, xs.shape[1], ys.shape[1], hidden, layers, embed_dim)
        curve = _train(
            model,
            estimator,
            xt[train_idx],
            yt[train_idx],
            xt[valid_idx],
            yt[valid_idx],
            batch_size=batch_size,
            max_steps=max_steps,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            monitor_size=min(n_valid, 1024 if is_separable else 256),
            eval_every=eval_every,
            patience=patience,
            clip=clip,
            generator=g,
            progress=progress,
        )
        value, stderr, log_n_cap = _evaluate(
            model, estimator, xt[valid_idx], yt[valid_idx], eval_batch_size, clip
        )
    steps, train_curve, valid_curve, best_step, converged = curve
    log_batch_cap = math.log(batch_size)
    ceiling = min(log_n_cap, log_batch_cap) if estimator == "infonce" else log_n_cap
    return MIEstimate(
        value=value,
        stderr=stderr,
        log_n_cap=log_n_cap,
        capped=bool(value >= ceiling - cap_margin),
        estimator=estimator,
        steps=steps,
        train_curve=train_curve,
        valid_curve=valid_curve,
        best_step=best_step,
        n_train=n_train,
        n_valid=n_valid,
        critic=model,
        log_batch_cap=log_batch_cap,
        converged=converged,
    )


def _check_options(
    estimator,
    critic,
    max_steps,
    learning_rate,
    valid_fraction,
    eval_every,
    patience,
    standardize,
    clip,
    cap_margin,
    random_state,
) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not isinstance(critic, nn.Module) and critic not in CRITICS:
        raise ValueError(f"critic must be one of {CRITICS} or a torch.nn.Module, got {critic!r}")
    if standardize not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}, got {standardize!r}")
    check_int("max_steps", max_steps, minimum=1)
    check_int("eval_every", eval_every, minimum=1)
    check_int("patience", patience, minimum=1)
    check_positive("learning_rate", learning_rate)
    check_positive("clip", clip)
    check_positive("cap_margin", cap_margin)
    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)):
        raise TypeError(f"valid_fraction must be a number, got {type(valid_fraction).__name__}")
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must lie in (0, 1), got {valid_fraction}")
    if random_state is not None:
        check_int("random_state", random_state, minimum=0)
        if random_state >= 2**64:
            raise ValueError(f"random_state must be below 2**64, got {random_state}")


def _as_matrix(name: str, a) -> np.ndarray:
    """(N, D) float64 array from a numpy array or tensor of shape (N, D) or (N,)."""
    if isinstance(a, torch.Tensor):
        if a.is_complex():
            raise TypeError(f"{name} must be real, got {a.dtype}")
        a = a.detach().cpu().double().numpy()
    elif isinstance(a, np.ndarray):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
            raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
        a = a.astype(np.float64)
    else:
        raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {type(a).__name__}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D (N,) or 2-D (N, D), got shape {a.shape}")
    if a.shape[1] == 0:
        raise ValueError(f"{name} has no columns (shape {a.shape})")
    bad = ~np.isfinite(a)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or Inf value(s) (first at row {row}, "
            f"column {col})"
        )
    return a


def _check_constant(name: str, a: np.ndarray) -> None:
    constant = np.flatnonzero(np.ptp(a, axis=0) == 0)
    if len(constant):
        col = int(constant[0])
        raise ValueError(
            f"{name} column {col} is constant (every value is {a[0, col]:g}): it carries no "
            f"information; drop it"
        )


def _standardize(a: np.ndarray, method: str) -> np.ndarray:
    if method == "rank":
        from scipy.special import ndtri
        from scipy.stats import rankdata

        return ndtri((rankdata(a, axis=0) - 0.5) / a.shape[0])
    if method == "zscore":
        return (a - a.mean(0)) / a.std(0)
    return a


def _build_critic(critic, x_features, y_features, hidden, layers, embed_dim) -> nn.Module:
    if isinstance(critic, nn.Module):
        return critic
    if critic == "separable":
        return SeparableCritic(
            x_features, y_features, hidden=hidden, layers=layers, embed_dim=embed_dim
        )
    return ConcatCritic(x_features, y_features, hidden=hidden, layers=layers)


def _training_bound(estimator: str, scores: torch.Tensor, clip: float, average) -> torch.Tensor:
    if estimator == "infonce":
        return infonce_bound(scores)
    if estimator == "nwj":
        return nwj_bound(scores)
    if estimator == "mine":
        return mine_bound(scores, average)
    if estimator == "smile":
        return smile_bound(scores, clip)
    return js_bound(scores)


def _train(
    model,
    estimator,
    x,
    y,
    xv,
    yv,
    *,
    batch_size,
    max_steps,
    learning_rate,
    weight_decay,
    monitor_size,
    eval_every,
    patience,
    clip,
    generator,
    progress,
):
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    xm, ym = xv[:monitor_size], yv[:monitor_size]
    n = x.shape[0]
    perm, cursor = torch.randperm(n, generator=generator), 0
    average = None
    running = None
    best, best_state, best_step, waited = -math.inf, None, 0, 0
    steps, train_curve, valid_curve = [], [], []
    bar = tqdm(range(1, max_steps + 1), desc=f"MI ({estimator})", disable=not progress, leave=False)
    model.train()
    for step in bar:
        if cursor + batch_size > n:
            perm, cursor = torch.randperm(n, generator=generator), 0
        idx = perm[cursor : cursor + batch_size]
        cursor += batch_size
        scores = model(x[idx], y[idx])
        if bool(torch.isfinite(scores).all()):
            if estimator == "mine":
                average = mine_average(scores, average)
            bound = _training_bound(estimator, scores, clip, average)
            value = float(bound.detach())
            if math.isfinite(value):
                optimizer.zero_grad(set_to_none=True)
                (-bound).backward()
                optimizer.step()
                running = value if running is None else 0.95 * running + 0.05 * value
        if step % eval_every and step != max_steps:
            continue
        model.eval()
        with torch.no_grad():
            monitor = model(xm, ym)
            finite = bool(torch.isfinite(monitor).all())
            held_out = float(_evaluation_bound(estimator, monitor, clip)) if finite else math.nan
        model.train()
        steps.append(step)
        train_curve.append(math.nan if running is None else running)
        valid_curve.append(held_out)
        if math.isfinite(held_out) and held_out > best:
            best, best_step, waited = held_out, step, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
        bar.set_postfix(held_out=f"{held_out:.3f}", best=f"{best:.3f}", refresh=False)
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
    return (
        np.asarray(steps),
        np.asarray(train_curve),
        np.asarray(valid_curve),
        best_step,
        waited >= patience,
    )


def mine_average(scores: torch.Tensor, average: float | None, momentum: float = 0.99) -> float:
    """MINE's moving average of the batch mean of e^s over negatives, in float64, kept in
    [1e-6, 1e30]; a batch whose mean overflows leaves it unchanged."""
    with torch.no_grad():
        batch = math.exp(min(float(logmeanexp_off_diagonal(scores.detach().double())), 700.0))
    if math.isfinite(batch):
        average = batch if average is None else momentum * average + (1 - momentum) * batch
    return min(max(1.0 if average is None else average, 1e-6), 1e30)


def _evaluation_bound(estimator: str, scores: torch.Tensor, clip: float) -> torch.Tensor:
    if estimator == "infonce":
        return infonce_bound(scores)
    if estimator == "nwj":
        return nwj_bound(scores)
    if estimator == "mine":
        return dv_bound(scores)
    if estimator == "smile":
        return smile_bound(scores, clip)
    return js_bound(scores)


def _evaluate(model, estimator, x, y, block_size, clip):
    """Bound, standard error and InfoNCE cap over near-equal held-out blocks of about
    ``block_size`` rows (never fewer than 2). The cap is the size-weighted mean of log M_b, which
    bounds the size-weighted mean of the blocks' InfoNCE values."""
    n = x.shape[0]
    blocks = np.array_split(np.arange(n), max(1, min(math.ceil(n / block_size), n // 2)))
    values, variances, sizes = [], [], []
    with torch.no_grad():
        for rows in blocks:
            idx = torch.from_numpy(rows)
            scores = model(x[idx], y[idx]).double()
            value, influence = influence_values(estimator, scores, clip)
            values.append(value)
            variances.append(float(influence.var()) / len(rows) if len(rows) > 1 else 0.0)
            sizes.append(len(rows))
    weights = np.asarray(sizes) / n
    value = float(np.dot(weights, values))
    stderr = float(math.sqrt(np.dot(weights**2, variances)))
    return value, stderr, float(np.dot(weights, np.log(sizes)))


def influence_values(estimator: str, scores: torch.Tensor, clip: float = 5.0):
    r"""The evaluation bound of ``estimator`` on an (M, M) score matrix and its per-row influence.

    Returns ``(value, psi)`` with ``psi`` of shape (M,) and mean ``value``: row k's positive term
    plus its share, as an x (row k) and as a y (column k), of the negative term, linearized. Its
    standard deviation over :math:`\sqrt{M}` is the delta-method standard error of ``value``.
    """
    s = scores.double()
    m = s.shape[0]
    diag = s.diagonal()
    if estimator == "infonce":
        log_softmax = s - torch.logsumexp(s, 1, keepdim=True)
        terms = log_softmax.diagonal() + math.log(m)
        psi = terms - log_softmax.exp().sum(0) + 1
        return float(terms.mean()), psi
    off = ~torch.eye(m, dtype=torch.bool)
    t = s.clamp(-clip, clip) if estimator == "smile" else s
    if estimator == "js":
        t = t + 1
    shift = t.masked_select(off).max()
    e = (t - shift).exp().masked_fill(~off, 0)
    row, col = e.sum(1) / (m - 1), e.sum(0) / (m - 1)
    mean = e.sum() / (m * (m - 1))
    if estimator in ("mine", "smile"):
        value = diag.mean() - shift - mean.log()
        psi = diag - shift - mean.log() - (row + col - 2 * mean) / mean
    else:
        scale = (shift - 1).exp()
        value = diag.mean() + (1.0 if estimator == "js" else 0.0) - scale * mean
        psi = diag + (1.0 if estimator == "js" else 0.0) - scale * (row + col - mean)
    return float(value), psi
