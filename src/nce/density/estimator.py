r"""The estimator :class:`NCEDensity`: construction, ``fit`` in three steps (prepare the data, the
model and the noise; run the training loops of :mod:`~nce.density._training`; finish with the
best parameters and an exact :math:`\log Z`), and scoring with the fitted model;
``partition_function``, ``save`` and ``load`` hand over to :mod:`~nce.density.partition` and
:mod:`~nce.density.persistence`."""

from __future__ import annotations

import copy
import inspect
import math
import time
import warnings
from functools import partial

import torch
from torch import Tensor
from torch.distributions import Distribution

from nce._convert import as_float_tensor, like_input
from nce._deprecation import renamed_keywords
from nce._divergence import DivergenceError
from nce._random import as_generator, as_seed, check_random_state, seeded
from nce._validation import check_in_range, check_int, check_positive, shape_str
from nce.density import defaults
from nce.density._batch import NonFiniteLogDensity, _Batch, _chunks, _nce_loss, _rows
from nce.density._checks import _check_frozen, check_varying_columns
from nce.density._memory import check_fits, out_of_memory_as
from nce.density._standardize import StandardizedNoise, column_scaling
from nce.density._training import FitPlan, adam_epochs, draw_noise, lbfgs_epochs
from nce.density.conditional import (
    ConditionalFitPlan,
    check_conditional_options,
    conditional_epochs,
    conditional_held_out_loss,
    conditional_plan,
    normalize_by_sampling,
)
from nce.density.errors import ConvergenceWarning
from nce.density.partition import (
    PartitionEstimate,
    estimate_log_partition,
    warn_if_unnormalized,
)
from nce.density.persistence import load_estimator, save_estimator
from nce.density.telescoping import check_waymark_options, fit_waymarks
from nce.models import EnergyModel, GaussianEnergy, ICAEnergy, MLPEnergy
from nce.noise import Box, Gaussian, GaussianMixture, Noise, as_noise

__all__ = ["MODELS", "NOISES", "OPTIMIZERS", "NCEDensity", "NotFittedError"]

MODELS = {"mlp": MLPEnergy, "gaussian": GaussianEnergy, "ica": ICAEnergy}
NOISES = ("gaussian", "mixture", "box", "conditional")
OPTIMIZERS = ("auto", "adam", "lbfgs")
INITS = ("auto", "data", "keep")


class NotFittedError(ValueError, AttributeError):
    """An :class:`NCEDensity` was used before ``fit`` (as scikit-learn's ``NotFittedError``)."""


