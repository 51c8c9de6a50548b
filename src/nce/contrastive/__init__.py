r"""Learning representations by contrast: SimCLR and MoCo training on small data.

Two augmented views of a sample are a positive pair; the other samples of the batch, or the keys
of past batches waiting in a queue, are its negatives. This is noise-contrastive estimation with
the noise drawn from the data itself, and every loss of :mod:`nce.functional` can drive it.

* :mod:`~nce.contrastive.augment` — seeded augmentations for small images and vectors;
* :mod:`~nce.contrastive.encoders` — small encoders and SimCLR's projection head;
* :mod:`~nce.contrastive.trainer` — :class:`ContrastiveTrainer`: SimCLR, or MoCo
  (``moco=True``);
* :mod:`~nce.contrastive.pretraining` — :func:`pretrain`: split, pretrain and probe in one call
  (the work of ``nce pretrain``);
* :mod:`~nce.contrastive.queue`, :mod:`~nce.contrastive.momentum` — MoCo's key queue and
  momentum encoder;
* :mod:`~nce.contrastive.evaluate` — linear probe and k-NN accuracy of frozen features;
* :mod:`~nce.contrastive.metrics` — alignment, uniformity, effective rank, sparsity;
* :mod:`~nce.contrastive.data` — the digits benchmark split;
* :mod:`~nce.contrastive.studies` — measured studies of the practical claims (rows of numbers).

Example:
    >>> from nce.contrastive import ContrastiveTrainer, ConvEncoder, ProjectionHead
    >>> from nce.contrastive import digits_augmentation, load_digits_split
    >>> data = load_digits_split()
    >>> enc = ConvEncoder(width=8)
    >>> trainer = ContrastiveTrainer(enc, ProjectionHead(32, 64, 32), augment=digits_augmentation(),
    ...                              epochs=1, batch_size=256, progress=False)
    >>> trainer.fit(data.x_train).transform(data.x_test).shape
    torch.Size([540, 32])
"""

from nce.contrastive import augment
from nce.contrastive.augment import (
    Compose,
    GaussianNoise,
    RandomAffine,
    RandomMask,
    RandomResizedCrop,
    RandomRotation,
    RandomShift,
    digits_augmentation,
)
from nce.contrastive.data import DigitsSplit, load_digits_split
from nce.contrastive.encoders import ConvEncoder, MLPEncoder, ProjectionHead
from nce.contrastive.evaluate import (
    ProbeResult,
    evaluate_representation,
    knn_accuracy,
    linear_probe,
)
from nce.contrastive.image_text import AlignResult, AlignTrainer, align
from nce.contrastive.metrics import alignment, effective_rank, sparsity, uniformity
from nce.contrastive.momentum import MomentumEncoder
from nce.contrastive.pretraining import PretrainResult, pretrain
from nce.contrastive.queue import KeyQueue
from nce.contrastive.trainer import LOSSES, ContrastiveTrainer, DivergenceError

__all__ = [
    "AlignResult",
    "AlignTrainer",
    "LOSSES",
    "Compose",
    "ContrastiveTrainer",
    "ConvEncoder",
    "DigitsSplit",
    "DivergenceError",
    "GaussianNoise",
    "KeyQueue",
    "MLPEncoder",
    "MomentumEncoder",
    "PretrainResult",
    "ProbeResult",
    "ProjectionHead",
    "RandomAffine",
    "RandomMask",
    "RandomResizedCrop",
    "RandomRotation",
    "RandomShift",
    "align",
    "alignment",
    "augment",
    "digits_augmentation",
    "effective_rank",
    "evaluate_representation",
    "knn_accuracy",
    "linear_probe",
    "load_digits_split",
    "pretrain",
    "sparsity",
    "uniformity",
]
