r"""Mutual information: InfoNCE and its peer variational bounds, honest about their limits.

Every bound here is a function of a critic score matrix :math:`s_{ij} = f(x_i, y_j)` over a batch
of N pairs :math:`(x_i, y_i) \sim p(x, y)`: the diagonal samples the joint, the off-diagonal the
product of marginals :math:`p(x)p(y)`. Each is a lower bound on :math:`I(X; Y)` for any critic,
tight at a log density ratio :math:`\log p(y|x)/p(y)` (up to a shift):

========================  ==================================================  ===============
function                  value                                               limit
========================  ==================================================  ===============
:func:`info_nce_bound`    mean(s_ii − logsumexp_j s_ij) + log N               ≤ log N always
:func:`nwj_bound`         mean(s_ii) − e⁻¹ mean_{i≠j} e^{s_ij}                 variance ~ e^I
:func:`dv_bound`          mean(s_ii) − log mean_{i≠j} e^{s_ij}                 biased gradient
:func:`mine_bound`        DV, gradient with a moving-average denominator      variance ~ e^I
:func:`smile_bound`       DV with e^s clipped to [e^−τ, e^τ], JS gradient      biased by clip
:func:`js_bound`          NWJ at f + 1, Jensen–Shannon gradient               variance ~ e^I
========================  ==================================================  ===============

:func:`estimate_mi` trains a critic (:class:`GaussianSeparableCritic`, the default, which starts
at the Gaussian log-ratio of the data's canonical pairs; :class:`SeparableCritic`,
:class:`ConcatCritic`) on part of the data and reports the bound on the rest as an
:class:`MIEstimate`, with ``log_n_cap`` and a ``capped`` flag where the batch size, not the data,
limits the answer. Its pieces, one module each: :mod:`~nce.mi.estimators` (the table of
estimators), :mod:`~nce.mi.standardize`, :mod:`~nce.mi.gaussian_critic`, :mod:`~nce.mi.train`,
:mod:`~nce.mi.evaluate` and :mod:`~nce.mi.influence` (standard errors).

``estimate_mi(x, y, estimator="tre", waymarks=K)`` is not a bound: telescoping ratio estimation
(:mod:`~nce.mi.tre`, :mod:`~nce.mi.waymarks`) sums the log-ratios of K bridge classifiers between
the joint and the product of marginals, and reaches tens of nats where every bound above fails.

``infonce_bound`` is the former name of :func:`info_nce_bound` (deprecated, removed in the next
release).

References: Poole et al. (2019), "On variational bounds of mutual information", arXiv:1905.06922.
"""

from nce.mi.critics import CRITICS, ConcatCritic, SeparableCritic
from nce.mi.dv import dv_bound, mine_bound
from nce.mi.estimate import MIEstimate, estimate_mi
from nce.mi.estimators import ALIASES, ESTIMATORS
from nce.mi.evaluate import influence_values
from nce.mi.gaussian_critic import GaussianCritic, GaussianSeparableCritic
from nce.mi.infonce import info_nce_bound, infonce_bound
from nce.mi.js import js_bound, js_objective
from nce.mi.nwj import nwj_bound
from nce.mi.smile import smile_bound
from nce.mi.standardize import STANDARDIZE
from nce.mi.tre import MLPHeads, QuadraticHeads
from nce.mi.waymarks import WAYMARK_MIXING

__all__ = [
    "ALIASES",
    "CRITICS",
    "ESTIMATORS",
    "STANDARDIZE",
    "WAYMARK_MIXING",
    "ConcatCritic",
    "GaussianCritic",
    "GaussianSeparableCritic",
    "MIEstimate",
    "MLPHeads",
    "QuadraticHeads",
    "SeparableCritic",
    "dv_bound",
    "estimate_mi",
    "influence_values",
    "info_nce_bound",
    "infonce_bound",
    "js_bound",
    "js_objective",
    "mine_bound",
    "nwj_bound",
    "smile_bound",
]
