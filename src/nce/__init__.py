"""nce: noise-contrastive estimation and its family for PyTorch.

Losses are pure functions (:mod:`nce.functional`, re-exported here); :mod:`nce.losses` wraps them
as modules holding hyperparameters and learned parameters; :mod:`nce.noise` holds the noise
distributions. Built on them:

* :mod:`nce.models`, :mod:`nce.density` — unnormalized models fitted by NCE (:class:`NCEDensity`);
* :mod:`nce.output`, :mod:`nce.lm`, :mod:`nce.text` — NCE output layers over huge vocabularies,
  and :mod:`nce.optim`, the Adam that updates only the rows they read;
* :mod:`nce.contrastive` — SimCLR and MoCo training, probes and representation metrics;
* :mod:`nce.mi` — mutual-information bounds and :func:`estimate_mi`;
* :mod:`nce.retrieval` — dual-encoder retrieval with in-batch and mined hard negatives;
* :mod:`nce.chunked`, :mod:`nce.distributed` — any batch size, any number of processes.
"""

from nce import (
    chunked,
    contrastive,
    density,
    distributed,
    functional,
    losses,
    mi,
    models,
    noise,
    optim,
    output,
)
from nce._checkpoint import CheckpointError
from nce._divergence import DivergenceError
from nce.density import NCEDensity, NotFittedError, PartitionEstimate
from nce.functional import (
    binary_nce,
    conditional_nce,
    debiased_info_nce,
    info_nce,
    nt_xent,
    pairwise_nce,
    soft_info_nce,
    supervised_info_nce,
)
from nce.mi import MIEstimate, estimate_mi

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DivergenceError",
    "MIEstimate",
    "NCEDensity",
    "NotFittedError",
    "PartitionEstimate",
    "binary_nce",
    "chunked",
    "conditional_nce",
    "contrastive",
    "debiased_info_nce",
    "density",
    "distributed",
    "estimate_mi",
    "functional",
    "info_nce",
    "losses",
    "mi",
    "models",
    "noise",
    "nt_xent",
    "optim",
    "output",
    "pairwise_nce",
    "soft_info_nce",
    "supervised_info_nce",
]
