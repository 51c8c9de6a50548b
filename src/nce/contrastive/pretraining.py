r"""Contrastive pretraining judged by frozen-feature probes, in one call: :func:`pretrain`.

The samples are split into train and test (stratified when labels are given); the encoder is
pretrained on the training samples without their labels, then frozen, and three probes read its
representation :math:`h = f(x)`: logistic regression with all training labels, with 10 labels per
class, and 5-NN (see :mod:`nce.contrastive.evaluate`). Images (N, H, W) or (N, C, H, W) get the
convolutional encoder and the digit augmentations (rotation, scale, shift, pixel dropout, noise),
vectors (N, D) an MLP with feature masking and Gaussian noise.

The defaults are the protocol of the digits benchmark (SimCLR's NT-Xent at :math:`\tau = 1`, 150
epochs of batch 256, AdamW at lr 3e-3 with a cosine schedule, a width-32 encoder and a 128 → 64
projection head): on scikit-learn's digits they reach about 99 % with all labels and 95 % with
10 labels per class, in well under a minute of CPU time per 100 epochs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nce._convert import as_float_tensor
from nce._random import as_seed
from nce._validation import check_int
from nce.contrastive.augment import Compose, GaussianNoise, RandomMask, digits_augmentation
from nce.contrastive.encoders import ConvEncoder, MLPEncoder, ProjectionHead
from nce.contrastive.evaluate import evaluate_representation
from nce.contrastive.trainer import ContrastiveTrainer

__all__ = ["PretrainResult", "pretrain"]

PROBE_LABELS_PER_CLASS = 10


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain` trained and measured.

    Attributes:
        trainer: the fitted :class:`ContrastiveTrainer` (its ``encoder`` is the trained encoder).
        encoder_config: the encoder's class and constructor arguments, enough to rebuild it.
        train_indices, test_indices: positions of the training and test samples in ``X``.
        loss_history: mean training loss of each epoch.
        seconds: wall-clock time of the pretraining (without the probes).
        linear_probe_accuracy: logistic regression on the frozen features with all training
            labels, as a fraction of the test samples (``None`` without labels).
        linear_probe_accuracy_10_per_class: the same with 10 labels per class (mean of 5 draws).
        knn_accuracy: 5-NN under the cosine distance.
    """

    trainer: ContrastiveTrainer
    encoder_config: dict
    train_indices: np.ndarray
    test_indices: np.ndarray
    loss_history: list[float]
    seconds: float
    linear_probe_accuracy: float | None = None
    linear_probe_accuracy_10_per_class: float | None = None
    knn_accuracy: float | None = None

    @property
    def encoder(self) -> nn.Module:
        """The trained encoder :math:`f` (in evaluation mode)."""
        return self.trainer.encoder

    def probes(self) -> dict:
        """The three probe accuracies by name (empty without labels)."""
        if self.linear_probe_accuracy is None:
            return {}
        return {
            "linear_probe_accuracy": self.linear_probe_accuracy,
            "linear_probe_accuracy_10_per_class": self.linear_probe_accuracy_10_per_class,
            "knn_accuracy": self.knn_accuracy,
        }


