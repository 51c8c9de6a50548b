r"""Geometry of a representation: alignment, uniformity, effective rank and sparsity.

Wang & Isola (2020, arXiv:2005.10242) split what the contrastive loss asks of normalized
embeddings :math:`\hat z = z/\lVert z\rVert` into two properties:

.. math:: \mathcal L_{align} = \mathbb E_{(x, x^+)}\lVert \hat z - \hat z^+\rVert^2, \qquad
          \mathcal L_{unif} = \log \mathbb E_{x, y}\, e^{-2\lVert \hat z_x - \hat z_y\rVert^2},

positives close (low alignment) and the whole set spread over the sphere (low uniformity). The
temperature trades one for the other.

The **effective rank** (Roy & Vetterli 2007) of features :math:`H` (N, F) is
:math:`\exp(-\sum_i p_i \log p_i)` with :math:`p_i = \sigma_i / \sum_j \sigma_j` the normalized
singular values of the centred matrix: how many directions the features really use. **Sparsity**
is the fraction of entries whose magnitude is below a threshold, after scaling each feature to
unit maximum magnitude: specialized features fire for few inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nce._validation import check_in_range, check_positive, check_same_shape, check_tensor

__all__ = ["alignment", "effective_rank", "sparsity", "uniformity"]


def alignment(z1: torch.Tensor, z2: torch.Tensor, *, alpha: float = 2.0) -> torch.Tensor:
    r"""Alignment loss :math:`\frac1N\sum_i \lVert \hat z_i - \hat z'_i\rVert^\alpha` of positives.

    Shape:
        - z1, z2: (N, D) embeddings of the two views; output: ()

    References:
        Wang & Isola 2020, Understanding Contrastive Representation Learning through Alignment
        and Uniformity on the Hypersphere, arXiv:2005.10242.

    Example:
        >>> z = torch.randn(8, 4)
        >>> float(alignment(z, 2 * z))
        0.0
    """
    check_tensor("z1", z1, 2)
    check_tensor("z2", z2, 2)
    check_same_shape(z1=z1, z2=z2)
    check_positive("alpha", alpha)
    return (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, *, t: float = 2.0) -> torch.Tensor:
    r"""Uniformity loss of a set of embeddings.

    .. math:: \mathcal L_{unif} = \log \frac{2}{N(N-1)}\sum_{i<j}
              e^{-t\lVert \hat z_i - \hat z_j\rVert^2}

    Shape:
        - z: (N, D), N >= 2; output: ()

    References:
        Wang & Isola 2020, arXiv:2005.10242.

    Example:
        >>> z = torch.eye(3)
        >>> round(float(uniformity(z)), 4)
        -4.0
    """
    check_tensor("z", z, 2)
    check_positive("t", t)
    if z.shape[0] < 2:
        raise ValueError(f"uniformity needs at least 2 embeddings, got z of shape {tuple(z.shape)}")
    d2 = torch.pdist(F.normalize(z, dim=1)).pow(2)
    return torch.logsumexp(-t * d2, 0) - torch.log(torch.tensor(float(d2.numel()), dtype=z.dtype))


def effective_rank(h: torch.Tensor) -> torch.Tensor:
    r"""Effective rank :math:`\exp H(p)`, :math:`p = \sigma/\sum\sigma` of the centred features.

    Shape:
        - h: (N, F); output: () in [1, min(N, F)]

    References:
        Roy & Vetterli 2007, The effective rank: a measure of effective dimensionality (EUSIPCO).

    Example:
        >>> h = torch.randn(100, 3) @ torch.diag(torch.tensor([1.0, 1.0, 0.0]))
        >>> 1.5 < float(effective_rank(h)) <= 2.0
        True
    """
    check_tensor("h", h, 2)
    s = torch.linalg.svdvals((h - h.mean(0)).double())
    p = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny)
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).to(h.dtype)


def sparsity(h: torch.Tensor, *, threshold: float = 0.05) -> torch.Tensor:
    r"""Fraction of entries with :math:`|h_{ij}| < \epsilon \max_i |h_{ij}|` (per-feature scale).

    Shape:
        - h: (N, F); output: () in [0, 1]

    Example:
        >>> float(sparsity(torch.tensor([[1.0, 0.0], [0.0, 2.0]])))
        0.5
    """
    check_tensor("h", h, 2)
    check_in_range("threshold", threshold, 0.0, 1.0)
    scale = h.abs().amax(0).clamp_min(torch.finfo(h.dtype).tiny)
    return ((h.abs() / scale) < threshold).to(h.dtype).mean()
