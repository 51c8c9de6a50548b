r"""Telescoping ratio estimation (TRE) of a density: ``NCEDensity(..., waymarks=K)`` (Rhodes, Xu &
Gutmann, 2020, arXiv:2006.12204).

Single-ratio NCE fails when the data p and the noise q are far apart: its classifier separates
them perfectly long before its logit :math:`\log p_\theta - \log q` is right, and the loss is flat
wherever no sample of either falls. TRE crosses the gap in K steps. Waymarks
:math:`p_0 = p, p_1, \dots, p_K = q` (:mod:`nce.waymarks`) are built from pairs of a data row and a
noise draw, by linear mixing :math:`u_k = \sqrt{1 - \alpha_k^2}\,x + \alpha_k y` or dimension-wise
mixing, and

.. math:: \log \frac{p(x)}{q(x)} = \sum_{k=0}^{K-1} h_k(x), \qquad
          h_k = \log \frac{p_k}{p_{k+1}},

each bridge :math:`h_k` the logit of a binary NCE classifier of samples of :math:`p_k` against
samples of :math:`p_{k+1}`, every one of them an easy problem when consecutive waymarks overlap.

**Parametrization.** Every waymark :math:`k < K` has its own energy model with a learned log
partition, :math:`\log p_k = f_k - \log Z_k`: :math:`p_0` is the estimator's model, and the
intermediate waymarks :math:`1 \le k < K` get a :class:`~nce.models.GaussianEnergy` when the model
is one and the noise is a :class:`~nce.noise.Gaussian` (Gaussian data and noise make Gaussian
waymarks), an :class:`~nce.models.MLPEnergy` otherwise; :math:`p_K = q` is the noise, known. A
bridge's logit is the difference of its two waymarks' log densities,
:math:`h_k = \log p_k - \log p_{k+1}`, so bridge k is Gutmann & Hyvärinen's NCE
(:func:`nce.binary_nce`) of :math:`p_k` against a "noise" :math:`p_{k+1}` that is learned
too, and the K losses are minimized jointly:

.. math:: L = \sum_{k=0}^{K-1} \ell_{\mathrm{NCE}}\big(\log p_k, \log p_{k+1};
          \{u_k\}, \{u_{k+1}\}\big).

Any K free bridges :math:`h_k` are of this form (:math:`\log p_k = \log q + \sum_{j \ge k} h_j`),
so the minimizer is TRE's; and the sum telescopes exactly,
:math:`\sum_k h_k = \log p_0 - \log q`: the fitted model *is* the telescoped estimate.
``score_samples``, ``log_ratio`` and the learned ``log_partition_`` (a chain of K learned
normalizations anchored at the normalized q) are the model's, and ``partition_function``
cross-checks that log Z by importance sampling as for single-ratio NCE.

**Samples.** The fit draws :math:`M = \lceil \nu N \rceil` noise points :math:`y_j` once and pairs
each with the data row :math:`x_{j \bmod N}`: waymark 0 is the N data rows, waymark
:math:`k \ge 1` the M mixed pairs, so bridge 0 has noise ratio :math:`M/N` and the others 1.
Linear mixing spaces :math:`\alpha_k` so that every bridge removes an equal share of the
Kullback-Leibler divergence from Gaussians fitted to the data and to the noise
(:func:`gaussian_kl_alphas`, :func:`~nce.waymarks.equal_share_alphas`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nce._moments import mean_and_covariance
from nce._random import as_seed, seeded
from nce._validation import check_int
from nce.density._batch import NonFiniteLogDensity
from nce.density._standardize import StandardizedNoise
from nce.density._training import FitPlan, draw_noise, new_lbfgs
from nce.functional.binary_nce import binary_nce
from nce.models import EnergyModel, GaussianEnergy, MLPEnergy
from nce.noise import Gaussian, Noise
from nce.waymarks import (
    WAYMARK_MIXING,
    dimensionwise_waymarks,
    equal_share_alphas,
    linear_waymarks,
)

__all__ = [
    "WAYMARK_MIXING",
    "WaymarkChain",
    "bridge_log_ratios",
    "check_waymark_options",
    "fit_waymarks",
    "gaussian_kl_alphas",
    "telescoping_loss",
    "waymark_samples",
]

#: The hidden widths of the MLP energy of an intermediate waymark when the model is not an MLP.
WAYMARK_HIDDEN = (16, 16)


def check_waymark_options(waymarks, waymark_mixing) -> None:
    """Refuses a ``waymarks`` that is not None or an int >= 1, and an unknown mixing."""
    if waymarks is not None:
        check_int("waymarks", waymarks, minimum=1)
    if waymark_mixing not in WAYMARK_MIXING:
        raise ValueError(f"waymark_mixing must be one of {WAYMARK_MIXING}, got {waymark_mixing!r}")


class WaymarkChain(nn.Module):
    r"""The log densities of the waymarks :math:`p_0, \dots, p_K`: energy models
    :math:`\log p_k = f_k - \log Z_k` for :math:`k < K`, the noise for :math:`k = K`.

    Args:
        models: the K energy models of :math:`p_0, \dots, p_{K-1}` (:math:`p_0` the data's).
        noise: :math:`q = p_K`, fixed.

    Shape:
        - ``log_prob(k, u)``: u (N, D), output (N,)
        - ``bridges(u)``: u (N, D), output (K, N), row k the bridge :math:`h_k(u)`
    """

    def __init__(self, models: list[EnergyModel], noise: Noise):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.noise = noise

    @property
    def waymarks(self) -> int:
        """K, the number of bridges."""
        return len(self.models)

    def log_prob(self, k: int, u: Tensor) -> Tensor:
        if k == len(self.models):
            return self.noise.log_prob(u).to(u.dtype)
        return self.models[k].log_prob(u)

    def bridges(self, u: Tensor) -> Tensor:
        r""":math:`h_k(u) = \log p_k(u) - \log p_{k+1}(u)` for every k; their sum over k is
        :math:`\log p_0(u) - \log q(u)`. Where both densities underflow to 0 the bridge is
        :math:`-\infty` (never NaN), as ``NCEDensity.log_ratio``."""
        logs = [self.log_prob(k, u) for k in range(len(self.models) + 1)]
        rows = []
        for upper, lower in zip(logs[:-1], logs[1:], strict=True):
            both_zero = torch.isneginf(upper) & torch.isneginf(lower)
            rows.append(torch.where(both_zero, -math.inf, upper - lower))
        return torch.stack(rows)


def gaussian_kl_alphas(data: Tensor, noise: Tensor, waymarks: int) -> Tensor:
    r"""Linear-mixing weights that split the Gaussian Kullback-Leibler divergence from the data to
    the noise into K equal shares (:func:`~nce.waymarks.equal_share_alphas`).

    With moments :math:`(m_p, S_p)` of the data rows and :math:`(m_q, S_q)` of the noise draws,
    waymark :math:`\alpha` (:math:`c = \sqrt{1 - \alpha^2}`, data and noise independent) has mean
    :math:`c\,m_p + \alpha m_q` and covariance :math:`S_\alpha = c^2 S_p + \alpha^2 S_q`, and

    .. math:: \mathcal D(\alpha) = \tfrac12\big[\operatorname{tr}(S_q^{-1} S_\alpha)
              + d^\top S_q^{-1} d - D + \log\det S_q - \log\det S_\alpha\big], \qquad
              d = (1 - \alpha)\,m_q - c\,m_p,

    the divergence of the Gaussian fit of waymark :math:`\alpha` from that of the noise, 0 at
    :math:`\alpha = 1`. For Gaussian data and noise every bridge then has the same divergence.

    Shape:
        - data: (N, D), noise: (M, D)
        - output: (K + 1,), float64
    """
    check_int("waymarks", waymarks, minimum=1)
    m_p, s_p = mean_and_covariance("data", data.detach().double())
    m_q, s_q = mean_and_covariance("noise", noise.detach().double())
    dim = data.shape[1]
    eye = torch.eye(dim, dtype=torch.float64)
    s_p = s_p + 1e-9 * s_p.diagonal().mean() * eye
    chol_q = torch.linalg.cholesky(s_q + 1e-9 * s_q.diagonal().mean() * eye)
    log_det_q = 2 * chol_q.diagonal().log().sum()
    trace_pq = torch.cholesky_solve(s_p, chol_q).diagonal().sum()

    def divergence(alpha: float) -> float:
        keep = math.sqrt(max(0.0, 1 - alpha**2))
        d = (1 - alpha) * m_q - keep * m_p
        mahalanobis = (d * torch.cholesky_solve(d[:, None], chol_q).squeeze(1)).sum()
        log_det = torch.linalg.slogdet(keep**2 * s_p + alpha**2 * s_q).logabsdet
        trace = keep**2 * trace_pq + alpha**2 * dim
        return float(0.5 * (trace + mahalanobis - dim + log_det_q - log_det))

    return equal_share_alphas(divergence, waymarks)


def waymark_samples(
    data: Tensor, noise: Tensor, waymarks: int, mixing: str, alphas: Tensor | None
) -> list[Tensor]:
    r"""Samples of every waymark: the data rows for :math:`p_0`, and for :math:`k \ge 1` the
    mixtures of each noise draw :math:`y_j` with the data row :math:`x_{j \bmod N}` (linear mixing
    with ``alphas``, or dimension-wise mixing); the last is the noise draws themselves.

    Shape:
        - data: (N, D), noise: (M, D), alphas: (K + 1,)
        - output: K + 1 tensors, (N, D) then K of (M, D)
    """
    paired = data[torch.arange(noise.shape[0], device=data.device) % data.shape[0]]
    if mixing == "linear":
        mixed = linear_waymarks(paired, noise, alphas)
    else:
        mixed = dimensionwise_waymarks(paired, noise, waymarks, data.shape[1])
    return [data, *mixed[1:]]


def telescoping_loss(chain: WaymarkChain, samples: list[Tensor], noise_ratio: float) -> Tensor:
    r"""The summed NCE losses of the K bridges: bridge k classifies ``samples[k]`` (class 1)
    against ``samples[k + 1]`` with the logit :math:`\log p_k - \log \nu_k - \log p_{k+1}`
    (:func:`nce.binary_nce`), :math:`\nu_0` = ``noise_ratio`` and :math:`\nu_k = 1` after.

    Raises:
        NonFiniteLogDensity: a model's log density is NaN or infinite at the samples.

    Shape:
        - samples: K + 1 tensors (N, D), (M, D), ..., (M, D)
        - output: ()
    """
    cache: dict[tuple[int, int], Tensor] = {}

    def log_prob(k: int, j: int) -> Tensor:
        if (k, j) not in cache:
            values = chain.log_prob(k, samples[j])
            if k < chain.waymarks and not bool(torch.isfinite(values.detach()).all()):
                raise NonFiniteLogDensity(
                    f"the log density of waymark {k} is NaN or infinite at waymark {j}'s samples"
                )
            cache[(k, j)] = values
        return cache[(k, j)]

    total = samples[0].new_zeros(())
    for k in range(chain.waymarks):
        total = total + binary_nce(
            log_prob(k, k),
            log_prob(k + 1, k),
            log_prob(k, k + 1),
            log_prob(k + 1, k + 1),
            noise_ratio=noise_ratio if k == 0 else 1.0,
        )
    return total


def _waymark_model(model: EnergyModel, noise: Noise, samples: Tensor) -> EnergyModel:
    """A fresh energy model of an intermediate waymark, started at its samples' moments: a
    Gaussian when the model and the noise are (then so is every waymark), else an MLP energy."""
    base = noise.noise if isinstance(noise, StandardizedNoise) else noise
    if isinstance(model, GaussianEnergy) and isinstance(base, Gaussian):
        fresh = GaussianEnergy(model.dim)
    else:
        hidden = model.hidden if isinstance(model, MLPEnergy) else WAYMARK_HIDDEN
        fresh = MLPEnergy(model.dim, hidden=hidden)
    fresh = fresh.to(samples.device, samples.dtype)
    with torch.no_grad():
        fresh.init_from_data(samples)
    return fresh


def fit_waymarks(estimator, plan: FitPlan) -> tuple[list[float], list[float], bool]:
    r"""Fits the waymark chain of ``estimator.waymarks`` bridges from the prepared ``plan`` (the
    data, the model and the noise in the fit's coordinates), in ``estimator``'s own epochs
    (its optimizer, ``epochs``, ``patience`` and ``tol``, as for single-ratio NCE) with the
    telescoping loss in place of the NCE loss; early stopping watches the held-out telescoping
    loss. Sets ``waymark_alphas_`` and ``waymark_models_`` (the K - 1
    intermediate models, mapped back to the user's coordinates) on ``estimator``.

    Returns:
        ``(loss_curve, validation_curve, converged)``, as ``NCEDensity``'s own loop.
    """
    model = plan.model
    if model.conditional:
        raise ValueError(
            f"waymarks need an unconditional model; {type(model).__name__} is conditional"
        )
    waymarks, mixing = estimator.waymarks, estimator.waymark_mixing
    dim = plan.data.x.shape[1]
    if mixing == "dimensionwise" and waymarks > dim:
        raise ValueError(
            f"waymarks = {waymarks} exceeds the {dim} columns of X: dimension-wise mixing moves "
            "at least one column per bridge; use fewer waymarks or waymark_mixing='linear'"
        )
    noise = plan.fixed_noise
    if noise is None:  # the waymark samples are drawn once, whatever resample_noise says
        noise = draw_noise(plan.noise, plan.noise_ratio, plan.data, plan.generator)
    alphas = None
    if mixing == "linear":
        alphas = gaussian_kl_alphas(plan.data.x, noise.x, waymarks)
    train = waymark_samples(plan.data.x, noise.x, waymarks, mixing, alphas)
    valid = None
    if plan.validation is not None:
        valid = waymark_samples(
            plan.validation.x, plan.validation_noise.x, waymarks, mixing, alphas
        )
    with seeded(as_seed(plan.generator)):
        intermediate = [_waymark_model(model, plan.noise, train[k]) for k in range(1, waymarks)]
    chain = WaymarkChain([model, *intermediate], plan.noise)
    ratio = train[1].shape[0] / train[0].shape[0]
    lbfgs = estimator.optimizer_ == "lbfgs"
    loop = (
        _lbfgs_epochs(plan, chain, train, ratio)
        if lbfgs
        else _adam_epochs(plan, chain, train, ratio)
    )

    def held_out(plan: FitPlan) -> float:
        with torch.no_grad():
            return float(telescoping_loss(chain, valid, ratio))

    try:
        curves = estimator._run_epochs(plan, loop, held_out, chain.models)
    finally:
        if plan.standardization is not None:
            for m in intermediate:
                m.change_coordinates_(*plan.standardization)
    chain.eval()
    for m in intermediate:
        m.trained = True
    estimator.waymark_alphas_ = alphas
    estimator.waymark_models_ = intermediate
    return curves


def _lbfgs_epochs(plan: FitPlan, chain: WaymarkChain, train: list[Tensor], ratio: float):
    """Full-batch L-BFGS on the telescoping loss, ``lbfgs_steps`` iterations (strong Wolfe) per
    epoch: yields the objective after each epoch and records its largest gradient entry in
    ``plan.gradient_max`` (as :func:`~nce.density._training.lbfgs_epochs`)."""
    parameters = list(chain.models.parameters())
    optimizer = new_lbfgs(plan, parameters)

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = telescoping_loss(chain, train, ratio)
        loss.backward()
        plan.steps += 1
        return loss

    while True:
        chain.train()
        optimizer.step(closure)
        loss = closure()
        plan.gradient_max = max(float(p.grad.abs().max()) for p in parameters if p.grad is not None)
        optimizer.zero_grad(set_to_none=True)
        yield float(loss.detach())


def _adam_epochs(plan: FitPlan, chain: WaymarkChain, train: list[Tensor], ratio: float):
    """AdamW over minibatches of ``batch_size`` data rows and their share of the pairs; yields
    the mean objective of each epoch. The networks of the models take ``weight_decay``, their
    Gaussian parts and log Z none (as :func:`~nce.density._training.adam_epochs`)."""
    own, nested = [], []
    for m in chain.models:
        for name, p in m.named_parameters():
            (nested if "." in name else own).append(p)
    groups = [{"params": own, "weight_decay": 0.0}]
    if nested:
        groups.append({"params": nested, "weight_decay": plan.weight_decay})
    optimizer = torch.optim.AdamW(groups, lr=plan.lr)
    n, m = train[0].shape[0], train[1].shape[0]
    batches = max(1, math.ceil(n / plan.batch_size))
    device = train[0].device
    while True:
        chain.train()
        rows = torch.randperm(n, generator=plan.generator).to(device).tensor_split(batches)
        pairs = torch.randperm(m, generator=plan.generator).to(device).tensor_split(batches)
        total = 0.0
        for data_rows, pair_rows in zip(rows, pairs, strict=True):
            batch = [train[0][data_rows], *(s[pair_rows] for s in train[1:])]
            optimizer.zero_grad(set_to_none=True)
            loss = telescoping_loss(chain, batch, ratio)
            loss.backward()
            optimizer.step()
            plan.steps += 1
            total += float(loss.detach()) * data_rows.shape[0]
        yield total / n


def bridge_log_ratios(estimator, X) -> Tensor:
    r"""The K bridge log-ratios :math:`h_k(x) = \log p_k(x) - \log p_{k+1}(x)` of an
    ``NCEDensity`` fitted with ``waymarks``; they sum to ``estimator.log_ratio(X)``.

    Shape:
        - X: (N, D)
        - output: (K, N), a tensor
    """
    if getattr(estimator, "waymark_models_", None) is None:
        estimator._check_fitted()
        raise ValueError(
            "bridge_log_ratios needs an NCEDensity fitted with waymarks (and not loaded from a "
            "file: the intermediate waymark models are not saved)"
        )
    X, _ = estimator._inputs(X, None)
    chain = WaymarkChain([estimator.model_, *estimator.waymark_models_], estimator.noise_)
    with torch.no_grad():
        return chain.bridges(X)
