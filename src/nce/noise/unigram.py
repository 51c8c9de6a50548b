r"""Smoothed unigram noise over class ids, sampled with the alias method.

Given class counts :math:`c_1, \dots, c_V` (word frequencies, item popularities), word2vec's noise
raises them to a power :math:`\alpha` (3/4 by default) to flatten the distribution:

.. math:: q(i) = \frac{c_i^\alpha}{\sum_j c_j^\alpha},

with :math:`q(i) = 0` whenever :math:`c_i = 0` (also for :math:`\alpha = 0`).

**Alias method.** Walker's method draws from :math:`q` in :math:`O(1)`: the :math:`V` columns of
a table each hold mass :math:`1/V`, column :math:`i` split between class :math:`i` (a fraction
:math:`a_i`, ``alias_prob``) and one other class :math:`b_i` (the rest, ``alias_index``), so that

.. math:: q(i) = \frac{1}{V} \Big( a_i + \sum_{j \,:\, b_j = i} (1 - a_j) \Big).

A draw picks a column :math:`j` uniformly and a coin :math:`u \sim U[0, 1)`, and returns :math:`j`
if :math:`u < a_j` else :math:`b_j`. The tables pair each under-full column with an over-full one,
as Vose's algorithm does, in one vectorized sweep over prefix sums (see ``_alias_tables``).

**Sampled softmax.** With :math:`K` classes drawn with replacement, class :math:`i` is expected
:math:`K q(i)` times; subtracting :math:`\log(K q(i))` (``log_expected_count``) from its logit
corrects for the sampling (Jean et al., 2015).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from nce._validation import check_ids, check_in_range, check_int, check_tensor
from nce.noise._checks import as_sample_shape, check_generator
from nce.noise.base import Noise

__all__ = ["Unigram"]


class Unigram(Noise):
    r"""Smoothed unigram noise :math:`q(i) \propto c_i^\alpha`, sampled in :math:`O(1)` per draw.

    The probabilities and alias tables are built once, in float64, by a vectorized form of
    Vose's algorithm; a draw is one uniform column index and one uniform coin, vectorized over the
    sample shape. Classes
    with a zero count have probability 0: they are never drawn and their ``log_prob`` is
    :math:`-\infty`.

    Attributes:
        probs: The probabilities :math:`q(i)`, with shape (V,) float64.
        alias_prob: The fraction :math:`a_i` of column :math:`i` kept by class :math:`i`, (V,).
        alias_index: The class :math:`b_i` holding the rest of column :math:`i`, (V,) int64.

    Shape:
        * ``counts``: (V,).
        * ``sample(shape)``: ``shape``, int64 ids.
        * ``log_prob(ids)`` and ``log_expected_count(ids, K)``: ``ids`` is ``(*)`` integer, the
          result ``(*)`` of the dtype of ``probs`` (float64 unless cast with ``.to(dtype)``).

    Args:
        counts: The class counts :math:`c_i`, a 1-D tensor or array-like of finite numbers
            :math:`\geq 0`, not all zero.
        power: The smoothing exponent :math:`\alpha \geq 0`: 1 keeps the counts' distribution,
            0 is uniform over the classes seen.

    References:
        | Distributed Representations of Words and Phrases and their Compositionality
        | (Mikolov et al., 2013) https://arxiv.org/abs/1310.4546

        | A linear algorithm for generating random numbers with a given distribution
        | (Vose, 1991) https://doi.org/10.1109/32.92917

        | On Using Very Large Target Vocabulary for Neural Machine Translation
        | (Jean et al., 2015) https://arxiv.org/abs/1412.2007

    Example:
        >>> noise = Unigram(torch.tensor([16.0, 1.0, 0.0, 1.0]), power=0.5)
        >>> noise.probs
        tensor([0.6667, 0.1667, 0.0000, 0.1667], dtype=torch.float64)
        >>> ids = noise.sample(1000, generator=torch.Generator().manual_seed(0))
        >>> bool((ids != 2).all())
        True
        >>> noise.log_expected_count(torch.tensor([0, 1]), num_samples=6)
        tensor([1.3863, 0.0000], dtype=torch.float64)
    """

    probs: Tensor
    alias_prob: Tensor
    alias_index: Tensor

    def __init__(self, counts, power: float = 0.75):
        super().__init__()
        check_in_range("power", power, 0.0, math.inf)
        device = counts.device if isinstance(counts, torch.Tensor) else None
        counts = _as_counts(counts)
        weights = torch.where(counts > 0, (counts / counts.max()) ** power, 0.0)
        probs = weights / weights.sum()
        alias_prob, alias_index = _alias_tables(probs)
        self.power = float(power)
        self.register_buffer("probs", probs.to(device))
        self.register_buffer("alias_prob", alias_prob.to(device))
        self.register_buffer("alias_index", alias_index.to(device))

    @property
    def num_classes(self) -> int:
        """The number of classes :math:`V`, zero-count ones included."""
        return self.probs.shape[0]

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size()

    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        shape = as_sample_shape(shape)
        check_generator(generator)
        device = self.alias_prob.device
        column = torch.randint(self.num_classes, shape, generator=generator, device=device)
        coin = torch.rand(shape, generator=generator, dtype=self.alias_prob.dtype, device=device)
        return torch.where(coin < self.alias_prob[column], column, self.alias_index[column])

    def log_prob(self, ids: Tensor) -> Tensor:
        check_ids("ids", ids, num_classes=self.num_classes)
        return self.probs[ids].log()

    def log_expected_count(self, ids: Tensor, num_samples: int) -> Tensor:
        r"""The log expected number of times :math:`\log(K q(i))` each id appears among
        :math:`K` draws with replacement: the :math:`\log Q` correction of sampled softmax.

        Args:
            ids: Class ids, with shape ``(*)``.
            num_samples: The number of draws :math:`K \geq 1`.

        Returns:
            :math:`\log K + \log q(i)`, with shape ``(*)``.
        """
        check_int("num_samples", num_samples, minimum=1)
        return self.log_prob(ids) + math.log(num_samples)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, power={self.power}"


def _as_counts(counts) -> Tensor:
    """The counts as a finite, non-negative, not-all-zero (V,) float64 CPU tensor."""
    if isinstance(counts, torch.Tensor):
        if counts.dtype == torch.bool or counts.is_complex():
            raise TypeError(f"counts must hold real numbers, got dtype {counts.dtype}")
        counts = counts.detach().to("cpu", torch.float64)
    else:
        try:
            counts = torch.from_numpy(np.asarray(counts, dtype=np.float64))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"counts must be a tensor or an array of numbers, got {type(counts).__name__}"
            ) from error
    check_tensor("counts", counts, ndim=1)
    negative = int((counts < 0).sum())
    if negative:
        raise ValueError(f"counts contains {negative} negative value(s)")
    if not bool((counts > 0).any()):
        raise ValueError(f"counts are all zero (shape ({counts.shape[0]},)); one must be > 0")
    return counts


def _alias_tables(probs: Tensor) -> tuple[Tensor, Tensor]:
    r"""The alias tables (``alias_prob``, ``alias_index``) of ``probs``, built by vectorized
    operations: Vose's pairing done in one sweep over prefix sums.

    With scaled masses :math:`m_i = V q(i)`, the under-full columns (:math:`m_i < 1`, in index
    order) have deficits :math:`d_i = 1 - m_i` and the others excesses :math:`e_j = m_j - 1`; both
    add up to the same total. Laying the deficits end to end (prefix sums :math:`S_i`) against
    the excesses (prefix sums :math:`E_j`): under-full column :math:`i` keeps :math:`a_i = m_i`
    and takes its alias from the over-full column :math:`j` whose excess interval
    :math:`[E_{j-1}, E_j)` holds the start :math:`S_{i-1}` of its deficit; over-full column
    :math:`j` is used up past :math:`E_j` by the first deficit that ends at
    :math:`S_{i(j)} \geq E_j`, so it keeps :math:`a_j = 1 - (S_{i(j)} - E_j)` of its own column and
    gives the rest to column :math:`j + 1` (the last one keeps its whole column). Every class gets
    back its mass: column :math:`j` receives
    :math:`(S_{i(j-1)} - E_{j-1}) + (S_{i(j)} - S_{i(j-1)}) + 1 - (S_{i(j)} - E_j) = 1 + e_j`.

    The prefix sums are exact: they add the deficits and excesses rounded to integer multiples of
    :math:`2^{-k}` (:math:`k` as large as int64 allows for :math:`V`), so the pairing never
    overfills a column; :math:`a_i` of an under-full column is its float64 mass itself, and an
    over-full column's mass is off by at most one rounding per column paired with it.
    """
    size = probs.shape[0]
    scaled = probs.to(torch.float64).cpu().numpy() * size
    alias_prob = np.ones(size)
    alias_index = np.arange(size)
    under = np.flatnonzero(scaled < 1.0)
    over = np.flatnonzero(scaled >= 1.0)
    if under.size and over.size:
        unit = 2.0 ** (62 - size.bit_length())
        deficit_end = np.cumsum(np.rint((1.0 - scaled[under]) * unit).astype(np.int64))
        deficit_start = np.concatenate([[0], deficit_end[:-1]])
        excess_end = np.cumsum(np.rint((scaled[over] - 1.0) * unit).astype(np.int64))
        donor = np.minimum(np.searchsorted(excess_end, deficit_start, side="right"), over.size - 1)
        alias_prob[under] = scaled[under]
        alias_index[under] = over[donor]
        crossing = np.searchsorted(deficit_end, excess_end[:-1], side="left")
        crossed = crossing < under.size
        spent = deficit_end[np.minimum(crossing, under.size - 1)] - excess_end[:-1]
        alias_prob[over[:-1]] = np.where(crossed, np.clip(1.0 - spent / unit, 0.0, 1.0), 1.0)
        alias_index[over[:-1]] = np.where(crossed, over[1:], over[:-1])
    return torch.from_numpy(alias_prob), torch.from_numpy(alias_index)
