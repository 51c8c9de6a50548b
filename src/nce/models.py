r"""Unnormalized (energy-based) models with a learnable log-partition.

An energy model gives an unnormalized log density :math:`f_\theta(x)`; its normalized log density
is :math:`\log p_\theta(x) = f_\theta(x) - \log Z_\theta` with
:math:`Z_\theta = \int e^{f_\theta(x)}\,dx`, which is intractable in general. Noise-contrastive
estimation treats :math:`\log Z` as one more parameter, ``log_z``: the NCE objective is minimized
only where ``log_z`` equals the true log-partition (Gutmann & Hyvärinen 2012, Theorem 1).

A *conditional* model :math:`f_\theta(x \mid c)` has a partition function for each context
:math:`c`, :math:`Z_\theta(c) = \int e^{f_\theta(x \mid c)}\,dx`; NCE then learns
:math:`\log Z_\theta(c)` as a function of the context (:class:`ConditionalMLPEnergy`), since the
objective is minimized by :math:`\log p_\theta(x \mid c) = \log p_d(x \mid c)` for every context
seen in the data.

Built in:

* :class:`GaussianEnergy`: unnormalized Gaussian, closed-form :math:`\log Z` for checks;
* :class:`ICAEnergy`: the Laplacian ICA model of Gutmann & Hyvärinen (2010), closed-form
  :math:`\log Z`;
* :class:`MLPEnergy`: a neural energy for arbitrary data, integrable by construction;
* :class:`ConditionalMLPEnergy`: a neural energy of :math:`x` given a context :math:`c`, with a
  learned :math:`\log Z(c)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nce._mahalanobis import half_squared_norm, scaled_difference
from nce._moments import mean_and_covariance
from nce._validation import check_int, check_tensor, shape_str

__all__ = [
    "ConditionalMLPEnergy",
    "EnergyModel",
    "GaussianEnergy",
    "ICAEnergy",
    "MLPEnergy",
]


class EnergyModel(nn.Module):
    r"""Base class: ``forward(x)`` returns :math:`f_\theta(x)`, shape (N,); ``log_z`` is learned.

    .. math:: \log p_\theta(x) = f_\theta(x) - \log Z, \qquad \log Z = \texttt{log\_z}.

    Subclasses implement ``forward``. A conditional subclass sets ``context_dim`` and takes
    ``forward(x, context)``; its :meth:`log_partition` then depends on the context.

    Shape:
        - x: (N, D)
        - context: (N, C) for a conditional model
        - ``forward(x)``, ``log_prob(x)``: (N,)
        - ``log_partition()``: () for an unconditional model, (N,) for a conditional one

    Args:
        dim: The dimension :math:`D \geq 1` of :math:`x`.
    """

    #: The context dimension :math:`C` of a conditional model, ``None`` for an unconditional one.
    context_dim: int | None = None
    #: The changes of coordinates :meth:`change_coordinates_` can absorb: "affine"
    #: (:math:`x = a + s \odot u`), "scale" (:math:`a = 0` only) or None (none).
    coordinate_change: str | None = None
    #: Whether the parameters hold a fit (set by :class:`~nce.density.NCEDensity` and by
    #: ``load_state_dict``): an estimator does not restart a trained model from the data.
    trained: bool = False

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.log_z = nn.Parameter(torch.zeros(()))

    @property
    def conditional(self) -> bool:
        """Whether the model takes a context (and its log-partition depends on it)."""
        return self.context_dim is not None

    def log_partition(self, context: torch.Tensor | None = None) -> torch.Tensor:
        r"""The learned :math:`\log Z`, shape (); a conditional model's :math:`\log Z(c)`, (N,)."""
        self._check_context(context)
        return self.log_z

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized log density under the learned log-partition, shape (N,)."""
        if self.conditional:
            return self(x, context) - self.log_partition(context)
        self._check_context(context)
        return self(x) - self.log_z

    def init_from_data(self, X: torch.Tensor) -> EnergyModel:
        """Sets a data-dependent starting point (e.g. the data's moments); returns ``self``.

        The base class leaves the parameters as they are.
        """
        return self

    def config(self) -> dict:
        """The constructor's keyword arguments, to rebuild the model (``type(model)(**config)``)."""
        return {"dim": self.dim}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """:meth:`torch.nn.Module.load_state_dict`; the model then counts as ``trained``."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.trained = True
        return result

    def change_coordinates_(self, shift: torch.Tensor, scale: torch.Tensor) -> EnergyModel:
        r"""Re-expresses, in place, a model of :math:`u` as the same density of
        :math:`x = a + s \odot u` (``shift`` :math:`a`, ``scale`` :math:`s > 0`); returns ``self``.

        .. math:: f'(x) = f\big((x - a) / s\big), \qquad
            \log Z' = \log Z + \textstyle\sum_i \log s_i,

        so :math:`\log p'(x) = \log p(u) - \sum_i \log s_i`, a density in :math:`x`'s units. The
        inverse change is ``change_coordinates_(-a / s, 1 / s)``. Models whose
        :attr:`coordinate_change` is None refuse it.

        Shape:
            - shift, scale: (D,)
        """
        if self.coordinate_change is None:
            raise TypeError(f"{type(self).__name__} does not support a change of coordinates")
        if self.coordinate_change == "scale" and bool((shift != 0).any()):
            raise ValueError(f"{type(self).__name__} takes a change of scale only: shift must be 0")
        param = self.log_z
        shift, scale = shift.to(param.device, param.dtype), scale.to(param.device, param.dtype)
        with torch.no_grad():
            self._change_coordinates(shift, scale)
            self.log_z.add_(scale.log().sum())
        return self

    def _change_coordinates(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """The parameters' part of :meth:`change_coordinates_` (``log_z`` is shifted there)."""

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, 2)
        if x.shape[1] != self.dim:
            raise ValueError(
                f"x has {x.shape[1]} columns but the model has dimension {self.dim} "
                f"(x has shape {shape_str(x)})"
            )
        return x

    def _check_context(self, context: torch.Tensor | None, x: torch.Tensor | None = None):
        if not self.conditional:
            if context is not None:
                raise ValueError(f"{type(self).__name__} is unconditional but a context was given")
            return None
        if context is None:
            raise ValueError(
                f"{type(self).__name__} is conditional: a context of shape (N, {self.context_dim})"
                " is needed"
            )
        check_tensor("context", context, 2)
        if context.shape[1] != self.context_dim:
            raise ValueError(
                f"context has {context.shape[1]} columns but the model has context dimension "
                f"{self.context_dim} (context has shape {shape_str(context)})"
            )
        if x is not None and x.shape[0] != context.shape[0]:
            raise ValueError(
                f"batch mismatch: x has shape {shape_str(x)} but context has {shape_str(context)}"
            )
        return context


