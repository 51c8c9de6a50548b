"""Pure loss functions of the NCE family, on tensors. Re-exported from :mod:`nce`.

Letters used in every ``Shape:`` block: N batch, K noise samples or negatives per example,
M shared negatives, D embedding dimension, V vocabulary.
"""

from nce.functional.binary_nce import binary_nce
from nce.functional.conditional_nce import conditional_nce
from nce.functional.debiased_info_nce import debiased_info_nce
from nce.functional.info_nce import info_nce
from nce.functional.nt_xent import nt_xent
from nce.functional.pairwise_nce import pairwise_nce
from nce.functional.soft_info_nce import soft_info_nce
from nce.functional.supervised_info_nce import supervised_info_nce

__all__ = [
    "binary_nce",
    "conditional_nce",
    "debiased_info_nce",
    "info_nce",
    "nt_xent",
    "pairwise_nce",
    "soft_info_nce",
    "supervised_info_nce",
]
