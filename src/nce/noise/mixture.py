r"""Gaussian mixture noise, fitted by expectation-maximization.

A mixture of :math:`C` Gaussians with weights :math:`\pi_c` has

.. math:: \log q(x) = \log \sum_{c=1}^C \pi_c \, \mathcal{N}(x; \mu_c, \Sigma_c)
    = \operatorname{logsumexp}_c \big( \log \pi_c + \log \mathcal{N}(x; \mu_c, \Sigma_c) \big),

and draws by picking :math:`c \sim \operatorname{Categorical}(\pi)` then
:math:`y = \mu_c + L_c \epsilon`. Noise closer to the data makes NCE's classification harder and
its estimate more efficient (Gutmann & Hyvarinen, 2012): for multimodal data a mixture fitted by EM
(scikit-learn's ``GaussianMixture``) is much closer than a single Gaussian.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nce._validation import check_compatible, check_int, check_tensor, shape_str
from nce.noise._checks import (
    as_data,
    as_sample_shape,
    check_fit_dtype,
    check_generator,
    check_points,
)
from nce.noise.base import Noise
from nce.noise.gaussian import _cholesky, _log_normal

__all__ = ["GaussianMixture"]


class GaussianMixture(Noise):
    r"""Gaussian mixture noise :math:`q(x) = \sum_c \pi_c \mathcal{N}(x; \mu_c, \Sigma_c)`.

    Attributes:
        weights: The mixing weights :math:`\pi`, normalized to sum to one, (C,).
        means: The component means :math:`\mu_c`, (C, D).
        covariances: The component covariances :math:`\Sigma_c`, (C, D, D).
        scale_tril: Their lower Cholesky factors :math:`L_c`, (C, D, D).

    Shape:
        * ``weights``: (C,), ``means``: (C, D), ``covariances``: (C, D, D).
        * ``sample(shape)``: ``(*shape, D)``.
        * ``log_prob(x)``: ``x`` is ``(*, D)``, the result ``(*)``.

    Args:
        weights: Non-negative mixing weights, not all zero; they are normalized.
        means: The component means.
        covariances: Symmetric positive definite covariances, one per component.

    References:
        | Maximum likelihood from incomplete data via the EM algorithm
        | (Dempster, Laird & Rubin, 1977) https://doi.org/10.1111/j.2517-6161.1977.tb01600.x

        | Noise-contrastive estimation of unnormalized statistical models
        | (Gutmann & Hyvarinen, 2012) https://jmlr.org/papers/v13/gutmann12a.html

    Example:
        >>> noise = GaussianMixture(
        ...     torch.tensor([0.5, 0.5]),
        ...     torch.tensor([[-2.0], [2.0]]),
        ...     torch.ones(2, 1, 1),
        ... )
        >>> noise.log_prob(torch.tensor([[-2.0], [0.0]]))
        tensor([-1.6118, -2.9189])
        >>> noise.sample(100, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([100, 1])
    """

    weights: Tensor
    means: Tensor
    covariances: Tensor
    scale_tril: Tensor

    def __init__(self, weights: Tensor, means: Tensor, covariances: Tensor):
        super().__init__()
        check_tensor("weights", weights, ndim=1)
        check_tensor("means", means, ndim=2)
        check_tensor("covariances", covariances, ndim=3)
        components, dim = means.shape
        if weights.shape[0] != components:
            raise ValueError(
                f"weights has shape {shape_str(weights)} but means has {shape_str(means)}: "
                "one weight per component is needed"
            )
        if covariances.shape != (components, dim, dim):
            raise ValueError(
                f"covariances must have shape ({components}, {dim}, {dim}) to match means of "
                f"shape {shape_str(means)}, got {shape_str(covariances)}"
            )
        check_compatible(weights=weights, means=means, covariances=covariances)
        negative = int((weights < 0).sum())
        if negative:
            raise ValueError(f"weights contains {negative} negative value(s)")
        if not bool((weights > 0).any()):
            raise ValueError("weights are all zero; one must be > 0")
        covariances = covariances.detach()
        self.register_buffer("weights", weights.detach() / weights.detach().sum())
        self.register_buffer("means", means.detach().clone())
        self.register_buffer("covariances", (covariances + covariances.mT) / 2)
        self.register_buffer("scale_tril", _cholesky("covariances", covariances))

    @classmethod
    def fit(cls, X, n_components: int, random_state=None) -> GaussianMixture:
        r"""Fits a mixture of ``n_components`` full-covariance Gaussians to ``X`` by EM.

        The fit is scikit-learn's ``GaussianMixture(covariance_type="full")``, run in float64;
        its ``reg_covar``, added to every covariance's diagonal, is scikit-learn's :math:`10^{-6}`
        or, if larger, :math:`D\,\epsilon` (the machine epsilon of ``X``'s dtype) times the mean
        variance, so that the covariances stay positive definite in ``X``'s dtype; its
        ``weights_``, ``means_`` and ``covariances_`` are copied into buffers of ``X``'s dtype
        and device, so ``log_prob`` equals its ``score_samples``.

        Args:
            X: The data, an (N, D) floating tensor or numpy array, finite. Tensors keep their
                dtype and device; float32 arrays give float32 noise, other arrays float64.
            n_components: The number of components :math:`C`, an int in :math:`[1, N]`.
            random_state: Seeds EM's initialization: None, an int or a
                ``numpy.random.RandomState``, as in scikit-learn.

        Example:
            >>> X = torch.cat([torch.randn(100, 2) - 3, torch.randn(100, 2) + 3])
            >>> GaussianMixture.fit(X, n_components=2, random_state=0).means.shape
            torch.Size([2, 2])
        """
        from sklearn.mixture import GaussianMixture as EM

        X = as_data("X", X, min_rows=1, purpose="GaussianMixture.fit")
        check_int("n_components", n_components, minimum=1)
        if n_components > X.shape[0]:
            raise ValueError(
                f"n_components must be <= the number of rows of X ({X.shape[0]}), "
                f"got {n_components}"
            )
        check_fit_dtype("X", X, "GaussianMixture.fit")
        X64 = X.detach().to("cpu", torch.float64).numpy()
        mean_variance = float(X64.var(axis=0).mean()) if X.shape[0] > 1 else 0.0
        reg_covar = max(1e-6, X.shape[1] * torch.finfo(X.dtype).eps * mean_variance)
        em = EM(
            n_components, covariance_type="full", reg_covar=reg_covar, random_state=random_state
        )
        em.fit(X64)
        return cls(
            *(
                torch.as_tensor(array, dtype=X.dtype, device=X.device)
                for array in (em.weights_, em.means_, em.covariances_)
            )
        )

    @property
    def event_shape(self) -> torch.Size:
        return self.means.shape[1:]

    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        shape = as_sample_shape(shape)
        check_generator(generator)
        count = shape.numel()
        component = (
            torch.multinomial(self.weights, count, replacement=True, generator=generator)
            if count
            else torch.zeros(0, dtype=torch.long, device=self.weights.device)
        )
        eps = torch.randn(
            (count, self.means.shape[1], 1),
            generator=generator,
            dtype=self.means.dtype,
            device=self.means.device,
        )
        y = self.means[component] + (self.scale_tril[component] @ eps).squeeze(-1)
        return y.reshape(shape + self.event_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        check_points(x, self.means.shape[1], self.means.device)
        dtype = torch.promote_types(x.dtype, self.means.dtype)
        log_components = _log_normal(x.to(dtype), self.means.to(dtype), self.scale_tril.to(dtype))
        return torch.logsumexp(self.weights.to(dtype).log() + log_components, dim=-1)

    def extra_repr(self) -> str:
        return f"n_components={self.means.shape[0]}, dim={self.means.shape[1]}"