class _GaussianFactor(EnergyModel):
    r"""The Gaussian parametrization shared by :class:`GaussianEnergy` and :class:`MLPEnergy`.

    A mean :math:`\mu` (``mean``) and the lower Cholesky factor :math:`L` of a precision
    :math:`\Lambda = L L^\top`, stored as its strictly lower part (``lower``) and the log of its
    positive diagonal (``log_diag``). The whitened point :math:`z = L^\top (x - \mu)` gives the
    Gaussian log density :math:`-\tfrac12 \lVert z \rVert^2 - \log Z_L` with

    .. math:: \log Z_L = \tfrac{D}{2}\log 2\pi - \sum_i \log L_{ii}.

    Far points are whitened in a scaled form (:mod:`nce._mahalanobis`): the quadratic term is
    finite or :math:`+\infty`, never NaN, for every finite :math:`x`.
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.lower = nn.Parameter(torch.zeros(dim, dim))

    def cholesky(self) -> torch.Tensor:
        """:math:`L`, the lower Cholesky factor of the precision, shape (D, D)."""
        return torch.tril(self.lower, -1) + torch.diag(torch.exp(self.log_diag))

    def precision(self) -> torch.Tensor:
        r""":math:`\Lambda = L L^\top`, shape (D, D)."""
        chol = self.cholesky()
        return chol @ chol.T

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`z = L^\top (x - \mu)`, row by row: shape (N, D)."""
        return (x - self.mean) @ self.cholesky()

    def _scaled_whiten(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z / s, s)`` with ``s`` (N, 1) a power of two per row, so that ``z / s`` is finite."""
        u, scale = scaled_difference(x, self.mean)
        return u @ self.cholesky(), scale

    def gaussian_log_partition(self) -> torch.Tensor:
        r""":math:`\log Z_L = \tfrac{D}{2}\log 2\pi - \sum_i \log L_{ii}`, shape ()."""
        return 0.5 * self.dim * math.log(2 * math.pi) - self.log_diag.sum()

    coordinate_change = "affine"

    def _change_coordinates(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        r""":math:`\mu' = a + s \odot \mu` and :math:`L' = \operatorname{diag}(1/s) L`, which
        keeps :math:`z = L'^\top (x - \mu')` unchanged (and :math:`L'` lower-triangular)."""
        self.mean.copy_(shift + scale * self.mean)
        self.log_diag.sub_(scale.log())
        self.lower.div_(scale[:, None])

    def _start_gaussian_at(self, X: torch.Tensor) -> None:
        r"""Sets :math:`\mu` and :math:`L` to the data's mean and inverse covariance."""
        mean, covariance = mean_and_covariance("X", self._check_input(X))
        precision = torch.linalg.inv(covariance)
        chol = torch.linalg.cholesky((precision + precision.T) / 2)
        with torch.no_grad():
            self.mean.copy_(mean)
            self.log_diag.copy_(chol.diagonal().log())
            self.lower.copy_(torch.tril(chol, -1))


