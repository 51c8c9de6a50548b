r"""Density estimation with noise-contrastive estimation: :class:`NCEDensity`.

Given data :math:`x_1..x_N \sim p_d` and an unnormalized model :math:`f_\theta` (an
:class:`~nce.models.EnergyModel`), NCE draws :math:`M = \nu N` samples :math:`y_j` from a fixed
noise :math:`q` and fits a logistic classifier between the two whose logit is

.. math:: G(u) = f_\theta(u) - \log Z - \log \nu - \log q(u),

with :math:`\log Z` one more parameter. The classifier's negative log-likelihood,

.. math:: \ell(\theta, \log Z) = -\frac{1}{N}\Big[\sum_i \log\sigma(G(x_i))
          + \sum_j \log\sigma(-G(y_j))\Big],

is :func:`nce.binary_nce`. Its population version is minimized where the logit equals the Bayes
logit, :math:`\log p_d - \log\nu - \log q`, i.e. where :math:`f_\theta - \log Z = \log p_d`
wherever :math:`q > 0` (Gutmann & Hyvärinen 2012, Theorem 1): the fitted :math:`f_\theta - \log Z`
is a *normalized* log density and :math:`\log Z` its log-partition, learned without ever
integrating. Three consequences drive the estimator:

* the noise must be **fixed** while the model learns (it is fitted once, then frozen) and must
  cover the data (:math:`q > 0` wherever :math:`p_d > 0`);
* the estimator is consistent for any such noise, and its variance approaches maximum
  likelihood's as :math:`\nu \to \infty`, faster when :math:`q` is close to :math:`p_d`;
* the learned logit :math:`\log p_\theta(x) - \log q(x)` (``log_ratio``) says how much more
  data-like than noise-like a point is: an out-of-distribution score.

The learned :math:`\log Z` can be checked by importance sampling with the noise as proposal,
:math:`\hat Z = \frac1S \sum_s e^{f_\theta(y_s)} / q(y_s)` (:meth:`NCEDensity.partition_function`).

References:
    | Noise-contrastive estimation: A new estimation principle for unnormalized statistical
    | models (Gutmann & Hyvärinen, AISTATS 2010)

    | Noise-contrastive estimation of unnormalized statistical models, with applications to
    | natural image statistics (Gutmann & Hyvärinen, JMLR 13:307, 2012)
"""

from nce.density.errors import ConvergenceWarning, FitMemoryError, NormalizationWarning
from nce.density.estimator import MODELS as MODELS
from nce.density.estimator import NOISES as NOISES
from nce.density.estimator import OPTIMIZERS as OPTIMIZERS
from nce.density.estimator import NCEDensity, NotFittedError
from nce.density.partition import PartitionEstimate

__all__ = [
    "ConvergenceWarning",
    "NormalizationWarning",
    "FitMemoryError",
    "NCEDensity",
    "NotFittedError",
    "PartitionEstimate",
]
