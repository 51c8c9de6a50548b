r"""The data-size rules behind :class:`~nce.density.NCEDensity`'s defaults: everything that depends
on the number :math:`N` of training rows (the rows left after the held-out share).

* ``noise_ratio="auto"``: :math:`\nu = \max(10, M / N)` with :math:`M = 20{,}000`, i.e. at least
  :math:`M` noise draws. NCE's estimate of :math:`\log Z` (and of the model) approaches maximum
  likelihood's as :math:`\nu` grows (Gutmann & Hyvärinen 2012, Theorem 3); on a small table a fixed
  :math:`\nu = 10` leaves a few hundred noise points in :math:`D` dimensions, where the network
  finds regions no noise point visits and the learned :math:`\log Z` misses the true one. The
  extra draws cost little while :math:`\nu N` is small, and nothing from :math:`N = M / 10` on.
* The width of :class:`~nce.models.MLPEnergy`'s two hidden layers:
  :math:`2^{\operatorname{round}(\log_2 \sqrt N)}` within [16, 64].
* ``weight_decay="auto"``: :math:`\min(1, 100 / N)`, stronger on less data.
* ``resample_noise="auto"``: fresh noise every epoch for Adam, one fixed sample for L-BFGS
  (Gutmann & Hyvärinen's setting, and a deterministic objective for its line search). A network
  fitted by Adam against one fixed sample of :math:`\nu N` points learns the holes between them:
  in 20 or 40 dimensions it grows mass where none of the points landed, and its learned
  :math:`\log Z` ends 0.5–2 nats below an importance-sampled one; fresh draws leave no fixed
  hole to learn (on 20-D digits the two then agree within 0.1 nats).
* ``batch_size="auto"`` (on request; the default stays 256): :math:`\lceil N / 10 \rceil` within
  [32, 256], so that an Adam epoch has about ten steps on a small table: early stopping counts
  epochs, and with one or two steps per epoch a fit of a few hundred rows stops after a dozen
  steps, before its network has moved.
* ``optimizer="auto"``: full-batch L-BFGS for a model of at most 500 parameters without a
  network (a Gaussian up to 21 dimensions, ICA up to 22), Adam otherwise. A network is fitted by
  Adam, whose decoupled weight decay (and early stopping) keep it from the NCE overfit that an
  unregularized full-batch fit of a small network on a few hundred rows falls into: bumps at the
  training rows where no noise point lands, and a learned :math:`\log Z` far below the true one.

References:
    | Noise-contrastive estimation of unnormalized statistical models, with applications to
    | natural image statistics (Gutmann & Hyvärinen, JMLR 13:307, 2012)
"""

from __future__ import annotations

import math

from torch import nn

from nce._validation import check_int, check_positive

__all__ = [
    "AUTO_NOISE_SAMPLES",
    "LBFGS_MAX_PARAMETERS",
    "batch_size",
    "check_batch_size",
    "check_noise_ratio",
    "check_resample_noise",
    "hidden_width",
    "noise_ratio",
    "optimizer",
    "resample_noise",
    "weight_decay",
]

#: ``noise_ratio="auto"`` draws at least this many noise points.
AUTO_NOISE_SAMPLES = 20_000
#: ``optimizer="auto"`` picks L-BFGS for models without a network of at most this many parameters.
LBFGS_MAX_PARAMETERS = 500
#: ``noise_ratio="auto"`` never goes below this ratio.
MIN_AUTO_NOISE_RATIO = 10.0


def check_noise_ratio(value) -> None:
    r"""Accepts "auto" or a number :math:`\nu > 0`; raises naming ``noise_ratio`` otherwise."""
    if isinstance(value, str):
        if value != "auto":
            raise TypeError(
                f'noise_ratio must be a number, got str {value!r} (the one string taken is "auto")'
            )
        return
    check_positive("noise_ratio", value)


def noise_ratio(value, n_train: int) -> float:
    r"""The :math:`\nu` a fit on ``n_train`` rows uses: ``value`` itself, or for "auto"
    :math:`\max(10, 20{,}000 / N)`.

    Example:
        >>> noise_ratio("auto", 100), noise_ratio("auto", 10_000), noise_ratio(5, 100)
        (200.0, 10.0, 5)
    """
    if value != "auto":
        return value
    return max(MIN_AUTO_NOISE_RATIO, AUTO_NOISE_SAMPLES / max(1, n_train))


def hidden_width(n_train: int) -> int:
    r"""The hidden width of a default :class:`~nce.models.MLPEnergy`:
    :math:`2^{\operatorname{round}(\log_2 \sqrt N)}` within [16, 64]."""
    return min(64, max(16, 2 ** round(math.log2(math.sqrt(n_train)))))


def weight_decay(value, n_train: int) -> float:
    r"""``value``, or for "auto" :math:`\min(1, 100 / N)`."""
    if value != "auto":
        return value
    return min(1.0, 100 / n_train)


def optimizer(value: str, model: nn.Module) -> str:
    """``value``, or for "auto": "lbfgs" for a model of at most 500 trainable parameters and no
    submodule (no network), "adam" otherwise."""
    if value != "auto":
        return value
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    has_network = any(True for _ in model.children())
    return "lbfgs" if parameters <= LBFGS_MAX_PARAMETERS and not has_network else "adam"


def check_batch_size(value) -> None:
    """Accepts "auto" or an int >= 1; raises naming ``batch_size`` otherwise."""
    if value != "auto":
        check_int("batch_size", value, minimum=1)


def batch_size(value, n_train: int) -> int:
    r"""``value``, or for "auto" :math:`\lceil N / 10 \rceil` within [32, 256].

    Example:
        >>> batch_size("auto", 100), batch_size("auto", 1000), batch_size("auto", 10**5)
        (32, 100, 256)
    """
    if value != "auto":
        return value
    return min(256, max(32, math.ceil(n_train / 10)))


def check_resample_noise(value) -> None:
    """Accepts a bool or "auto"; raises naming ``resample_noise`` otherwise."""
    if value != "auto" and not isinstance(value, bool):
        raise TypeError(
            f'resample_noise must be a bool or "auto", got {type(value).__name__} {value!r}'
        )


def resample_noise(value, optimizer: str) -> bool:
    """``value``, or for "auto": True (fresh noise every epoch) for "adam", False for "lbfgs"."""
    if value != "auto":
        return value
    return optimizer == "adam"