class GaussianEnergy(_GaussianFactor):
    r"""Unnormalized Gaussian :math:`f(x) = -\tfrac12 \lVert L^\top (x - \mu)\rVert^2`.

    The precision is :math:`\Lambda = L L^\top` with :math:`L` lower-triangular and a positive
    diagonal (stored as its log), so the true log-partition is known in closed form:

    .. math:: \log Z = \tfrac{D}{2}\log 2\pi - \sum_i \log L_{ii}.

    Shape:
        - x: (N, D)
        - output: (N,)

    Args:
        dim: The dimension :math:`D \geq 1`. The model starts at the standard normal.

    References:
        | Noise-contrastive estimation of unnormalized statistical models, with applications to
        | natural image statistics (Gutmann & Hyvärinen, JMLR 13:307, 2012), section 4.1

    Example:
        >>> model = GaussianEnergy(2)
        >>> round(model.true_log_partition().item(), 4)  # standard normal: log 2π
        1.8379
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalized log density :math:`f_\\theta(x)`, (N,), of the rows of x (N, D)."""
        z, scale = self._scaled_whiten(self._check_input(x))
        return -half_squared_norm(z, scale)

    def true_log_partition(self) -> torch.Tensor:
        r"""The exact :math:`\log Z` of the current parameters."""
        return self.gaussian_log_partition()

    def init_from_data(self, X: torch.Tensor) -> GaussianEnergy:
        """Starts at the data's mean and inverse covariance, with ``log_z`` its exact value."""
        self._start_gaussian_at(X)
        with torch.no_grad():
            self.log_z.copy_(self.true_log_partition())
        return self


