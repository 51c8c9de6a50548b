r"""Gaussian noise, fitted to the data's mean and covariance.

The multivariate normal :math:`\mathcal{N}(\mu, \Sigma)` on :math:`R^D`, with Cholesky factor
:math:`\Sigma = L L^\top`, has

.. math:: \log q(x) = -\frac{1}{2} \Big( D \log 2\pi + 2 \sum_{d=1}^D \log L_{dd}
    + \lVert L^{-1} (x - \mu) \rVert^2 \Big),

and draws :math:`y = \mu + L \epsilon` with :math:`\epsilon \sim \mathcal{N}(0, I)`. Gutmann &
Hyvarinen (2012) recommend noise close to the data, and a Gaussian with the data's mean and
covariance is their default: the classification task is then neither trivial nor hopeless.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nce._mahalanobis import half_squared_norm, scaled_difference
from nce._moments import mean_and_covariance
from nce._validation import check_compatible, check_tensor, shape_str
from nce.noise._checks import (
    as_data,
    as_sample_shape,
    check_fit_dtype,
    check_generator,
    check_points,
)
from nce.noise.base import Noise

__all__ = ["Gaussian"]


class Gaussian(Noise):
    r"""Multivariate normal noise :math:`q = \mathcal{N}(\mu, \Sigma)`.

    .. math:: \log q(x) = -\frac{1}{2} \Big( D \log 2\pi + \log \det \Sigma
        + (x - \mu)^\top \Sigma^{-1} (x - \mu) \Big)

    Attributes:
        mean: The mean :math:`\mu`, (D,).
        covariance: The covariance :math:`\Sigma`, (D, D).
        scale_tril: Its lower Cholesky factor :math:`L`, (D, D).

    Shape:
        * ``mean``: (D,), ``covariance``: (D, D).
        * ``sample(shape)``: ``(*shape, D)``.
        * ``log_prob(x)``: ``x`` is ``(*, D)``, the result ``(*)``.

    Args:
        mean: The mean :math:`\mu`, a finite floating tensor.
        covariance: A symmetric positive definite matrix of the same dtype and device.

    References:
        | Noise-contrastive estimation of unnormalized statistical models
        | (Gutmann & Hyvarinen, 2012) https://jmlr.org/papers/v13/gutmann12a.html

    Example:
        >>> noise = Gaussian(torch.zeros(2), torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
        >>> noise.log_prob(torch.zeros(3, 2))
        tensor([-2.1177, -2.1177, -2.1177])
        >>> noise.sample((4, 5), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 5, 2])
    """

    mean: Tensor
    covariance: Tensor
    scale_tril: Tensor

    def __init__(self, mean: Tensor, covariance: Tensor):
        super().__init__()
        check_tensor("mean", mean, ndim=1)
        check_tensor("covariance", covariance, ndim=2)
        dim = mean.shape[0]
        if covariance.shape != (dim, dim):
            raise ValueError(
                f"covariance must have shape ({dim}, {dim}) to match mean of shape "
                f"{shape_str(mean)}, got {shape_str(covariance)}"
            )
        check_compatible(mean=mean, covariance=covariance)
        covariance = covariance.detach()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("covariance", (covariance + covariance.mT) / 2)
        self.register_buffer("scale_tril", _cholesky("covariance", covariance))

    @classmethod
    def fit(cls, X) -> Gaussian:
        r"""The Gaussian with the data's mean and unbiased covariance, plus a tiny ridge.

        .. math:: \mu = \frac{1}{N} \sum_n x_n, \quad
            \Sigma = \frac{1}{N - 1} \sum_n (x_n - \mu)(x_n - \mu)^\top
            + r \frac{\operatorname{tr} S}{D} I,

        where :math:`S` is the first term and :math:`r = \max(10^{-6}, D\,\epsilon)`, with
        :math:`\epsilon` the machine epsilon of ``X``'s dtype: the ridge keeps :math:`\Sigma`
        positive definite in that dtype for collinear columns (:mod:`nce._moments`). The moments
        are accumulated in float64; half-precision ``X`` is refused (no Cholesky factorization),
        and so is ``X`` whose covariance overflows float64 or its own dtype (rescale it).

        Args:
            X: The data, an (N, D) floating tensor or numpy array with :math:`N \geq 2`, finite
                and not constant in every column. Tensors keep their dtype and device; float32
                arrays give float32 noise, other arrays float64.

        Example:
            >>> X = torch.tensor([[0.0, 1.0], [2.0, 1.0], [1.0, 4.0]])
            >>> Gaussian.fit(X).mean
            tensor([1., 2.])
        """
        X = as_data("X", X, min_rows=2, purpose="Gaussian.fit")
        check_fit_dtype("X", X, "Gaussian.fit")
        mean, covariance = mean_and_covariance("X", X)
        return cls(mean.to(X.dtype), covariance.to(X.dtype))

    @property
    def event_shape(self) -> torch.Size:
        return self.mean.shape

    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        shape = as_sample_shape(shape)
        check_generator(generator)
        eps = torch.randn(
            shape + self.mean.shape,
            generator=generator,
            dtype=self.mean.dtype,
            device=self.mean.device,
        )
        return self.mean + eps @ self.scale_tril.mT

    def log_prob(self, x: Tensor) -> Tensor:
        check_points(x, self.mean.shape[0], self.mean.device)
        dtype = torch.promote_types(x.dtype, self.mean.dtype)
        mean, scale_tril = self.mean.to(dtype).unsqueeze(0), self.scale_tril.to(dtype).unsqueeze(0)
        return _log_normal(x.to(dtype), mean, scale_tril).squeeze(-1)

    def extra_repr(self) -> str:
        return f"dim={self.mean.shape[0]}"


def _cholesky(name: str, covariance: Tensor) -> Tensor:
    """The lower Cholesky factor of a batch of symmetric positive definite matrices."""
    asymmetry = float((covariance - covariance.mT).abs().max())
    tolerance = torch.finfo(covariance.dtype).eps ** 0.5 * float(covariance.abs().max())
    if asymmetry > tolerance:
        raise ValueError(f"{name} is not symmetric: max |C - C^T| = {asymmetry:.3g}")
    scale_tril, info = torch.linalg.cholesky_ex((covariance + covariance.mT) / 2)
    failed = info.flatten().nonzero()
    if failed.numel():
        where = "" if covariance.dim() == 2 else f"[{int(failed[0, 0])}]"
        raise ValueError(f"{name}{where} is not positive definite")
    return scale_tril


def _log_normal(x: Tensor, mean: Tensor, scale_tril: Tensor) -> Tensor:
    r"""Log densities of the components :math:`\mathcal{N}(\mu_c, L_c L_c^\top)` at ``x``.

    Shape: ``x`` (*, D), ``mean`` (C, D), ``scale_tril`` (C, D, D); the result is (*, C).
    """
    dim = x.shape[-1]
    diff, scale = scaled_difference(x.reshape(1, -1, dim), mean.unsqueeze(1))
    z = torch.linalg.solve_triangular(scale_tril, diff.mT, upper=False).mT
    half_log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(dim=-1, keepdim=True)
    log_density = -0.5 * dim * math.log(2 * math.pi) - half_squared_norm(z, scale) - half_log_det
    return log_density.mT.reshape(*x.shape[:-1], mean.shape[0])
