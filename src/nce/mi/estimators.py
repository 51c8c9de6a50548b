r"""The estimators of :func:`nce.mi.estimate_mi`, one record each: how the critic is trained, how
the held-out estimate and its standard error are computed, and which ceilings apply.

* "infonce": trained and evaluated with :func:`~nce.mi.info_nce_bound`; its training objective
  also saturates at log B.
* "nwj": :func:`~nce.mi.nwj_bound` for both.
* "mine": trained with :func:`~nce.mi.mine_bound` (a moving average of the negatives' mean
  :math:`e^s`), evaluated with :func:`~nce.mi.dv_bound`.
* "smile": :func:`~nce.mi.smile_bound` (clipped DV value, Jensen–Shannon gradient) for both.
* "js": :func:`~nce.mi.js_bound` (NWJ value at f + 1, Jensen–Shannon gradient) for both.
* "tre": telescoping ratio estimation (:mod:`nce.mi.tre`): not a bound on a critic score matrix
  but K bridge classifiers between waymarks of the joint and the product of marginals, whose
  log-ratios are summed; it has no score-matrix functions and no ceiling.

Every held-out bound (all but "tre") is capped by log M (M the evaluation block); only InfoNCE's
training objective also saturates at log B (B the training batch), since each minibatch term is at
most log B.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nce.mi.dv import dv_bound, mine_bound
from nce.mi.influence import info_nce_influence, log_mean_influence, mean_exp_influence
from nce.mi.infonce import info_nce_bound
from nce.mi.js import js_bound
from nce.mi.nwj import nwj_bound
from nce.mi.smile import smile_bound

__all__ = ["ALIASES", "ESTIMATORS", "Estimator", "get_estimator"]


@dataclass(frozen=True)
class Estimator:
    """How :func:`nce.mi.estimate_mi` trains and evaluates one bound.

    Attributes:
        name: the estimator string, e.g. "infonce".
        telescoping: True for telescoping ratio estimation ("tre"), which trains bridge
            classifiers on waymarks (:mod:`nce.mi.tre`) instead of a bound; its three score-matrix
            functions are then ``None``.
        training_objective: ``(scores, clip, moving_average) -> ()`` tensor, maximized on each
            training minibatch of (B, B) scores.
        held_out_bound: ``(scores, clip) -> ()`` tensor, the bound reported on held-out scores.
        influence: ``(scores, clip) -> (value, psi)``, the held-out bound of an (M, M) block and
            its per-row influence, shape (M,), for the standard error (:mod:`nce.mi.influence`).
        capped_by_batch: whether the training objective saturates at log B.
        moving_average: whether training keeps MINE's moving average of the negatives' mean e^s
            (passed to ``training_objective``; ``None`` for the others).
    """

    name: str
    training_objective: Callable[[torch.Tensor, float, float | None], torch.Tensor] | None = None
    held_out_bound: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    influence: Callable[[torch.Tensor, float], tuple[float, torch.Tensor]] | None = None
    telescoping: bool = False
    capped_by_batch: bool = False
    moving_average: bool = False


_TABLE = {
    record.name: record
    for record in (
        Estimator(
            "infonce",
            training_objective=lambda scores, clip, average: info_nce_bound(scores),
            held_out_bound=lambda scores, clip: info_nce_bound(scores),
            influence=lambda scores, clip: info_nce_influence(scores),
            capped_by_batch=True,
        ),
        Estimator(
            "nwj",
            training_objective=lambda scores, clip, average: nwj_bound(scores),
            held_out_bound=lambda scores, clip: nwj_bound(scores),
            influence=lambda scores, clip: mean_exp_influence(scores),
        ),
        Estimator(
            "mine",
            training_objective=lambda scores, clip, average: mine_bound(scores, average),
            held_out_bound=lambda scores, clip: dv_bound(scores),
            influence=lambda scores, clip: log_mean_influence(scores),
            moving_average=True,
        ),
        Estimator(
            "smile",
            training_objective=lambda scores, clip, average: smile_bound(scores, clip),
            held_out_bound=smile_bound,
            influence=lambda scores, clip: log_mean_influence(scores, clip),
        ),
        Estimator(
            "js",
            training_objective=lambda scores, clip, average: js_bound(scores),
            held_out_bound=lambda scores, clip: js_bound(scores),
            influence=lambda scores, clip: mean_exp_influence(scores, offset=1.0),
        ),
        Estimator("tre", telescoping=True),
    )
}

ESTIMATORS = tuple(_TABLE)
"""The estimator strings, each the ``estimator`` of the :class:`~nce.mi.MIEstimate` it gives."""

ALIASES = {"info_nce": "infonce"}
"""Other accepted spellings: "info_nce", like the loss :func:`nce.info_nce`, is "infonce"."""


def get_estimator(name) -> Estimator:
    """The record of estimator ``name`` (or of an alias in :data:`ALIASES`); anything else raises
    a ValueError listing the choices."""
    record = _TABLE.get(ALIASES.get(name, name)) if isinstance(name, str) else None
    if record is None:
        raise ValueError(
            f"estimator must be one of {ESTIMATORS} (or an alias in {tuple(ALIASES)}), got {name!r}"
        )
    return record