class ICAEnergy(EnergyModel):
    r"""The Laplacian ICA model of Gutmann & Hyvärinen (2010), with demixing matrix :math:`B`.

    Data :math:`x = A s` mix :math:`D` independent Laplace sources of unit variance,
    :math:`p_s(s) = \tfrac{1}{\sqrt2} e^{-\sqrt2 |s|}`; with rows :math:`b_i` of
    :math:`B = A^{-1}`, the unnormalized log density is

    .. math:: f(x) = -\sqrt2 \sum_{i=1}^D \lvert b_i^\top x \rvert.

    Changing variables :math:`s = B x` (Jacobian :math:`\lvert\det B\rvert`) gives
    :math:`\int e^{f(x)}\,dx = \lvert\det B\rvert^{-1} \prod_i \int e^{-\sqrt2 |s_i|}\,ds_i
    = \lvert\det B\rvert^{-1} (\sqrt2)^D`, so the true log-partition is

    .. math:: \log Z = \tfrac{D}{2}\log 2 - \log\lvert\det B\rvert.

    Shape:
        - x: (N, D)
        - output: (N,)

    Args:
        dim: The dimension :math:`D \geq 1`. The model starts at :math:`B = I`.

    References:
        | Noise-contrastive estimation: A new estimation principle for unnormalized statistical
        | models (Gutmann & Hyvärinen, AISTATS 2010), section 4

    Example:
        >>> model = ICAEnergy(4)
        >>> round(model.true_log_partition().item(), 4)  # B = I: 2 log 2
        1.3863
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        self.demixing = nn.Parameter(torch.eye(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalized log density :math:`f_\\theta(x)`, (N,), of the rows of x (N, D)."""
        u, scale = scaled_difference(self._check_input(x), x.new_zeros(()))
        return -math.sqrt(2) * (u @ self.demixing.T).abs().sum(1) * scale.squeeze(-1)

    coordinate_change = "scale"

    def _change_coordinates(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """:math:`B' = B \\operatorname{diag}(1/s)`, so that :math:`B' x = B u`."""
        self.demixing.div_(scale)

    def true_log_partition(self) -> torch.Tensor:
        """The exact :math:`\\log Z = (D/2) \\log 2 - \\log|\\det B|` of the current :math:`B`."""
        return 0.5 * self.dim * math.log(2) - torch.linalg.slogdet(self.demixing)[1]

    def init_from_data(self, X: torch.Tensor) -> ICAEnergy:
        r"""Starts at the whitening matrix :math:`B = \Sigma^{-1/2}` of the data (the sources
        have unit variance, so :math:`B \Sigma B^\top = I` holds at the truth too), with
        ``log_z`` its exact value."""
        _, covariance = mean_and_covariance("X", self._check_input(X))
        values, vectors = torch.linalg.eigh(covariance)
        with torch.no_grad():
            self.demixing.copy_(vectors @ torch.diag(values.rsqrt()) @ vectors.T)
            self.log_z.copy_(self.true_log_partition())
        return self


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given sizes with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _check_hidden(hidden) -> tuple[int, ...]:
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, (tuple, list)) or not hidden:
        raise TypeError(f"hidden must be an int or a non-empty tuple of ints, got {hidden!r}")
    for width in hidden:
        check_int("hidden", width, minimum=1)
    return tuple(hidden)


class MLPEnergy(_GaussianFactor):
    r"""A neural energy: a bounded network on top of a learnable Gaussian.

    With whitened coordinates :math:`z = L^\top (x - \mu)` (:math:`L` lower-triangular with a
    positive diagonal, as in :class:`GaussianEnergy`),

    .. math:: f(x) = h_\phi(z) - \tfrac12 \lVert z \rVert^2,

    where :math:`h_\phi` is a multilayer perceptron with tanh hidden units. Its output is a linear
    map of bounded units, so :math:`|h_\phi| \leq H` and
    :math:`Z \leq e^{H} (2\pi)^{D/2} / \det L < \infty`: every parameter value is a proper,
    normalizable model. The last layer starts at zero, so an untrained model is the Gaussian
    :math:`\mathcal{N}(\mu, (L L^\top)^{-1})`.

    Shape:
        - x: (N, D)
        - output: (N,)

    Args:
        dim: The dimension :math:`D \geq 1`.
        hidden: The widths of the hidden layers, an int or a tuple of ints.

    References:
        | Noise-contrastive estimation of unnormalized statistical models, with applications to
        | natural image statistics (Gutmann & Hyvärinen, JMLR 13:307, 2012)

        | Flow contrastive estimation of energy-based models (Gao et al., CVPR 2020)
        | https://arxiv.org/abs/1912.00589

    Example:
        >>> model = MLPEnergy(2, hidden=(32, 32))
        >>> model(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    def __init__(self, dim: int, hidden: int | Sequence[int] = (64, 64)):
        super().__init__(dim)
        self.hidden = _check_hidden(hidden)
        self.net = _mlp((dim, *self.hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _net_input(self, z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        r"""The whitened point :math:`z` for the network, clipped where :math:`\lVert z \rVert^2`
        overflows anyway (there :math:`f = -\infty` whatever :math:`h_\phi` says)."""
        bound = torch.finfo(z.dtype).max ** 0.5
        return (z * scale).clamp(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalized log density :math:`f_\\theta(x)`, (N,), of the rows of x (N, D)."""
        z, scale = self._scaled_whiten(self._check_input(x))
        return self.net(self._net_input(z, scale)).squeeze(-1) - half_squared_norm(z, scale)

    def init_from_data(self, X: torch.Tensor) -> MLPEnergy:
        """Starts the Gaussian part at the data's mean and inverse covariance, and ``log_z`` at
        the Gaussian's log-partition plus the network's current mean output."""
        self._start_gaussian_at(X)
        with torch.no_grad():
            offset = self.net(self.whiten(X.to(self.mean.dtype))).mean()
            self.log_z.copy_(self.gaussian_log_partition() + offset)
        return self

    def config(self) -> dict:
        return {"dim": self.dim, "hidden": list(self.hidden)}


