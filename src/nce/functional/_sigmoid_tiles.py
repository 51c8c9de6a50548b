r"""Tiled pairwise sigmoid cross-entropy: the sweeps behind :func:`nce.pairwise_nce`.

For queries :math:`A = s\hat Q` (n, D), a block of keys :math:`B` (m, D) and a bias :math:`b`, the
logits are :math:`S = A B^\top + b` and each pair has the label :math:`z_{ij} = +1` (positive) or
:math:`-1`. With :math:`u = -z \odot S`,

.. math:: \ell_i = \sum_j \operatorname{softplus}(u_{ij}) = -\sum_j \log\sigma(z_{ij} S_{ij}),
          \qquad \frac{\partial \ell_i}{\partial S_{ij}} = -z_{ij}\,\sigma(u_{ij}).

The sweeps walk over tiles of at most ``chunk`` key columns, so that memory is O((n + m)·D +
n·chunk) and the (n, m) matrix is never held. With upstream weights :math:`g` and
:math:`G_{ij} = -g_i z_{ij} \sigma(u_{ij})`, the gradients are :math:`G B` (queries),
:math:`G^\top A` (keys) and :math:`\sum_{ij} G_{ij}` (bias): three matrix products per tile with
the one that computes :math:`S`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nce.functional._tiled_softmax import _spans, _TileBuffers


@dataclass(frozen=True)
class KeyBlock:
    """Keys (m, D) scored against the queries, and which pairs are positive.

    ``labels`` (m,) make every pair with equal query and key labels positive; otherwise, with
    ``diagonal``, pair (i, i) is positive (query i's own key); otherwise no pair is.
    """

    keys: torch.Tensor
    labels: torch.Tensor | None = None
    diagonal: bool = False


def _flip_positives(u, block: KeyBlock, query_labels, c0: int, c1: int) -> None:
    """Negate, in place, the entries of the tile ``u`` (columns c0..c1 of ``block``) that are
    positive pairs."""
    if block.labels is not None:
        positive = query_labels[:, None] == block.labels[None, c0:c1]
        u.mul_(positive.to(u.dtype).mul_(-2.0).add_(1.0))
    elif block.diagonal:
        u[c0:c1].diagonal().neg_()


def _tile(a, block, bias, query_labels, c0, c1, buffers) -> torch.Tensor:
    """:math:`u = -z \\odot (A B_{c_0:c_1}^\\top + b)` for one tile of columns."""
    u = torch.matmul(a, block.keys[c0:c1].T, out=buffers.get(0, a.shape[0], c1 - c0))
    u.add_(bias)
    _flip_positives(u, block, query_labels, c0, c1)
    return u


def _softplus_rows(u: torch.Tensor) -> torch.Tensor:
    """Row sums of :math:`\\operatorname{softplus}(u) = -\\log\\sigma(-u)`, exact at any size."""
    return F.logsigmoid(u.neg()).sum(1).neg_()


def block_loss(a, block: KeyBlock, bias, query_labels, chunk: int) -> torch.Tensor:
    """Each query's loss against the keys of ``block``: (n,)."""
    m = block.keys.shape[0]
    loss = a.new_zeros(a.shape[0])
    buffers = _TileBuffers(a, a.shape[0], min(chunk, m), count=1)
    for c0, c1 in _spans(m, chunk):
        loss += _softplus_rows(_tile(a, block, bias, query_labels, c0, c1, buffers))
    return loss


def block_grad(a, block: KeyBlock, bias, query_labels, chunk: int, g, da, with_loss=False):
    r"""Gradients of :math:`\sum_i g_i \ell_i` against the keys of ``block``.

    Adds the query gradient :math:`G B` into ``da`` (n, D) in place and returns the key gradient
    :math:`G^\top A` (m, D), the bias gradient (a 0-dim tensor) and, with ``with_loss``, the
    losses :math:`\ell_i` (n,) from the same sweep.
    """
    m = block.keys.shape[0]
    db = torch.empty_like(block.keys)
    d_bias = a.new_zeros(())
    loss = a.new_zeros(a.shape[0]) if with_loss else None
    weight = g.unsqueeze(1)
    buffers = _TileBuffers(a, a.shape[0], min(chunk, m), count=1)
    for c0, c1 in _spans(m, chunk):
        u = _tile(a, block, bias, query_labels, c0, c1, buffers)
        if with_loss:
            loss += _softplus_rows(u)
        grad = u.sigmoid_()
        _flip_positives(grad, block, query_labels, c0, c1)
        grad.mul_(weight)
        da.addmm_(grad, block.keys[c0:c1])
        torch.matmul(grad.T, a, out=db[c0:c1])
        d_bias += grad.sum()
    return db, d_bias, loss
