r"""CLIP and SigLIP in miniature: align digit images with their captions, then classify zero-shot.

A batch holds N images and a caption for each (its template drawn afresh at every step from
:data:`~nce.contrastive.captions.TRAIN_TEMPLATES`). With normalized embeddings :math:`u_i`
(images) and :math:`v_j` (captions) and the scores :math:`s_{ij} = u_i \cdot v_j / \tau`:

* ``loss="clip"`` (Radford et al. 2021, arXiv:2103.00020) is the symmetric InfoNCE,
  :math:`\frac12[\ell(u \to v) + \ell(v \to u)]` with
  :math:`\ell(u \to v) = -\frac1N \sum_i \log \mathrm{softmax}_j(s_{ij})_i`: each image must pick
  its caption among the batch's captions, and each caption its image. The temperature is learned
  (:class:`nce.losses.CLIPLoss`, initial 0.07, scale clamped at 100).
* ``loss="siglip"`` (Zhai et al. 2023, arXiv:2303.15343) is binary NCE on every pair,
  :math:`-\frac1N \sum_{ij} \log \sigma(z_{ij}(s_{ij} + b))` with :math:`z_{ij} = \pm1` for
  paired / unpaired, a learned temperature and a learned bias b (:class:`nce.losses.SigLIPLoss`).

Both are noise-contrastive estimation with the other pairs of the batch as noise: the optimal
score is the log density ratio :math:`\log p(x, t) / p(x)p(t)` up to a constant, which is why the
nearest caption is a classifier. Images are augmented
(:func:`~nce.contrastive.augment.digits_augmentation`) and caption words dropped to ``<unk>``
(word dropout) so that unseen test phrases read as noise.

:class:`AlignTrainer` trains with AdamW under a cosine schedule, draws every random number
(initialization, batches, captions, augmentations, word dropout) from ``random_state``, and writes
an atomic checkpoint after each epoch from which ``fit(..., resume=True)`` continues exactly as
an uninterrupted run would. :func:`align` runs the whole experiment and returns an
:class:`AlignResult`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from nce._checkpoint import Checkpoint, load_checkpoint, load_state, save_checkpoint
from nce._divergence import DivergenceError
from nce._random import as_generator, as_seed, seeded
from nce._validation import check_in_range, check_int, check_positive
from nce.contrastive.augment import digits_augmentation
from nce.contrastive.captions import (
    TEST_TEMPLATES,
    TRAIN_TEMPLATES,
    CaptionTemplate,
    load_captioned_digits,
    sample_captions,
)
from nce.contrastive.towers import TwoTowerModel, build_vocabulary
from nce.contrastive.zero_shot import (
    class_embeddings,
    embed_images,
    embed_texts,
    retrieval_recall,
    zero_shot_predict,
)

__all__ = ["ALIGN_LOSSES", "AlignResult", "AlignTrainer", "align"]

ALIGN_LOSSES = ("clip", "siglip")


def _loss_module(loss: str) -> nn.Module:
    if loss == "clip":
        from nce.losses import CLIPLoss

        return CLIPLoss()
    from nce.losses import SigLIPLoss

    return SigLIPLoss()


def _loss_temperature(module: nn.Module) -> float:
    return float(module.temperature().detach())


def _loss_bias(module: nn.Module) -> float | None:
    bias = getattr(module, "bias", None)
    return None if bias is None else float(torch.as_tensor(bias).detach())


class AlignTrainer:
    r"""Train a :class:`TwoTowerModel` on (image, caption) pairs with CLIP's or SigLIP's loss.

    Each step embeds N images :math:`u_i = f(x_i)` and one caption of each, :math:`v_i = g(c_i)`,
    and minimizes, over the towers and the loss's temperature :math:`\tau` (and bias :math:`b`),

    .. math:: \text{clip: } \tfrac12\big(\ell^{u \to v} + \ell^{v \to u}\big), \qquad
              \text{siglip: } -\frac1N \sum_{i,j} \log\sigma\big(z_{ij}(\hat u_i \cdot
              \hat v_j/\tau + b)\big),

    with :math:`\ell^{u \to v}` the in-batch InfoNCE of the images against the captions
    (:func:`nce.info_nce` with ``symmetric=True``) and :math:`z_{ij} = \pm 1` the pair labels of
    :func:`nce.pairwise_nce`.

    Args:
        model: the two towers.
        loss: ``"clip"`` or ``"siglip"`` (both with a learned temperature; SigLIP also a bias).
        templates: the training caption templates, one drawn per image and step.
        augment: ``t(x, generator) -> x`` applied to the images (``None``: identity).
        word_dropout: probability of replacing each caption word by ``<unk>``.
        epochs: passes over the images.
        batch_size: N pairs per step; the last incomplete batch is dropped.
        lr: peak learning rate of AdamW, decayed to 0 by a cosine schedule.
        weight_decay: AdamW's decoupled weight decay of the towers (not of the temperature or
            bias).
        checkpoint: path written atomically after each epoch; ``fit(..., resume=True)`` continues
            from it.
        progress: show a tqdm bar over epochs.
        random_state: seed of initialization, batches, captions, augmentations, word dropout.

    Attributes:
        loss_fn: the loss module holding the learned temperature (and bias).
        history_: mean training loss of each epoch.
        epoch_: epochs done.

    Shape:
        - images: (N, C, H, W); labels: (N,) int64, the digit each caption names.

    References:
        Radford et al. 2021, CLIP, arXiv:2103.00020; Zhai et al. 2023, SigLIP, arXiv:2303.15343.
    """

    def __init__(
        self,
        model: TwoTowerModel,
        *,
        loss: str = "clip",
        templates: Sequence[CaptionTemplate] = TRAIN_TEMPLATES,
        augment: Callable | None = None,
        word_dropout: float = 0.3,
        epochs: int = 40,
        batch_size: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        checkpoint: str | Path | None = None,
        progress: bool = True,
        random_state: int = 0,
    ):
        if not isinstance(model, TwoTowerModel):
            raise TypeError(f"model must be a TwoTowerModel, got {type(model).__name__}")
        if loss not in ALIGN_LOSSES:
            raise ValueError(f"loss must be one of {ALIGN_LOSSES}, got {loss!r}")
        if not templates:
            raise ValueError("templates must name at least one caption template")
        check_in_range("word_dropout", word_dropout, 0.0, 1.0)
        check_int("epochs", epochs, minimum=1)
        check_int("batch_size", batch_size, minimum=2)
        check_positive("lr", lr)
        check_in_range("weight_decay", weight_decay, 0.0, math.inf)
        self.model = model
        self.loss = loss
        self.templates = tuple(templates)
        self.augment = augment
        self.word_dropout = float(word_dropout)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.progress = progress
        self.random_state = as_seed(random_state)
        self.loss_fn = _loss_module(loss)
        self.history_: list[float] = []
        self.epoch_ = 0

    def _initialize(self, steps: int) -> None:
        with seeded(self.random_state):
            for module in self.model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.loss_fn = _loss_module(self.loss)
        self.generator = as_generator(self.random_state)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": list(self.model.parameters())},
                {"params": list(self.loss_fn.parameters()), "weight_decay": 0.0},
            ],
            lr=self.lr,
            weight_decay=self.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)
        self.history_, self.epoch_ = [], 0

    def _config(self) -> dict:
        return {
            "loss": self.loss,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "random_state": self.random_state,
            "model": self.model.config,
            "templates": [(t.phrase, t.form) for t in self.templates],
        }

    def state_dict(self) -> dict:
        """Everything ``fit`` needs to continue: weights, loss parameters, optimizer, RNG."""
        return {
            "model": self.model.state_dict(),
            "loss_fn": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "history": list(self.history_),
            "epoch": self.epoch_,
            "config": self._config(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` written by a trainer of the same configuration; a missing or
        mismatched entry raises a :class:`~nce._checkpoint.CheckpointError` naming it."""
        saved = state if isinstance(state, Checkpoint) else Checkpoint(state, "state_dict")
        saved.check_config(self._config())
        for key in ("model", "loss_fn", "optimizer", "scheduler"):
            load_state(getattr(self, key), saved.entry(key, dict), saved, key)
        saved.restore_generator(self.generator)
        self.history_ = [float(v) for v in saved.entry("history", list)]
        self.epoch_ = int(saved.entry("epoch", int))

    def _load_checkpoint(self) -> None:
        self.load_state_dict(load_checkpoint(self.checkpoint, kind="align"))

    def _loss_parameters_finite(self) -> bool:
        values = [p.detach() for p in self.loss_fn.parameters()]
        values.append(self.loss_fn.temperature().detach())
        return all(bool(torch.isfinite(v).all()) for v in values)

    def _diverged(self):
        raise DivergenceError(
            "align training",
            self.epoch_ + 1,
            detail=f"the {self.loss} loss or its temperature is no longer finite",
            option="lr",
            value=self.lr,
        )

    def batch_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of one batch of images and freshly drawn captions of their labels."""
        captions = sample_captions(labels, self.templates, self.generator)
        if self.augment is not None:
            images = self.augment(images, self.generator)
        u = self.model.embed_images(images)
        v = self.model.embed_texts(captions, self.word_dropout, self.generator)
        return self.loss_fn(u, v)

    def fit(self, images: torch.Tensor, labels: torch.Tensor, *, resume: bool = False):
        """Train for ``epochs`` epochs (the remaining ones when ``resume`` finds a checkpoint).

        Returns:
            ``self``.
        """
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (N, C, H, W) tensor, got {got}")
        if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),):
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must be a ({len(images)},) tensor, got {got}")
        if resume and self.checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path")
        n = len(images)
        if n < 2:
            raise ValueError(f"images must hold at least 2 samples, got {n}")
        size = min(self.batch_size, n)
        self._initialize(self.epochs * (n // size))
        if resume and self.checkpoint.exists():
            self._load_checkpoint()
        self.model.train()
        bar = tqdm(
            range(self.epoch_, self.epochs), desc=self.loss, disable=not self.progress, leave=False
        )
        for _ in bar:
            order = torch.randperm(n, generator=self.generator)
            total, count = 0.0, 0
            for start in range(0, n - size + 1, size):
                idx = order[start : start + size]
                loss = self.batch_loss(images[idx], labels[idx])
                if not torch.isfinite(loss):
                    self._diverged()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if not self._loss_parameters_finite():
                    self._diverged()
                self.scheduler.step()
                total, count = total + loss.item(), count + 1
            self.history_.append(total / count)
            self.epoch_ += 1
            bar.set_postfix(loss=f"{self.history_[-1]:.4f}", refresh=False)
            if self.checkpoint is not None:
                save_checkpoint(self.state_dict(), self.checkpoint, kind="align")
        self.model.eval()
        return self


@dataclass
class AlignResult:
    """Zero-shot accuracy and retrieval recall of a trained two-tower model (fractions in [0, 1]).

    Attributes:
        zero_shot_accuracy: mean over the test templates of the accuracy of the classifier whose
            class captions are that template's (one caption per class).
        zero_shot_accuracy_by_template: that accuracy for each test template.
        ensemble_accuracy: accuracy of the prompt ensemble over all test templates.
        recall_at_1, recall_at_5: retrieval recall@k averaged over image→text and text→image.
        recall: recall@k of each direction.
        temperature, bias: the learned values (bias ``None`` for CLIP), and their initial values.
        loss_history: mean training loss per epoch.
        model: the trained towers.
    """

    loss: str
    zero_shot_accuracy: float
    zero_shot_accuracy_by_template: dict[str, float]
    ensemble_accuracy: float
    recall_at_1: float
    recall_at_5: float
    recall: dict[str, dict[int, float]]
    temperature: float
    initial_temperature: float
    bias: float | None
    initial_bias: float | None
    epochs: int
    batch_size: int
    seconds: float
    loss_history: list[float]
    model: TwoTowerModel = field(repr=False)
    config: dict = field(repr=False, default_factory=dict)

    def as_dict(self) -> dict:
        """The numbers, ready for JSON (without the model)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("model", "config")}
        out["recall"] = {d: {str(k): v for k, v in r.items()} for d, r in self.recall.items()}
        return out