class NCEDensity:
    r"""Fits an unnormalized density by noise-contrastive estimation, learning its :math:`\log Z`.

    ``fit(X)`` minimizes :func:`nce.binary_nce` over the model's parameters and ``log_z``, with
    :math:`\nu N` samples of a fixed noise :math:`q`:

    .. math:: \ell = -\frac{1}{N}\Big[\sum_i \log\sigma(G(x_i)) + \sum_j \log\sigma(-G(y_j))\Big],
        \qquad G(u) = f_\theta(u) - \log Z - \log\nu - \log q(u).

    After fitting, ``score_samples(X)`` is the normalized :math:`\log p_\theta(x) = f_\theta(x)
    - \log Z`, ``log_ratio(X)`` is :math:`\log p_\theta(x) - \log q(x)` (larger means more
    data-like; its negative is an out-of-distribution score) and ``partition_function()``
    cross-checks :math:`\log Z` by importance sampling.

    Args:
        model: An :class:`~nce.models.EnergyModel` (trained in place, on its own dtype and
            device; see ``init``), or "mlp" (the default, :class:`~nce.models.MLPEnergy` with two
            hidden layers of a width chosen by the number :math:`N` of training rows,
            :math:`2^{\operatorname{round}(\log_2 \sqrt N)}` within [16, 64]), "gaussian" or
            "ica": built at ``fit`` in the data's dtype.
        noise: "gaussian" (fitted to the data's mean and covariance), "mixture" (a
            ``noise_components``-component Gaussian mixture fitted by EM), "box" (uniform on a
            box around the data, widened by ``box_margin`` of its range on each side; the old
            name "uniform" still works, with a DeprecationWarning), "conditional" (conditional
            NCE: ``noise_ratio`` points drawn around each datum, :math:`y = x + \varepsilon`,
            see :mod:`~nce.density.conditional`; no noise density and no :math:`\log Z` enter
            the fit, which is normalized afterwards by importance sampling), or a fitted
            :class:`~nce.noise.Noise` or :class:`torch.distributions.Distribution` of event shape
            (D,). It must not share trainable tensors with the model.
        noise_ratio: :math:`\nu > 0`, noise samples per datum; or "auto": :math:`\max(10,
            20{,}000 / N)` for :math:`N` training rows (:mod:`~nce.density.defaults`), at least
            20,000 noise draws, which on small tables brings the learned :math:`\log Z` closer
            to the true one at little cost. The value used is ``noise_ratio_``.
        optimizer: "auto" (the default: "lbfgs" for a model of at most 500 parameters without
            a network, such as a Gaussian up to 21 dimensions, "adam" for larger models and
            for networks, which its weight decay regularizes; the choice is ``optimizer_``), "adam"
            (minibatches of ``batch_size`` data and their :math:`\nu` share of noise) or
            "lbfgs" (full batch, strong-Wolfe line search, ``lbfgs_steps`` iterations per
            epoch).
        lr: The learning rate of Adam (L-BFGS takes unit steps, shortened by its line search).
        batch_size: Data points per Adam step; or "auto": :math:`\lceil N / 10 \rceil` within
            [32, 256] for :math:`N` training rows, about ten steps per epoch on a small table
            (256 from 2,560 rows on). The value used is ``batch_size_``.
        epochs: The most passes over the data (L-BFGS: outer steps); early stopping may end
            the fit sooner. (Formerly ``max_epochs``, still accepted with a DeprecationWarning.)
        resample_noise: Draw fresh noise every epoch (True), or one fixed noise sample for the
            whole fit (False, Gutmann & Hyvärinen's setting); "auto" (the default): fresh for
            Adam, which otherwise lets a network learn the holes of one sample (a learned
            :math:`\log Z` below the true one), fixed for L-BFGS. The choice is
            ``resample_noise_``.
        validation_fraction: The share of the data held out for early stopping, in [0, 1): the
            fit stops when the held-out NCE objective (on its own fixed noise sample) has not
            improved by ``tol`` for ``patience`` epochs, and the best parameters seen (the
            starting point included) are restored. With 0, all data are used and the training
            objective is watched instead.
        patience: Epochs without improvement before stopping.
        tol: The improvement that counts, relative to :math:`1 + |\ell|`; and L-BFGS's
            convergence criterion: the fit is at the optimum when the largest gradient entry
            :math:`\max|\partial\ell/\partial\theta|` or the objective's change over an epoch
            (relative to :math:`1 + |\ell|`) falls below ``tol``.
        lbfgs_steps: L-BFGS iterations per epoch.
        noise_components: Components of the "mixture" noise.
        box_margin: Widening of the "box" noise, a fraction of each column's range.
        noise_scale: For ``noise="conditional"`` only: the standard deviation of
            :math:`\varepsilon` in each column, in units of that column's standard deviation; None
            or "auto" (the default) chooses it from the data and the model's starting point (the
            choice is ``noise_scale_``).
        init: Where the fit starts. "data": ``model.init_from_data`` on the (standardized)
            training rows, e.g. a Gaussian at the data's moments and an MLP energy at that
            Gaussian; "keep": the model's current parameters; "auto" (the default): "data",
            unless the model is ``trained`` (fitted by an ``NCEDensity`` before, or given weights
            with ``load_state_dict``), which keeps them.
        standardize: Fit in the coordinates :math:`u = (x - a)/s` of the training rows' column
            means and standard deviations (scale only for a model that takes no shift, such as
            ICA), then map the model back (:meth:`~nce.models.EnergyModel.change_coordinates_`),
            so that every log density returned stays in the user's units. For models with a
            ``coordinate_change``; others are fitted on the raw columns.
        weight_decay: Adam's decoupled weight decay on the parameters of a model's submodules
            (an MLP energy's network; not its Gaussian base nor ``log_z``); "auto": :math:`\min(1,
            100/N)` for :math:`N` training rows, stronger on less data.
        waymarks: None (the default: one ratio, data against noise) or K: telescoping ratio
            estimation across K bridges between the data and the noise, for data far from the
            noise (:mod:`~nce.density.telescoping`; Rhodes, Xu & Gutmann 2020,
            arXiv:2006.12204). The model is then the first of K waymark densities, fitted
            jointly; the waymarks' samples are drawn once.
        waymark_mixing: "linear" (the default: :math:`\sqrt{1 - \alpha_k^2}\,x + \alpha_k y`,
            spaced for equal Gaussian divergence per bridge) or "dimensionwise".
        progress: Show a tqdm progress bar over epochs.
        random_state: None, an int or a :class:`torch.Generator`: seeds the split, the noise
            draws, the minibatches and the initialization of a model built from a name.

    Attributes:
        model_: The fitted :class:`~nce.models.EnergyModel`.
        noise_: The frozen :class:`~nce.noise.Noise` (for ``noise="conditional"``, the Gaussian
            fitted to the data that normalized the fit: ``log_ratio`` is against it).
        noise_scale_: The scale of a conditional fit's noise (standardized units).
        log_partition_: The learned :math:`\log Z` (importance-sampled after a fit with
            ``noise="conditional"``; a float; None for a conditional model,
            whose :math:`\log Z(c)` is ``model_.log_partition(context)``).
        n_features_in_: :math:`D`.
        n_iter_: Epochs run.
        converged_: Whether the fit met its criterion: L-BFGS at the optimum (``tol``), or early
            stopping on ``patience``; False when ``epochs`` ran out first (with a
            :class:`~nce.density.ConvergenceWarning`).
        optimizer_: The optimizer used, "adam" or "lbfgs".
        noise_ratio_: The :math:`\nu` used (``noise_ratio``, or its "auto" value).
        batch_size_: The Adam batch size used (``batch_size``, or its "auto" value).
        resample_noise_: Whether the fit drew fresh noise every epoch.
        standardization_: ``(a, s)``, the shift and scale of the coordinates the fit worked
            in (tensors (D,)), or None.
        loss_curve_: The training objective after each epoch.
        validation_curve_: The held-out objective after each epoch (empty without validation).
        fit_time_: Seconds spent in ``fit``.
        waymark_alphas_, waymark_models_: With ``waymarks``: the linear-mixing weights (K + 1,)
            (None for dimension-wise mixing) and the K - 1 intermediate waymark models.

    Shape:
        - X: (N, D), a tensor or an array
        - context: (N, C) for a conditional model
        - ``score_samples``, ``log_ratio``: (N,), numpy for numpy (or DataFrame) input, a
          tensor for a tensor

    References:
        | Noise-contrastive estimation of unnormalized statistical models, with applications to
        | natural image statistics (Gutmann & Hyvärinen, JMLR 13:307, 2012)

    Example:
        >>> import torch, nce
        >>> X = torch.randn(500, 2) @ torch.tensor([[1.0, 0.5], [0.0, 1.0]])
        >>> est = nce.NCEDensity("gaussian", optimizer="lbfgs", progress=False, random_state=0)
        >>> est = est.fit(X)
        >>> check = est.partition_function(n_samples=10_000, random_state=0)
        >>> abs(est.log_partition_ - float(check.log_z)) < 0.05
        True
        >>> est.score_samples(X[:3]).shape
        torch.Size([3])
    """

    @renamed_keywords(max_epochs="epochs")
    def __init__(
        self,
        model: EnergyModel | str | None = None,
        noise: str | Noise | Distribution = "gaussian",
        noise_ratio: float | str = 10,
        *,
        optimizer: str = "auto",
        lr: float = 3e-3,
        batch_size: int | str = 256,
        epochs: int = 200,
        resample_noise: bool | str = "auto",
        validation_fraction: float = 0.1,
        patience: int = 10,
        tol: float = 1e-4,
        lbfgs_steps: int = 20,
        noise_components: int = 5,
        box_margin: float = 0.1,
        noise_scale: float | str | None = None,
        init: str = "auto",
        standardize: bool = True,
        weight_decay: float | str = "auto",
        waymarks: int | None = None,
        waymark_mixing: str = "linear",
        progress: bool = True,
        random_state: int | torch.Generator | None = None,
    ):
        if model is None:
            model = "mlp"
        if isinstance(model, str):
            if model not in MODELS:
                raise ValueError(
                    f"model must be one of {tuple(MODELS)} or an EnergyModel, got {model!r}"
                )
        elif not isinstance(model, EnergyModel):
            raise TypeError(
                f"model must be an nce.models.EnergyModel or one of {tuple(MODELS)}, "
                f"got {type(model).__name__}"
            )
        if isinstance(noise, str):
            if noise == "uniform":
                warnings.warn(
                    'NCEDensity: noise="uniform" is deprecated and will be removed in the next '
                    'release; use noise="box" (nce.noise.Uniform is over class ids)',
                    DeprecationWarning,
                    stacklevel=3,
                )
                noise = "box"
            if noise not in NOISES:
                raise ValueError(
                    f"noise must be one of {NOISES}, a Noise or a Distribution, got {noise!r}"
                )
        else:
            noise = as_noise(noise, name="noise")
            if not isinstance(model, str):
                _check_frozen(noise, model)
        defaults.check_noise_ratio(noise_ratio)
        check_conditional_options(noise, noise_scale, noise_ratio)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        check_positive("lr", lr)
        defaults.check_batch_size(batch_size)
        check_int("epochs", epochs, minimum=1)
        defaults.check_resample_noise(resample_noise)
        check_in_range("validation_fraction", validation_fraction, 0.0, 1.0)
        check_int("patience", patience, minimum=1)
        check_in_range("tol", tol, 0.0, math.inf)
        check_int("lbfgs_steps", lbfgs_steps, minimum=1)
        check_int("noise_components", noise_components, minimum=1)
        check_in_range("box_margin", box_margin, 0.0, math.inf)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if not isinstance(standardize, bool):
            raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
        if weight_decay != "auto":
            check_in_range("weight_decay", weight_decay, 0.0, math.inf)
        check_waymark_options(waymarks, waymark_mixing)
        if waymarks is not None and isinstance(noise, str) and noise == "conditional":
            raise ValueError(
                "waymarks bridge the data and a noise distribution; noise='conditional' has none "
                "(its noise is drawn around each datum): use one of them, not both"
            )
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
        check_random_state(random_state)
        self.model = model
        self.noise = noise
        self.noise_ratio = noise_ratio
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.resample_noise = resample_noise
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.lbfgs_steps = lbfgs_steps
        self.noise_components = noise_components
        self.box_margin = box_margin
        self.noise_scale = noise_scale
        self.init = init
        self.standardize = standardize
        self.weight_decay = weight_decay
        self.waymarks = waymarks
        self.waymark_mixing = waymark_mixing
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X, context=None) -> NCEDensity:
        r"""Fits the model (and its :math:`\log Z`) to ``X`` by NCE; returns ``self``.

        Args:
            X: The data, (N, D) with :math:`N \geq 2`, finite, not constant in any column; a
                tensor or an array.
            context: For a conditional model, the contexts :math:`c_i`, (N, C). Noise draw
                :math:`j` of a batch is paired with the batch's context :math:`j \bmod N_b`.

        After the last epoch (and the restore of the best parameters), an unconditional model's
        :math:`\log Z` is set to the exact minimizer of the full training objective in
        :math:`\log Z` alone, a one-dimensional convex problem: this removes the jitter that
        minibatch steps leave on it, and changes nothing at a full-batch optimum.

        Raises:
            DivergenceError: the objective or the model's log densities became NaN or infinite
                (lower ``lr``).
            FitMemoryError: the noise sample or a training step would not fit in memory (lower
                ``noise_ratio`` or ``batch_size``).
        """
        start = time.perf_counter()
        plan = self._prepare(X, context)
        try:
            run = self._run_epochs if self.waymarks is None else partial(fit_waymarks, self)
            loss_curve, validation_curve, converged = run(plan)
            self._finish(plan, loss_curve, validation_curve, converged)
        finally:
            if plan.standardization is not None:
                plan.model.change_coordinates_(*plan.standardization)
        self.fit_time_ = time.perf_counter() - start
        return self

    # ---- fit, step 1: data, model and noise

    def _prepare(self, X, context) -> FitPlan:
        """Checks the data, builds the model and the frozen noise, splits off the held-out rows
        and draws the fixed noise samples."""
        generator = as_generator(self.random_state)
        X = as_float_tensor("X", X, ndim=2)
        if X.shape[0] < 2:
            raise ValueError(f"X has {X.shape[0]} row(s) but NCEDensity.fit needs at least 2")
        if X.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(f"X must be float32 or float64 to fit, got {X.dtype}")
        check_varying_columns(X)
        n = X.shape[0]
        n_val = round(self.validation_fraction * n) if self.validation_fraction > 0 else 0
        self.noise_ratio_ = defaults.noise_ratio(self.noise_ratio, n - n_val)
        self.batch_size_ = defaults.batch_size(self.batch_size, n - n_val)
        model = self._build_model(X, n - n_val, generator)
        param = next(model.parameters())
        X = X.to(param.device, param.dtype)
        context = self._check_context(model, X, context, param)
        self.optimizer_ = defaults.optimizer(self.optimizer, model)
        self.resample_noise_ = defaults.resample_noise(self.resample_noise, self.optimizer_)
        if self.validation_fraction > 0 and (n_val < 1 or n - n_val < 2):
            raise ValueError(
                f"validation_fraction = {self.validation_fraction} leaves {n_val} held-out and "
                f"{n - n_val} training row(s) of X (shape {shape_str(X)}); at least 1 and 2 "
                "are needed, or set validation_fraction=0"
            )
        batches = math.ceil((n - n_val) / self.batch_size_) if self.optimizer_ == "adam" else 1
        draws = math.ceil(self.noise_ratio_ * (n - n_val))
        if draws < batches:
            raise ValueError(
                f"noise_ratio = {self.noise_ratio_} gives {draws} noise draws for {batches} "
                "minibatches of X: every minibatch needs at least one; raise noise_ratio or "
                "batch_size"
            )
        self._check_sizes(model, X, n - n_val, n_val, batches)
        order = torch.randperm(n, generator=generator).to(X.device)
        train, val = order[n_val:], order[:n_val]
        noise = self._build_noise(X, model)
        log_q = noise.log_prob(X).to(X.dtype)
        outside = int((~torch.isfinite(log_q)).sum())
        if outside:
            raise ValueError(
                f"the noise gives zero density to {outside} row(s) of X: NCE needs noise that "
                "covers the data (try noise='gaussian', or a wider box)"
            )
        standardization = None
        if self.standardize and model.coordinate_change is not None:
            shift, scale = column_scaling(X[train], centre=model.coordinate_change == "affine")
            standardization = (shift, scale)
            X = (X - shift) / scale
            log_q = log_q + scale.log().sum()
            noise = StandardizedNoise(noise, shift, scale)
        fresh = isinstance(self.model, str) or self.init == "data"
        if fresh or (self.init == "auto" and not model.trained):
            with torch.no_grad():
                model.init_from_data(X[train])
        elif standardization is not None:
            model.change_coordinates_(-shift / scale, 1 / scale)
        weight_decay = defaults.weight_decay(self.weight_decay, n - n_val)
        data = _Batch(X[train], log_q[train], _rows(context, train))
        validation = validation_noise = None
        with out_of_memory_as(
            "the noise sample",
            draws + math.ceil(self.noise_ratio_ * n_val),
            self._row_bytes(X, context),
            "noise_ratio",
            self.noise_ratio_,
        ):
            draw_from_noise = self.noise != "conditional"
            if n_val:
                validation = _Batch(X[val], log_q[val], _rows(context, val))
                if draw_from_noise:
                    validation_noise = draw_noise(noise, self.noise_ratio_, validation, generator)
            fixed_noise = None
            if draw_from_noise and not self.resample_noise_:
                fixed_noise = draw_noise(noise, self.noise_ratio_, data, generator)
        plan = FitPlan(
            model,
            noise,
            data,
            validation,
            validation_noise,
            fixed_noise,
            generator,
            self.noise_ratio_,
            self.lr,
            self.batch_size_,
            self.lbfgs_steps,
            weight_decay,
            standardization,
        )
        if self.noise == "conditional":
            return conditional_plan(plan, self.noise_scale, self.resample_noise_)
        return plan

    @staticmethod
    def _row_bytes(X: Tensor, context: Tensor | None) -> int:
        """Bytes of one noise draw: the point, its log density and its context."""
        width = X.shape[1] + 1 + (0 if context is None else context.shape[1])
        return width * X.element_size()

    def _check_sizes(
        self, model: EnergyModel, X: Tensor, n_train: int, n_val: int, batches: int
    ) -> None:
        """Refuses, before allocating, a noise sample or a training step that cannot fit."""
        draws = math.ceil(self.noise_ratio_ * n_train) + math.ceil(self.noise_ratio_ * n_val)
        row_bytes = (X.shape[1] + 2) * X.element_size()
        if not self.resample_noise_:
            check_fits(
                "the noise sample", draws, row_bytes, X.device, "noise_ratio", self.noise_ratio_
            )
        # One step evaluates the model (and its gradient) at its data and noise rows at once.
        widths = sum(p.shape[0] for p in model.parameters() if p.dim() == 2)
        step_rows = math.ceil((1 + self.noise_ratio_) * n_train / batches)
        step_bytes = (X.shape[1] + 2 + 3 * widths) * X.element_size()
        option, value = "noise_ratio", self.noise_ratio_
        if self.optimizer_ == "adam" and self.batch_size_ > 1:
            option, value = "noise_ratio or batch_size", self.noise_ratio_
        check_fits("one training step", step_rows, step_bytes, X.device, option, value)

    # ---- fit, step 2: the epochs

    def _run_epochs(
        self, plan: FitPlan, loop=None, held_out=None, model: torch.nn.Module | None = None
    ) -> tuple[list[float], list[float], bool]:
        """Runs the training loop until convergence, early stopping, ``epochs`` or divergence;
        returns the curves and whether the fit converged. Stopped by ``patience``, the model
        ends with the best parameters seen on the held-out data (its start included); at
        L-BFGS's optimum, with the optimum. Another objective (:mod:`~nce.density.telescoping`)
        passes its own ``loop`` of epochs, ``held_out`` loss and trained ``model``."""
        from tqdm.auto import tqdm

        model = plan.model if model is None else model
        held_out = self._held_out_loss if held_out is None else held_out
        loss_curve: list[float] = []
        validation_curve: list[float] = []
        best, best_state, wait = math.inf, None, 0
        if plan.validation is not None:
            try:
                best = held_out(plan)
            except NonFiniteLogDensity as error:
                raise ValueError(
                    f"{error} of the held-out rows at the model's starting point, before any "
                    "step: check the model's parameters and X"
                ) from error
            best_state = copy.deepcopy(model.state_dict())
        converged, at_optimum, previous = False, False, math.inf
        lbfgs = self.optimizer_ == "lbfgs"
        if loop is None:
            loop = lbfgs_epochs(plan) if lbfgs else adam_epochs(plan)
            if isinstance(plan, ConditionalFitPlan):
                loop = conditional_epochs(plan, lbfgs)
        bar = tqdm(total=self.epochs, desc="NCE fit", disable=not self.progress, leave=False)
        try:
            for epoch in range(1, self.epochs + 1):
                loss = self._next_epoch(loop, plan, epoch)
                loss_curve.append(loss)
                watched = loss
                if plan.validation is not None:
                    watched = held_out(plan)
                    validation_curve.append(watched)
                bar.update(1)
                postfix = {
                    "loss": f"{loss:.4f}",
                    "log_z": f"{float(plan.model.log_z.detach()):.3f}",
                }
                if plan.validation is not None:
                    postfix["held-out"] = f"{watched:.4f}"
                bar.set_postfix(postfix, refresh=False)
                if not math.isfinite(watched):
                    raise self._diverged(epoch, f"the NCE objective became {watched}")
                if lbfgs and self._at_optimum(plan, loss, previous):
                    converged = at_optimum = True
                    break
                previous = loss
                threshold = best - self.tol * (1 + abs(best)) if math.isfinite(best) else math.inf
                if watched < threshold:
                    best, wait = watched, 0
                    if plan.validation is not None:
                        best_state = copy.deepcopy(model.state_dict())
                else:
                    wait += 1
                    if wait >= self.patience:
                        converged = True
                        break
        except NonFiniteLogDensity as error:
            raise self._diverged(len(loss_curve) + 1, str(error)) from error
        finally:
            bar.close()
        if best_state is not None and not at_optimum:
            model.load_state_dict(best_state)
        model.eval()
        return loss_curve, validation_curve, converged

    def _held_out_loss(self, plan: FitPlan) -> float:
        if isinstance(plan, ConditionalFitPlan):
            return conditional_held_out_loss(plan)
        with torch.no_grad():
            return float(
                _nce_loss(plan.model, self.noise_ratio_, plan.validation, plan.validation_noise)
            )

    def _at_optimum(self, plan: FitPlan, loss: float, previous: float) -> bool:
        """L-BFGS's criterion: the largest gradient entry, or the objective's change over the
        epoch relative to :math:`1 + |\\ell|`, is below ``tol``."""
        change = abs(previous - loss) / (1 + abs(loss)) if math.isfinite(previous) else math.inf
        return plan.gradient_max <= self.tol or change <= self.tol

    def _next_epoch(self, loop, plan: FitPlan, epoch: int) -> float:
        """One epoch of ``loop``; a model that is not finite before any step is bad input."""
        steps = plan.steps
        try:
            with out_of_memory_as(
                "one training step",
                math.ceil((1 + self.noise_ratio_) * self.batch_size_),
                self._row_bytes(plan.data.x, plan.data.context),
                "noise_ratio or batch_size",
                self.noise_ratio_,
            ):
                return next(loop)
        except NonFiniteLogDensity as error:
            if epoch == 1 and steps == 0 and plan.steps == 0:
                raise ValueError(
                    f"{error} at the model's starting point, before any training step: check "
                    "the model and X"
                ) from error
            raise

    def _diverged(self, epoch: int, detail: str) -> DivergenceError:
        option = "lr" if self.optimizer_ == "adam" else None
        return DivergenceError(
            "the fit", epoch, detail=detail, option=option, value=self.lr, also="standardize X"
        )

    # ---- fit, step 3: the fitted attributes

    def _finish(
        self,
        plan: FitPlan,
        loss_curve: list[float],
        validation_curve: list[float],
        converged: bool,
    ):
        """Sets an unconditional model's :math:`\\log Z` exactly, and the fitted attributes (in
        the fit's coordinates: ``fit`` maps the model back to the user's afterwards); warns when
        the fit did not converge."""
        model = plan.model
        if isinstance(plan, ConditionalFitPlan):
            normalize_by_sampling(plan)
            self.noise_scale_ = plan.noise_scale
        elif not model.conditional and self.waymarks is None:
            polish_noise = plan.fixed_noise
            if polish_noise is None:
                polish_noise = draw_noise(plan.noise, self.noise_ratio_, plan.data, plan.generator)
            self._refit_log_z(model, plan.data, polish_noise)
        noise = plan.noise.noise if isinstance(plan.noise, StandardizedNoise) else plan.noise
        self.model_, self.noise_ = model, noise
        model.trained = True
        self.loss_curve_, self.validation_curve_ = loss_curve, validation_curve
        self.n_iter_ = len(loss_curve)
        self.converged_ = converged
        self.standardization_ = plan.standardization
        if not converged:
            criterion = "its gradient and change" if self.optimizer_ == "lbfgs" else "patience"
            warnings.warn(
                f"NCEDensity: the fit stopped after epochs = {self.epochs} without converging "
                f"({criterion} not within tol = {self.tol:g}); raise epochs (or tol)",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_features_in_ = plan.data.x.shape[1]
        self.n_noise_samples_ = math.ceil(self.noise_ratio_ * plan.data.x.shape[0])
        self.log_partition_ = None
        if not model.conditional:
            log_det = 0.0 if plan.standardization is None else plan.standardization[1].log().sum()
            self.log_partition_ = float(model.log_z.detach() + log_det)

    def _refit_log_z(self, model: EnergyModel, data: _Batch, noise: _Batch) -> None:
        r"""Sets :math:`\log Z` to the exact minimizer of the objective in :math:`\log Z` alone.

        With :math:`a_u = f_\theta(u) - \log\nu - \log q(u)` fixed, the objective
        :math:`-\sum_i \log\sigma(a_{x_i} - c) - \sum_j \log\sigma(c - a_{y_j})` is convex in
        :math:`c = \log Z`, with gradient :math:`\sum_i \sigma(c - a_{x_i})
        - \sum_j \sigma(a_{y_j} - c)`: a few safeguarded Newton steps solve it.
        """
        log_nu = math.log(self.noise_ratio_)
        with torch.no_grad():
            a_x = torch.cat([model(x) for x, _ in _chunks(data.x, None)]) - log_nu - data.log_q
            a_y = torch.cat([model(y) for y, _ in _chunks(noise.x, None)]) - log_nu - noise.log_q
            c = model.log_z.detach().to(torch.float64).clone()
            a_x, a_y = a_x.to(torch.float64), a_y.to(torch.float64)
            for _ in range(50):
                s_x, s_y = torch.sigmoid(c - a_x), torch.sigmoid(a_y - c)
                grad = s_x.sum() - s_y.sum()
                hess = (s_x * (1 - s_x)).sum() + (s_y * (1 - s_y)).sum()
                step = (grad / hess.clamp_min(1e-12)).clamp(-1.0, 1.0)
                c -= step
                if abs(float(step)) < 1e-12:
                    break
            if math.isfinite(float(c)):
                model.log_z.copy_(c)

    def _build_model(self, X: Tensor, n_train: int, generator: torch.Generator) -> EnergyModel:
        if not isinstance(self.model, str):
            if self.model.dim != X.shape[1]:
                raise ValueError(
                    f"X has {X.shape[1]} columns but the model has dimension {self.model.dim} "
                    f"(X has shape {shape_str(X)})"
                )
            return self.model
        options = {}
        if self.model == "mlp":
            options["hidden"] = (defaults.hidden_width(n_train),) * 2
        with seeded(as_seed(generator)):
            model = MODELS[self.model](X.shape[1], **options)
        return model.to(X.device, X.dtype)

    def _check_context(self, model: EnergyModel, X: Tensor, context, param: Tensor):
        if not model.conditional:
            if context is not None:
                raise ValueError(
                    f"context was given but the model ({type(model).__name__}) is unconditional"
                )
            return None
        if context is None:
            raise ValueError(
                f"the model ({type(model).__name__}) is conditional: pass context of shape "
                f"({X.shape[0]}, {model.context_dim})"
            )
        context = as_float_tensor("context", context, ndim=2)
        if context.shape != (X.shape[0], model.context_dim):
            raise ValueError(
                f"context must have shape ({X.shape[0]}, {model.context_dim}) to match X of "
                f"shape {shape_str(X)}, got {shape_str(context)}"
            )
        return context.to(param.device, param.dtype)

    def _build_noise(self, X: Tensor, model: EnergyModel) -> Noise:
        if isinstance(self.noise, str):
            X64 = X.detach().to(torch.float64)
            if self.noise in ("gaussian", "conditional"):
                noise = Gaussian.fit(X64)
            elif self.noise == "mixture":
                if self.noise_components > X.shape[0]:
                    raise ValueError(
                        f"noise_components = {self.noise_components} exceeds the "
                        f"{X.shape[0]} rows of X"
                    )
                seed = int(torch.randint(2**31 - 1, (), generator=as_generator(self.random_state)))
                noise = GaussianMixture.fit(X64, self.noise_components, random_state=seed)
            else:
                noise = Box.fit(X64, margin=self.box_margin)
            return noise.to(X.device, X.dtype)
        noise = self.noise
        _check_frozen(noise, model)
        if tuple(noise.event_shape) != (X.shape[1],):
            raise ValueError(
                f"noise has event shape {tuple(noise.event_shape)} but X has shape "
                f"{shape_str(X)}: the noise must draw points of dimension {X.shape[1]}"
            )
        return noise

    # ------------------------------------------------------------------ using the fit

    def score_samples(self, X, context=None):
        r"""The normalized log density :math:`\log p_\theta(x) = f_\theta(x) - \log Z` per row.

        A finite row too far out for the model's dtype gets :math:`-\infty`, never NaN.

        Shape:
            - X: (N, D); context: (N, C) for a conditional model
            - output: (N,), in the model's dtype; numpy for numpy (or DataFrame) ``X``, a tensor
              for a tensor
        """
        tensor, context = self._inputs(X, context)
        with torch.no_grad():
            values = torch.cat([self.model_.log_prob(x, c) for x, c in _chunks(tensor, context)])
        return like_input(values, X)

    def score(self, X, context=None):
        r"""The mean normalized log-likelihood :math:`\frac1N \sum_i \log p_\theta(x_i)`.

        Shape:
            - X: (N, D); context: (N, C) for a conditional model
            - output: (), a numpy float for numpy ``X``, a tensor for a tensor
        """
        return self.score_samples(X, context).mean()

    def log_ratio(self, X, context=None):
        r"""The learned log density ratio :math:`\log p_\theta(x) - \log q(x)` per row.

        Large values: the point looks like data; small: like noise or like neither. Its negative
        is an out-of-distribution score. Outside the support of the noise (e.g. beyond a "box")
        :math:`q = 0` and the ratio is :math:`+\infty`: prefer a noise with full support for
        anomaly scores. A row so far out that both densities underflow to 0 in the model's dtype
        is as anomalous as a row can be: its ratio is :math:`-\infty` (never NaN).

        Shape:
            - X: (N, D); context: (N, C) for a conditional model
            - output: (N,); numpy for numpy (or DataFrame) ``X``, a tensor for a tensor
        """
        tensor, context = self._inputs(X, context)
        with torch.no_grad():
            parts = []
            for x, c in _chunks(tensor, context):
                log_p = self.model_.log_prob(x, c)
                log_q = self.noise_.log_prob(x).to(log_p.dtype)
                both_zero = torch.isneginf(log_p) & torch.isneginf(log_q)
                parts.append(torch.where(both_zero, -math.inf, log_p - log_q))
        return like_input(torch.cat(parts), X)

    def partition_function(
        self,
        method: str = "importance",
        n_samples: int = 100_000,
        random_state: int | torch.Generator | None = None,
        context=None,
    ) -> PartitionEstimate:
        r"""Estimates :math:`\log Z` independently of the learned one, to cross-check it.

        ``method="importance"`` uses the frozen noise as proposal: with :math:`y_s \sim q` and
        weights :math:`w_s = e^{f_\theta(y_s)} / q(y_s)`,

        .. math:: \log\hat Z = \log \frac1S \sum_{s=1}^S w_s, \qquad
            \operatorname{se}(\log\hat Z) \approx \frac{\operatorname{sd}(w)}{\sqrt S\,\bar w}.

        The estimate is unbiased in :math:`Z` only when :math:`q > 0` wherever
        :math:`f_\theta > -\infty`. A :class:`~nce.density.NormalizationWarning` says when the
        learned :math:`\log Z` is more than 0.1 nats and 3 standard errors from the estimate, or
        when the effective sample size is below 100 (heavy weights: the check is unreliable).
        ``method="exact"`` returns the closed form of models that have one
        (``true_log_partition``).

        Args:
            method: "importance" or "exact".
            n_samples: :math:`S \geq 2`.
            random_state: None, an int or a :class:`torch.Generator`, for the draws.
            context: For a conditional model, (N, C): one estimate per context.

        Shape:
            - output fields: () or (N,) for N contexts
        """
        self._check_fitted()
        if method not in ("importance", "exact"):
            raise ValueError(f"method must be 'importance' or 'exact', got {method!r}")
        check_int("n_samples", n_samples, minimum=2)
        check_random_state(random_state)
        model = self.model_
        param = next(model.parameters())
        if model.conditional:
            if context is None:
                raise ValueError(
                    f"the model is conditional: pass context of shape (N, {model.context_dim})"
                )
            context = as_float_tensor("context", context, ndim=2)
            context = self._check_context(
                model, torch.empty(context.shape[0], self.n_features_in_), context, param
            )
        elif context is not None:
            raise ValueError("context was given but the model is unconditional")
        estimate = estimate_log_partition(
            model, self.noise_, method, n_samples, random_state, context
        )
        warn_if_unnormalized(estimate)
        return estimate

    # ------------------------------------------------------------------ persistence

    def save(self, path, *, metadata: dict | None = None) -> None:
        """Writes the fitted estimator to ``path``, atomically (a temporary file, then a rename).

        The file holds only tensors, numbers, strings, lists and dicts, so :meth:`load` reads it
        with ``torch.load(weights_only=True)``, executing no code. ``metadata`` (a dict of such
        values, e.g. column names) comes back as ``metadata_``.
        """
        save_estimator(self, path, metadata=metadata)

    @classmethod
    def load(
        cls, path, *, model: EnergyModel | None = None, noise: Noise | Distribution | None = None
    ) -> NCEDensity:
        """Reads an estimator written by :meth:`save`, with ``torch.load(weights_only=True)``.

        Built-in models and noises are rebuilt from the file. A custom model (or noise) class is
        not stored as code: pass an instance as ``model=`` (``noise=``) to receive the state.
        """
        return load_estimator(cls, path, model=model, noise=noise)

    # ------------------------------------------------------------------ scikit-learn

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments, by name (scikit-learn's ``get_params``, so that
        ``sklearn.base.clone`` and ``GridSearchCV`` work)."""
        return {name: getattr(self, name) for name in _constructor_names()}

    def set_params(self, **params) -> NCEDensity:
        """Sets constructor arguments by name, checked as the constructor checks them; returns
        ``self``."""
        unknown = sorted(set(params) - set(_constructor_names()))
        if unknown:
            raise ValueError(
                f"invalid parameter(s) {unknown} for NCEDensity; valid: {_constructor_names()}"
            )
        checked = NCEDensity(**{**self.get_params(), **params})
        for name in params:
            setattr(self, name, getattr(checked, name))
        return self

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags (for ``clone`` and ``GridSearchCV``; scikit-learn is
        needed only when they ask): an unsupervised estimator."""
        from sklearn.base import BaseEstimator

        return BaseEstimator.__sklearn_tags__(self)

    # ------------------------------------------------------------------ helpers

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this NCEDensity is not fitted yet: call fit(X) before using it")

    def _inputs(self, X, context) -> tuple[Tensor, Tensor | None]:
        self._check_fitted()
        X = as_float_tensor("X", X, ndim=2)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} columns but the model was fitted on {self.n_features_in_} "
                f"(X has shape {shape_str(X)})"
            )
        param = next(self.model_.parameters())
        X = X.to(param.device, param.dtype)
        return X, self._check_context(self.model_, X, context, param)

    def __repr__(self) -> str:
        model = self.model if isinstance(self.model, str) else type(self.model).__name__ + "(...)"
        noise = self.noise if isinstance(self.noise, str) else type(self.noise).__name__ + "(...)"
        return (
            f"NCEDensity(model={model!r}, noise={noise!r}, noise_ratio={self.noise_ratio}, "
            f"optimizer={self.optimizer!r})"
        )


def _constructor_names() -> list[str]:
    signature = inspect.signature(NCEDensity.__init__)
    return [name for name in signature.parameters if name != "self"]
