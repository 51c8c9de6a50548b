r"""Per-row influence of a held-out bound: the delta-method standard error of an MI estimate.

A bound evaluated on an (M, M) score matrix is a smooth function of means over the M rows (its
positive term, the diagonal) and over the M(M − 1) ordered pairs (its negative term). Linearizing
it around those means, row k's influence :math:`\psi_k` is its positive term plus its share of the
negative term as an x (row k) and as a y (column k). The mean of :math:`\psi` is the bound, and

.. math:: \mathrm{se} = \mathrm{sd}(\psi) / \sqrt{M}

is its standard error for the fixed critic (the sampling error of the evaluation rows, not the
spread over retrained critics).

Each function takes the scores in any floating dtype, computes in float64 and returns
``(value, psi)``: the bound as a float and the influences, shape (M,).
"""

from __future__ import annotations

import math

import torch


def info_nce_influence(scores: torch.Tensor) -> tuple[float, torch.Tensor]:
    r"""InfoNCE: :math:`\psi_k = s_{kk} - \log\sum_j e^{s_{kj}} + \log M - \sum_i p_{ik} + 1`,
    with :math:`p_{ik}` the softmax of row i (column k's share of every row's normalizer).

    Shape:
        - scores: (M, M)
        - psi: (M,)
    """
    s = scores.double()
    log_softmax = s - torch.logsumexp(s, 1, keepdim=True)
    terms = log_softmax.diagonal() + math.log(s.shape[0])
    psi = terms - log_softmax.exp().sum(0) + 1
    return float(terms.mean()), psi


def _negative_moments(t: torch.Tensor):
    r"""Shifted moments of :math:`e^{t_{ij}}` over the pairs i ≠ j: the shift c (the largest
    off-diagonal entry), the mean :math:`\bar e` of :math:`e^{t_{ij} - c}` and its row and column
    means, each over M − 1 entries."""
    m = t.shape[0]
    off = ~torch.eye(m, dtype=torch.bool)
    shift = t.masked_select(off).max()
    e = (t - shift).exp().masked_fill(~off, 0)
    row, col = e.sum(1) / (m - 1), e.sum(0) / (m - 1)
    mean = e.sum() / (m * (m - 1))
    return shift, mean, row, col


def log_mean_influence(
    scores: torch.Tensor, clip: float | None = None
) -> tuple[float, torch.Tensor]:
    r"""Donsker–Varadhan form (MINE, and SMILE with ``clip`` = τ):
    :math:`\bar s_{\mathrm{diag}} - \log \overline{e^{t}}_{\mathrm{off}}` with t = s, or s clipped
    to [−τ, τ]; :math:`\psi_k = s_{kk} - \log \bar m - (r_k + c_k - 2\bar m)/\bar m`.

    Shape:
        - scores: (M, M)
        - psi: (M,)
    """
    s = scores.double()
    diag = s.diagonal()
    t = s if clip is None else s.clamp(-clip, clip)
    shift, mean, row, col = _negative_moments(t)
    value = diag.mean() - shift - mean.log()
    psi = diag - shift - mean.log() - (row + col - 2 * mean) / mean
    return float(value), psi


def mean_exp_influence(scores: torch.Tensor, offset: float = 0.0) -> tuple[float, torch.Tensor]:
    r"""NWJ form at f + ``offset`` (``offset`` = 0 for NWJ, 1 for "js"):
    :math:`\bar f_{\mathrm{diag}} - e^{-1}\,\overline{e^{f}}_{\mathrm{off}}`;
    :math:`\psi_k = f_{kk} - e^{-1}(r_k + c_k - \bar m)`.

    Shape:
        - scores: (M, M)
        - psi: (M,)
    """
    s = scores.double()
    diag = s.diagonal()
    t = s + offset if offset else s
    shift, mean, row, col = _negative_moments(t)
    scale = (shift - 1).exp()
    value = diag.mean() + offset - scale * mean
    psi = diag + offset - scale * (row + col - mean)
    return float(value), psi