class ConditionalMLPEnergy(MLPEnergy):
    r"""A neural energy of :math:`x` given a context :math:`c`, with a learned :math:`\log Z(c)`.

    .. math:: f(x \mid c) = h_\phi(z, c) - \tfrac12 \lVert z \rVert^2, \qquad
              z = L^\top (x - \mu), \qquad
              \log Z(c) = \texttt{log\_z} + g_\psi(c),

    with :math:`h_\phi` (bounded, tanh hidden units) and :math:`g_\psi` multilayer perceptrons.
    NCE fits :math:`g_\psi` with the rest: the objective is minimized where
    :math:`f(x \mid c) - \log Z(c)` is the true conditional log density for every context.

    Shape:
        - x: (N, D)
        - context: (N, C)
        - output, ``log_partition(context)``: (N,)

    Args:
        dim: The dimension :math:`D \geq 1` of :math:`x`.
        context_dim: The dimension :math:`C \geq 1` of the context.
        hidden: The widths of the hidden layers of both networks.

    References:
        Ma & Collins 2018, Noise Contrastive Estimation and Negative Sampling for Conditional
        Models: Consistency and Statistical Efficiency, arXiv:1809.01812 (a normalizer per
        context); Mnih & Teh 2012, arXiv:1206.6426.

    Example:
        >>> model = ConditionalMLPEnergy(2, context_dim=3, hidden=16)
        >>> x, c = torch.randn(5, 2), torch.randn(5, 3)
        >>> model.log_prob(x, c).shape, model.log_partition(c).shape
        (torch.Size([5]), torch.Size([5]))
    """

    def __init__(self, dim: int, context_dim: int, hidden: int | Sequence[int] = (64, 64)):
        super().__init__(dim, hidden)
        self.context_dim = check_int("context_dim", context_dim, minimum=1)
        self.net = _mlp((dim + self.context_dim, *self.hidden, 1))
        self.log_z_net = _mlp((self.context_dim, *self.hidden, 1))
        for net in (self.net, self.log_z_net):
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The unnormalized :math:`f(x \\mid c)`, (N,), of x (N, D) given context (N, C)."""
        x = self._check_input(x)
        context = self._check_context(context, x)
        z, scale = self._scaled_whiten(x)
        inputs = torch.cat([self._net_input(z, scale), context.to(z.dtype)], 1)
        return self.net(inputs).squeeze(-1) - half_squared_norm(z, scale)

    def log_partition(self, context: torch.Tensor | None = None) -> torch.Tensor:
        context = self._check_context(context)
        return self.log_z + self.log_z_net(context.to(self.log_z.dtype)).squeeze(-1)

    def init_from_data(self, X: torch.Tensor) -> ConditionalMLPEnergy:
        """Starts the Gaussian part at the data's moments and ``log_z`` at its log-partition."""
        self._start_gaussian_at(X)
        with torch.no_grad():
            self.log_z.copy_(self.gaussian_log_partition())
        return self

    def config(self) -> dict:
        return {"dim": self.dim, "context_dim": self.context_dim, "hidden": list(self.hidden)}
