r"""Critics: neural networks :math:`f(x, y)` scoring every pair of a batch at once.

A critic maps a batch of N inputs x and M inputs y to the (N, M) matrix
:math:`s_{ij} = f(x_i, y_j)`; with M = N and paired rows, the diagonal holds the samples of the
joint :math:`p(x, y)` and the rest samples of :math:`p(x)p(y)`. Every bound in :mod:`nce.mi` is
maximized by a log density ratio :math:`\log p(y|x)/p(y)` (plus a constant, or a function of x
for InfoNCE), so a critic must be able to represent it.

* Separable: :math:`f(x, y) = g(x)^\top h(y)` — two encoders and one matrix product, O(N) network
  evaluations for N² scores, the critic of contrastive learning. Poole et al. (2019) find it as
  accurate as the concatenated critic on their benchmarks.
* Concatenated: :math:`f(x, y) = \mathrm{MLP}([x, y])` — any function, at N² network evaluations.
* Gaussian + separable (the default of :func:`~nce.mi.estimate_mi`,
  :mod:`nce.mi.gaussian_critic`): the closed-form log-ratio of the data's canonical pairs, fitted
  by CCA, plus a separable critic that starts at zero and learns the rest.

Any ``torch.nn.Module`` with ``forward(x, y) -> (N, M)`` can take their place.
"""

from __future__ import annotations

import torch
from torch import nn

from nce._validation import check_int

CRITICS = ("gaussian-separable", "separable", "concat")


class MLP(nn.Module):
    r"""A ReLU network with a linear skip path: :math:`\mathrm{net}(x) + W x`.

    ``layers`` hidden ReLU layers of width ``hidden``, then a linear output layer, plus a linear
    map of the input. The skip path gives the critic its linear (for the separable critic,
    bilinear :math:`x^\top W_g^\top W_h y`) part from the first step, the part that carries a
    Gaussian dependence; the network learns the rest.

    Shape:
        - input: (..., in_features)
        - output: (..., out_features)
    """

    def __init__(self, in_features: int, out_features: int, *, hidden: int = 256, layers: int = 2):
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("out_features", out_features, minimum=1)
        check_int("hidden", hidden, minimum=1)
        check_int("layers", layers, minimum=0)
        modules: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            modules += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        modules.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*modules)
        self.skip = nn.Linear(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.skip(x)


class SeparableCritic(nn.Module):
    r"""Separable critic :math:`f(x, y) = g(x)^\top h(y) / \sqrt{K} + b` with MLP encoders g, h.

    K is the embedding dimension; dividing by :math:`\sqrt{K}` starts the scores near unit scale
    (:math:`e^{f}` enters NWJ and DV), and the scalar b (InfoNCE and DV ignore it) lets NWJ-type
    bounds learn their offset directly.

    Args:
        x_features: dimension of x.
        y_features: dimension of y.
        hidden: width of the hidden layers.
        layers: number of hidden layers of each encoder.
        embed_dim: dimension of :math:`g(x)` and :math:`h(y)`.

    Shape:
        - x: (N, Dx), y: (M, Dy)
        - output: (N, M), :math:`s_{ij} = g(x_i)^\top h(y_j) / \sqrt{K} + b`

    References:
        Poole et al. (2019), arXiv:1905.06922, Sec. 4 (separable critic).

    Example:
        >>> import torch
        >>> from nce.mi import SeparableCritic
        >>> SeparableCritic(3, 2)(torch.randn(5, 3), torch.randn(5, 2)).shape
        torch.Size([5, 5])
    """

    def __init__(
        self,
        x_features: int,
        y_features: int,
        *,
        hidden: int = 256,
        layers: int = 2,
        embed_dim: int = 32,
    ):
        super().__init__()
        check_int("embed_dim", embed_dim, minimum=1)
        self.g = MLP(x_features, embed_dim, hidden=hidden, layers=layers)
        self.h = MLP(y_features, embed_dim, hidden=hidden, layers=layers)
        self.bias = nn.Parameter(torch.zeros(()))
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The score matrix :math:`s_{ij} = f(x_i, y_j)`, (N, M), of x (N, Dx) and y (M, Dy)."""
        return torch.addmm(self.bias, self.g(x), self.h(y).T, alpha=self.embed_dim**-0.5)


class ConcatCritic(nn.Module):
    r"""Concatenated critic :math:`f(x, y) = \mathrm{MLP}([x, y])`, evaluated on all N·M pairs.

    Args:
        x_features: dimension of x.
        y_features: dimension of y.
        hidden: width of the hidden layers.
        layers: number of hidden layers.

    Shape:
        - x: (N, Dx), y: (M, Dy)
        - output: (N, M), :math:`s_{ij} = \mathrm{MLP}([x_i, y_j])`

    References:
        Belghazi et al. (2018), arXiv:1801.04062. Poole et al. (2019), arXiv:1905.06922.

    Example:
        >>> import torch
        >>> from nce.mi import ConcatCritic
        >>> ConcatCritic(3, 2)(torch.randn(5, 3), torch.randn(4, 2)).shape
        torch.Size([5, 4])
    """

    def __init__(self, x_features: int, y_features: int, *, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.net = MLP(x_features + y_features, 1, hidden=hidden, layers=layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The score matrix :math:`s_{ij} = f(x_i, y_j)`, (N, M), of x (N, Dx) and y (M, Dy)."""
        n, m = x.shape[0], y.shape[0]
        pairs = torch.cat(
            [x.unsqueeze(1).expand(n, m, x.shape[1]), y.unsqueeze(0).expand(n, m, y.shape[1])], -1
        )
        return self.net(pairs).squeeze(-1)


def build_critic(
    critic: str | nn.Module, x_features: int, y_features: int, *, hidden: int, layers: int,
    embed_dim: int,
) -> nn.Module:  # fmt: skip
    """The critic named by ``critic`` ("gaussian-separable" | "separable" | "concat") for inputs
    of ``x_features`` and ``y_features`` columns, or ``critic`` itself when it is a module (a
    "gaussian-separable" critic still needs its Gaussian part fitted, ``.initialize(x, y)``)."""
    if isinstance(critic, nn.Module):
        return critic
    if critic == "gaussian-separable":
        from nce.mi.gaussian_critic import GaussianSeparableCritic

        return GaussianSeparableCritic(
            x_features, y_features, hidden=hidden, layers=layers, embed_dim=embed_dim
        )
    if critic == "separable":
        return SeparableCritic(
            x_features, y_features, hidden=hidden, layers=layers, embed_dim=embed_dim
        )
    return ConcatCritic(x_features, y_features, hidden=hidden, layers=layers)