def evaluate_alignment(
    model: TwoTowerModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    captions: Sequence[str],
    templates: Sequence[CaptionTemplate] = TEST_TEMPLATES,
) -> dict:
    """Zero-shot accuracies (per template, mean, ensemble) and retrieval recall on test pairs."""
    u = embed_images(model, images)
    by_template = {
        t.phrase: float(
            (zero_shot_predict(u, class_embeddings(model, [t])) == labels).float().mean()
        )
        for t in templates
    }
    ensemble = zero_shot_predict(u, class_embeddings(model, templates))
    recall = retrieval_recall(u, embed_texts(model, captions), labels)
    return {
        "zero_shot_accuracy": sum(by_template.values()) / len(by_template),
        "zero_shot_accuracy_by_template": by_template,
        "ensemble_accuracy": float((ensemble == labels).float().mean()),
        "recall_at_1": (recall["image_to_text"][1] + recall["text_to_image"][1]) / 2,
        "recall_at_5": (recall["image_to_text"][5] + recall["text_to_image"][5]) / 2,
        "recall": recall,
    }


def align(
    *,
    loss: str = "clip",
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 3e-3,
    dim: int = 32,
    width: int = 16,
    word_dropout: float = 0.3,
    test_size: float = 0.3,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    random_state: int = 0,
) -> AlignResult:
    r"""Train CLIP (``loss="clip"``) or SigLIP (``"siglip"``) on captioned digits and evaluate.

    Trains a :class:`TwoTowerModel` with :class:`AlignTrainer` on the training images and
    captions of :func:`~nce.contrastive.captions.load_captioned_digits`, then measures zero-shot
    accuracy and retrieval recall on the test images with the test captions, whose wording never
    occurs in training.

    Args:
        loss: ``"clip"`` or ``"siglip"``.
        epochs, batch_size, lr: training budget, batch size N and peak AdamW learning rate.
        dim: D, the shared embedding size; width: the image encoder's width.
        word_dropout: probability of replacing a training caption's word by ``<unk>``.
        test_size: fraction of the images held out.
        checkpoint, resume: write a checkpoint after each epoch; continue from it.
        progress: show a progress bar.
        random_state: seed of the split, the initialization and every training draw.

    The towers minimize CLIP's symmetric InfoNCE or SigLIP's pairwise loss (formulas in
    :class:`AlignTrainer`). Zero-shot accuracy is the mean, over the test templates t, of the
    fraction of test images :math:`x` whose class :math:`\hat y = \arg\max_c \hat f(x) \cdot
    \hat g(t_c)` is right, with :math:`\hat g(t_c)` the normalized embedding of template t filled
    with class c; the ensemble accuracy uses the normalized mean of the templates' embeddings.

    References:
        Radford et al. 2021, CLIP, arXiv:2103.00020; Zhai et al. 2023, SigLIP, arXiv:2303.15343.

    Example:
        >>> r = align(epochs=1, batch_size=256, width=2, progress=False)
        >>> 0 <= r.zero_shot_accuracy <= 1, r.bias is None, len(r.loss_history)
        (True, True, 1)
    """
    check_int("random_state", random_state, minimum=0)
    data = load_captioned_digits(test_size, random_state)
    vocabulary = build_vocabulary(data.train_captions)
    with seeded(random_state):
        model = TwoTowerModel(vocabulary, dim=dim, width=width)
    trainer = AlignTrainer(
        model,
        loss=loss,
        augment=digits_augmentation(),
        word_dropout=word_dropout,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        checkpoint=checkpoint,
        progress=progress,
        random_state=random_state,
    )
    initial = _loss_module(loss)
    start = time.perf_counter()
    trainer.fit(data.x_train, data.y_train, resume=resume)
    seconds = time.perf_counter() - start
    metrics = evaluate_alignment(model, data.x_test, data.y_test, data.test_captions)
    return AlignResult(
        loss=loss,
        **metrics,
        temperature=_loss_temperature(trainer.loss_fn),
        initial_temperature=_loss_temperature(initial),
        bias=_loss_bias(trainer.loss_fn),
        initial_bias=_loss_bias(initial),
        epochs=epochs,
        batch_size=batch_size,
        seconds=seconds,
        loss_history=list(trainer.history_),
        model=model,
        config={"test_size": test_size, "random_state": random_state},
    )
