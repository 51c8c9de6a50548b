r"""Momentum (exponential moving average) copy of a network: MoCo's key encoder.

MoCo (He et al. 2020, arXiv:1911.05722) encodes its queued negatives with a key encoder whose
weights follow the query encoder slowly,

.. math:: \theta_k \leftarrow m\,\theta_k + (1 - m)\,\theta_q, \qquad m \approx 0.99,

so keys encoded a few hundred steps apart stay comparable; a key encoder copied from the query
encoder each step would make old keys stale, and one trained by back-propagation through the
queue is not feasible. The key encoder receives no gradient. Buffers (batch-norm statistics) are
copied as they are.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nce._validation import check_in_range

__all__ = ["MomentumEncoder"]


class MomentumEncoder(nn.Module):
    r"""A frozen copy of ``online`` updated by :math:`\theta \leftarrow m\theta + (1-m)\theta_q`.

    Args:
        online: the network to follow (its weights are copied at construction).
        momentum: :math:`m \in [0, 1]`; 0 copies the online weights at every update.

    Shape:
        - x: whatever ``online`` takes, e.g. (N, D); output: what ``online`` returns, e.g. (N, E)

    References:
        He et al. 2020, Momentum Contrast (MoCo), arXiv:1911.05722.

    Example:
        >>> online = torch.nn.Linear(3, 2)
        >>> target = MomentumEncoder(online, momentum=0.9)
        >>> target.update(online)
        >>> target(torch.rand(4, 3)).shape
        torch.Size([4, 2])
    """

    def __init__(self, online: nn.Module, momentum: float = 0.99):
        super().__init__()
        check_in_range("momentum", momentum, 0.0, 1.0, closed_high=True)
        self.momentum = float(momentum)
        self.network = copy.deepcopy(online)
        for p in self.network.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        """One exponential-moving-average step towards ``online``'s weights."""
        for p_k, p_q in zip(self.network.parameters(), online.parameters(), strict=True):
            p_k.mul_(self.momentum).add_(p_q.detach(), alpha=1 - self.momentum)
        for b_k, b_q in zip(self.network.buffers(), online.buffers(), strict=True):
            b_k.copy_(b_q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The key encoder's output for x (shapes as ``online``'s), without a gradient."""
        with torch.no_grad():
            return self.network(x)
