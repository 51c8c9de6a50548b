r"""The noise protocol.

Noise-contrastive estimation (Gutmann & Hyvarinen, 2012) fits a model :math:`p_\theta` by teaching a
classifier to tell data :math:`x \sim p_d` from noise :math:`y \sim q`, with :math:`\nu` noise
samples per datum. The Bayes-optimal classifier has posterior

.. math:: P(\text{data} \mid u) = \sigma\big(\log p_d(u) - \log \nu - \log q(u)\big),

so the learned logit :math:`\log p_\theta(u) - \log \nu - \log q(u)` is a log density ratio, and
:math:`p_\theta \to p_d` only if the noise can be **sampled** (to draw :math:`y`) and **evaluated**
(to subtract :math:`\log q`) and stays **fixed** while the model learns. That is the whole protocol:

* ``sample(shape, generator=None)`` returns a tensor of shape ``shape + event_shape``;
* ``log_prob(x)`` returns :math:`\log q(x)`, of shape ``x.shape[:x.dim() - len(event_shape)]``;
* the state lives in registered buffers, never in :class:`torch.nn.Parameter`, so an optimizer
  never sees it and ``.to(device)`` moves it.

References:
    | Noise-contrastive estimation of unnormalized statistical models (Gutmann & Hyvarinen, 2012)
    | https://jmlr.org/papers/v13/gutmann12a.html
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

__all__ = ["Noise"]


class Noise(nn.Module, abc.ABC):
    r"""Abstract base class of a fixed noise distribution :math:`q` for NCE.

    Subclasses register their state as buffers and implement :meth:`sample`, :meth:`log_prob` and
    :attr:`event_shape`, following :class:`torch.distributions.Distribution`. Any
    :class:`~torch.distributions.Distribution` becomes a :class:`Noise` with
    :func:`nce.noise.as_noise`.

    Shape:
        * ``sample(shape)``: ``(*shape, *event_shape)``.
        * ``log_prob(x)``: ``x`` is ``(*, *event_shape)``, the result ``(*)``.

    References:
        | Noise-contrastive estimation of unnormalized statistical models
        | (Gutmann & Hyvarinen, 2012) https://jmlr.org/papers/v13/gutmann12a.html

    Example:
        >>> from nce.noise import Gaussian
        >>> noise = Gaussian(torch.zeros(3), torch.eye(3))
        >>> y = noise.sample((4, 2), generator=torch.Generator().manual_seed(0))
        >>> y.shape, noise.log_prob(y).shape
        (torch.Size([4, 2, 3]), torch.Size([4, 2]))
        >>> list(noise.parameters())
        []
    """

    @property
    @abc.abstractmethod
    def event_shape(self) -> torch.Size:
        """The shape of one draw: ``()`` for class ids, ``(D,)`` for points in :math:`R^D`."""

    @abc.abstractmethod
    def sample(self, shape=(), generator: torch.Generator | None = None) -> Tensor:
        r"""Draws ``shape`` independent samples :math:`y \sim q`.

        Args:
            shape: The sample shape, an int or a tuple of ints.
            generator: A :class:`torch.Generator` on the noise's device, for reproducible draws.

        Returns:
            The samples, with shape ``(*shape, *event_shape)``.
        """

    @abc.abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        r"""Evaluates :math:`\log q(x)`.

        Args:
            x: Points (or class ids), with shape ``(*, *event_shape)``.

        Returns:
            The log-probabilities (or log-densities), with shape ``(*)``.
        """
