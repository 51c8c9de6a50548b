"""nce: noise-contrastive estimation and its family for PyTorch.

Losses are pure functions (:mod:`nce.functional`, re-exported here); :mod:`nce.losses` wraps them
as modules holding hyperparameters and learned parameters; :mod:`nce.noise` holds the noise
distributions.
"""

from nce import functional, losses, noise
from nce.functional import (
    binary_nce,
    debiased_info_nce,
    info_nce,
    nt_xent,
    soft_info_nce,
    supervised_info_nce,
)

__version__ = "0.1.0"

__all__ = [
    "binary_nce",
    "debiased_info_nce",
    "functional",
    "info_nce",
    "losses",
    "noise",
    "nt_xent",
    "soft_info_nce",
    "supervised_info_nce",
]