def pretrain(
    X,
    y=None,
    *,
    loss: str = "nt_xent",
    temperature: float = 1.0,
    loss_options: dict | None = None,
    epochs: int = 150,
    batch_size: int = 256,
    lr: float = 3e-3,
    moco: bool = False,
    queue_size: int = 1024,
    width: int = 32,
    test_size: float = 0.3,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    random_state: int | torch.Generator | None = 0,
) -> PretrainResult:
    r"""Split, scale, pretrain an encoder contrastively on the training part, and probe it.

    Images are scaled to [0, 1] and vectors to zero mean and unit variance, with the training
    samples' statistics. The encoder minimizes the two-view loss of :class:`ContrastiveTrainer`,
    e.g. NT-Xent :math:`\ell_i = -\log \big(e^{\cos(z_i, z'_i)/\tau} / \sum_{a \ne z_i}
    e^{\cos(z_i, a)/\tau}\big)`; the probes then measure the held-out accuracy
    :math:`\frac1T \sum_t 1[\hat y_t = y_t]` of a linear classifier and of k-NN on :math:`h = f(x)`.

    Args:
        X: samples: vectors (N, D), or images (N, H, W) or (N, C, H, W); numpy or tensor.
        y: integer labels (N,), optional: with labels the split is stratified and the probes
            run (each class needs 10 training samples for the 10-labels-per-class probe).
        loss: a loss of :data:`~nce.contrastive.trainer.LOSSES` (``supervised_info_nce`` needs
            ``y``, and then trains with the labels).
        temperature: :math:`\tau` of the loss.
        loss_options: further options of the loss (``{"tau_plus": 0.1}`` for
            ``debiased_info_nce``), see :class:`ContrastiveTrainer`.
        epochs: passes over the training samples.
        batch_size: N per step.
        lr: peak learning rate of AdamW (cosine schedule).
        moco: a momentum key encoder and a queue of ``queue_size`` negatives (``info_nce``).
        queue_size: M, MoCo's queued negatives.
        width: width of the encoder (channels of the convolutions; the MLP has hidden sizes
            8·width and 4·width).
        test_size: fraction of the samples held out for the probes, in (0, 1).
        checkpoint: path of the trainer's checkpoint, written after each epoch.
        resume: continue from ``checkpoint`` when it exists.
        progress: a tqdm bar over the epochs.
        random_state: seed of the split, the initialization and every draw of the training.

    Returns:
        :class:`PretrainResult`, with the probe accuracies when ``y`` was given.

    Raises:
        ValueError: bad samples, labels or options (before any training).
        DivergenceError: the training diverged (lower ``lr``).

    References:
        Chen et al. 2020, SimCLR, arXiv:2002.05709; He et al. 2020, MoCo, arXiv:1911.05722.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(120) % 3
        >>> X = 3 * np.eye(6)[y] + 0.3 * rng.normal(size=(120, 6))
        >>> r = pretrain(X, y, epochs=3, batch_size=32, width=4, progress=False)
        >>> len(r.loss_history), r.linear_probe_accuracy > 0.9
        (3, True)
    """
    check_int("width", width, minimum=1)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size}")
    x = as_float_tensor("X", X, ndim=(2, 3, 4), dtype=torch.float64)
    if x.shape[0] < 4 or x[0].numel() == 0:
        raise ValueError(f"X must hold at least 4 non-empty samples, got shape {tuple(x.shape)}")
    kind = "vectors" if x.dim() == 2 else "images"
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if kind == "images" and min(x.shape[2:]) < 2:
        raise ValueError(f"X: images must be at least 2x2, got shape {tuple(x.shape)}")
    labels = None if y is None else _labels(y, x.shape[0])
    if loss == "supervised_info_nce" and labels is None:
        raise ValueError("loss='supervised_info_nce' needs labels y")
    seed = as_seed(random_state)
    train, test = _split(x.shape[0], labels, test_size, seed)
    if labels is not None:
        _check_probe_labels(labels[train])
    x = _scale(x, kind, train)
    if kind == "images":
        encoder = ConvEncoder(in_channels=x.shape[1], width=width)
        config = {"class": "ConvEncoder", "in_channels": x.shape[1], "width": width}
        augment = digits_augmentation()
    else:
        hidden = (8 * width, 4 * width)
        encoder = MLPEncoder(x.shape[1], hidden)
        config = {"class": "MLPEncoder", "in_features": x.shape[1], "hidden": hidden}
        augment = Compose([RandomMask(0.1), GaussianNoise(0.1)])
    trainer = ContrastiveTrainer(
        encoder,
        ProjectionHead(encoder.out_features, 128, 64),
        loss=loss,
        temperature=temperature,
        loss_options=loss_options,
        augment=augment,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        moco=moco,
        queue_size=queue_size,
        checkpoint=checkpoint,
        progress=progress,
        random_state=seed,
    )
    start = time.perf_counter()
    trainer.fit(x[train], None if labels is None else labels[train], resume=resume)
    seconds = time.perf_counter() - start
    probes = {}
    if labels is not None:
        probes = evaluate_representation(
            trainer.transform(x[train]), labels[train], trainer.transform(x[test]), labels[test]
        ).as_dict()
    return PretrainResult(
        trainer=trainer,
        encoder_config=config,
        train_indices=train,
        test_indices=test,
        loss_history=list(trainer.history_),
        seconds=seconds,
        **probes,
    )


def _labels(y, n: int) -> np.ndarray:
    """Integer labels (n,) as int64 numpy."""
    array = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if array.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per sample of X, got {array.shape}")
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise ValueError("y must hold integer class labels, got non-integer or NaN values")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class labels, got dtype {array.dtype}")
    return array.astype(np.int64)


def _split(n: int, labels: np.ndarray | None, test_size: float, seed: int):
    """Train and test positions; stratified when every class has at least 2 samples."""
    from sklearn.model_selection import train_test_split

    stratify = None
    if labels is not None and np.unique(labels, return_counts=True)[1].min() >= 2:
        stratify = labels
    try:
        return train_test_split(
            np.arange(n), test_size=test_size, stratify=stratify, random_state=seed
        )
    except ValueError as err:
        raise ValueError(f"test_size={test_size}: cannot split {n} samples ({err})") from err


def _check_probe_labels(train_labels: np.ndarray) -> None:
    """The probes need two classes and 10 training samples of each (checked before training)."""
    classes, counts = np.unique(train_labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError("y: the probes need at least 2 classes in the training split")
    if counts.min() < PROBE_LABELS_PER_CLASS:
        raise ValueError(
            f"y: class {int(classes[counts.argmin()])} has {int(counts.min())} training "
            f"sample(s); the {PROBE_LABELS_PER_CLASS}-labels-per-class probe needs at least "
            f"{PROBE_LABELS_PER_CLASS} of each class"
        )


def _scale(x: torch.Tensor, kind: str, train: np.ndarray) -> torch.Tensor:
    """float32 samples scaled with training statistics: images to [0, 1], vectors to zero mean
    and unit variance."""
    seen = x[torch.as_tensor(train)]
    if kind == "images":
        low, high = seen.min(), seen.max()
        scaled = (x - low) / (high - low if high > low else 1.0)
    else:
        mean, std = seen.mean(0), seen.std(0, unbiased=False)
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("X: values too large to standardize (their variance overflows)")
        scaled = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
    scaled = scaled.float()
    if not bool(torch.isfinite(scaled).all()):
        raise ValueError(
            f"X: values too large for float32 once scaled "
            f"({int((~torch.isfinite(scaled)).sum())} become Inf or NaN)"
        )
    return scaled
