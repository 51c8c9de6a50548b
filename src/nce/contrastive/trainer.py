r"""Two-view contrastive training: SimCLR, and MoCo with a momentum encoder and a queue.

**SimCLR** (Chen et al. 2020, arXiv:2002.05709). Each sample :math:`x_i` of a batch is augmented
twice, :math:`v_i = t(x_i)`, :math:`v'_i = t'(x_i)`; the encoder and projection head map them to
:math:`z_i = g(f(v_i))`, :math:`z'_i = g(f(v'_i))`, and a contrastive loss makes
:math:`(z_i, z'_i)` the positive pair among the other samples' views. With NT-Xent,

.. math:: \ell_i = -\log \frac{e^{\cos(z_i, z'_i)/\tau}}
          {\sum_{a \ne z_i} e^{\cos(z_i, a)/\tau}},

the sum running over the 2N − 1 other views. This is NCE with the noise drawn from the data: the
negatives are other samples, and the optimal critic is the log density ratio of positive pairs to
independent pairs, so the loss bounds the mutual information between the views
(:math:`I \ge \log(2N-1) - \ell`).

**MoCo** (He et al. 2020, arXiv:1911.05722). The key view goes through a momentum copy of the
network (:class:`~nce.contrastive.momentum.MomentumEncoder`) and the negatives are the keys of past
batches in a :class:`~nce.contrastive.queue.KeyQueue`: ``info_nce(q, k, negatives=queue)``. The
current keys join the queue after the loss, and queued keys of the same sample are masked, so no
query meets its own positive among its negatives. The first step, with an empty queue, uses the
batch's other keys.

The trainer optimizes with AdamW under a cosine learning-rate schedule (one step per batch), draws
every random number (initialization, shuffling, augmentations) from ``random_state``, and can write
an atomic checkpoint after each epoch from which ``fit(..., resume=True)`` continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from nce._checkpoint import Checkpoint, load_checkpoint, load_state, save_checkpoint
from nce._convert import as_float_tensor
from nce._divergence import DivergenceError
from nce._random import as_seed, check_random_state, seeded
from nce._validation import check_in_range, check_int, check_positive, shape_str
from nce.contrastive.momentum import MomentumEncoder
from nce.contrastive.queue import KeyQueue
from nce.functional import (
    debiased_info_nce,
    info_nce,
    nt_xent,
    soft_info_nce,
    supervised_info_nce,
)

__all__ = ["LOSSES", "ContrastiveTrainer", "DivergenceError"]

_LOSS_FUNCTIONS = {
    "nt_xent": nt_xent,
    "info_nce": info_nce,
    "debiased_info_nce": debiased_info_nce,
    "supervised_info_nce": supervised_info_nce,
    "soft_info_nce": soft_info_nce,
}
LOSSES = tuple(_LOSS_FUNCTIONS)

# Keywords the trainer sets itself: the temperature (its own argument), the mean over the batch,
# and the per-batch ids and corrections of MoCo's queue.
_SET_BY_TRAINER = {"temperature", "reduction", "log_q", "key_ids", "negative_ids"}
_SET_BY_TRAINER_FOR = {"info_nce": {"remove_accidental_hits"}}
# Options of the trainer's own targets for soft_info_nce.
_TRAINER_LOSS_OPTIONS = {"soft_info_nce": {"smoothing", "targets"}}


def _loss_option_names(loss: str) -> set[str]:
    """The ``loss_options`` the named loss takes: its function's keyword-only options that the
    trainer does not set itself, and the trainer's own options of that loss."""
    parameters = inspect.signature(_LOSS_FUNCTIONS[loss]).parameters.values()
    keywords = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    keywords -= _SET_BY_TRAINER | _SET_BY_TRAINER_FOR.get(loss, set())
    return keywords | _TRAINER_LOSS_OPTIONS.get(loss, set())


def _check_loss_options(loss: str, options: dict) -> None:
    if "temperature" in options:
        raise ValueError("pass the temperature as temperature=, not in loss_options")
    allowed = _loss_option_names(loss)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"loss_options {unknown} are not options of loss={loss!r}, which takes "
            f"{sorted(allowed) or 'none'} (the trainer sets temperature, reduction and the "
            "per-batch ids itself)"
        )


def _as_labels(y, n: int) -> torch.Tensor:
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(np.ascontiguousarray(y))
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a numpy array or a torch.Tensor, got {type(y).__name__}")
    if y.is_floating_point() or y.dtype == torch.bool:
        if y.is_floating_point() and bool((y == y.round()).all()):
            y = y.long()
        else:
            raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X, got {shape_str(y)}")
    return y.long()


class ContrastiveTrainer:
    r"""Train ``encoder`` (and a projection ``head``) with a two-view contrastive loss.

    Each step draws two views of each sample of the batch and minimizes
    :math:`L(z, z')` with :math:`z_i = g(f(t(x_i)))`, :math:`z'_i = g(f(t'(x_i)))`: e.g. NT-Xent,
    :math:`\ell_i = -\log \big(e^{\cos(z_i, z'_i)/\tau} / \sum_{a \ne z_i}
    e^{\cos(z_i, a)/\tau}\big)` over the 2N − 1 other views; with ``moco=True`` the keys
    :math:`z'` come from a momentum copy of the network and the negatives from a queue of past
    keys.

    Args:
        encoder: the network :math:`f` whose output :math:`h` is the representation.
        head: the projection head :math:`g` (``None``: :math:`z = h`).
        loss: one of ``LOSSES`` or a callable ``loss(z1, z2, labels) -> scalar`` (``labels`` is
            ``None`` when ``fit`` got no ``y``). ``supervised_info_nce`` needs ``y``.
        temperature: :math:`\tau > 0` passed to the named losses.
        loss_options: extra keyword arguments of the named loss, passed to it on every batch
            (e.g. ``{"tau_plus": 0.1, "beta": 1.0}`` for ``debiased_info_nce``, required there;
            ``{"chunk_size": 128}`` for any loss that tiles). Options the loss does not take,
            and those the trainer sets itself (``temperature``, ``reduction``, per-batch ids),
            are refused. For ``soft_info_nce`` also ``{"smoothing": ε}`` (default 0.1), which
            spreads ε of each target uniformly over the other keys, or ``{"targets": fn}`` with
            ``fn(indices, labels) -> (N, N)`` giving the targets.
        augment: ``t(x, generator) -> x`` making a view (``None``: identity).
        epochs: passes over the data.
        batch_size: N; the last incomplete batch is dropped when the data hold more than one batch.
        lr: peak learning rate of AdamW, decayed to 0 by a cosine schedule over all steps.
        weight_decay: AdamW's decoupled weight decay.
        moco: use a momentum key encoder and a queue of negatives (``loss`` must be
            ``"info_nce"``).
        momentum: :math:`m` of the key encoder.
        queue_size: M, the number of queued negatives.
        checkpoint: path of the checkpoint written (atomically) every ``checkpoint_every`` epochs
            and at the end; ``fit(..., resume=True)`` continues from it.
        checkpoint_every: epochs between checkpoints.
        progress: show a tqdm bar over epochs.
        random_state: ``None``, an int or a :class:`torch.Generator`: the seed of every random
            draw of ``fit`` (weight initialization, shuffling and augmentations); torch's global
            generator is left as it was.
        reinitialize: ``fit`` first re-initializes every submodule that has
            ``reset_parameters`` (from ``random_state``); ``False`` keeps the given weights
            (fine-tuning a pretrained encoder).
        device: where training runs.
        callback: ``callback(trainer, epoch, loss)`` after each epoch (and its checkpoint);
            returning ``True`` stops training.

    Attributes:
        history_: mean training loss of each epoch done so far.
        epoch_: number of epochs done.

    Raises:
        DivergenceError: from ``fit``, when the loss, the embeddings or the weights become NaN or
            infinite during training (lower ``lr``); the last checkpoint written stays the last
            good one.

    Shape:
        - X: (N_data, ...) samples the encoder accepts (images (N, C, H, W), vectors (N, D))
        - y: (N_data,) integer labels, optional
        - transform output: (N_data, F) representations h

    References:
        Chen et al. 2020, SimCLR, arXiv:2002.05709; He et al. 2020, MoCo, arXiv:1911.05722.

    Example:
        >>> import torch
        >>> from nce.contrastive import ContrastiveTrainer, MLPEncoder, ProjectionHead
        >>> from nce.contrastive.augment import GaussianNoise
        >>> enc = MLPEncoder(16, (32,))
        >>> trainer = ContrastiveTrainer(enc, ProjectionHead(32, 32, 8), augment=GaussianNoise(0.1),
        ...                              epochs=2, batch_size=32, progress=False)
        >>> trainer.fit(torch.randn(64, 16)).transform(torch.randn(5, 16)).shape
        torch.Size([5, 32])
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module | None = None,
        *,
        loss: str | Callable = "nt_xent",
        temperature: float = 0.2,
        loss_options: dict | None = None,
        augment: Callable | None = None,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        moco: bool = False,
        momentum: float = 0.99,
        queue_size: int = 1024,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 1,
        progress: bool = True,
        random_state: int | torch.Generator | None = 0,
        reinitialize: bool = True,
        device: str | torch.device = "cpu",
        callback: Callable | None = None,
    ):
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        if head is not None and not isinstance(head, nn.Module):
            raise TypeError(f"head must be a torch.nn.Module or None, got {type(head).__name__}")
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
        elif not callable(loss):
            raise TypeError(f"loss must be a loss name or a callable, got {type(loss).__name__}")
        check_positive("temperature", temperature)
        loss_options = dict(loss_options or {})
        if isinstance(loss, str):
            _check_loss_options(loss, loss_options)
        elif loss_options:
            raise ValueError(
                "loss_options apply to a named loss; a callable loss takes its options itself"
            )
        if loss == "debiased_info_nce" and "tau_plus" not in loss_options:
            raise ValueError(
                "loss='debiased_info_nce' needs loss_options={'tau_plus': ...} (the class prior)"
            )
        if loss == "soft_info_nce":
            check_in_range("loss_options['smoothing']", loss_options.get("smoothing", 0.1), 0, 1)
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be callable or None, got {type(augment).__name__}")
        check_int("epochs", epochs, minimum=1)
        check_int("batch_size", batch_size, minimum=2)
        check_positive("lr", lr)
        check_in_range("weight_decay", weight_decay, 0.0, math.inf)
        if moco and loss != "info_nce":
            raise ValueError(f"moco=True trains with loss='info_nce', got loss={loss!r}")
        check_in_range("momentum", momentum, 0.0, 1.0, closed_high=True)
        check_int("queue_size", queue_size, minimum=1)
        check_int("checkpoint_every", checkpoint_every, minimum=1)
        check_random_state(random_state)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")

        self.encoder = encoder
        self.head = head if head is not None else nn.Identity()
        self.loss = loss
        self.temperature = float(temperature)
        self.loss_options = loss_options
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.moco = bool(moco)
        self.momentum = float(momentum)
        self.queue_size = queue_size
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.random_state = random_state
        self.reinitialize = bool(reinitialize)
        self.device = torch.device(device)
        self.callback = callback
        self.model = nn.Sequential(self.encoder, self.head).to(self.device)
        self.history_: list[float] = []
        self.epoch_ = 0
        self._data_shape: list[int] | None = None

    # ------------------------------------------------------------------ setup

    def _initialize(self, steps: int) -> None:
        seed = as_seed(self.random_state)
        if self.reinitialize:
            with seeded(seed):
                for module in self.model.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)
        self.key_model = None
        self.queue = None
        if self.moco:
            self.model.train()  # the key encoder is a copy: keys use batch statistics too
            self.key_model = MomentumEncoder(self.model, self.momentum).to(self.device)
            self.model.eval()
            with torch.no_grad():
                dim = self.model(self._probe_input).shape[1]
            self.model.train()
            self.queue = KeyQueue(self.queue_size, dim).to(self.device)
        self.history_, self.epoch_ = [], 0

    def state_dict(self) -> dict:
        """Everything ``fit`` needs to continue: weights, optimizer, schedule, RNG, queue."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "key_model": None if self.key_model is None else self.key_model.state_dict(),
            "queue": None if self.queue is None else self.queue.state_dict(),
            "history": list(self.history_),
            "epoch": self.epoch_,
            "config": self._config(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` written by a trainer of the same configuration; a missing or
        unfitting entry raises :class:`~nce._checkpoint.CheckpointError` naming it."""
        if not isinstance(state, Checkpoint):
            state = Checkpoint(state, "checkpoint")
        state.check_config(self._config())
        load_state(self.model, state.entry("model", dict), state, "model")
        load_state(self.optimizer, state.entry("optimizer", dict), state, "optimizer")
        load_state(self.scheduler, state.entry("scheduler", dict), state, "scheduler")
        state.restore_generator(self.generator)
        if self.key_model is not None:
            load_state(self.key_model, state.entry("key_model", dict), state, "key_model")
            load_state(self.queue, state.entry("queue", dict), state, "queue")
        self.history_ = list(state.entry("history", list))
        self.epoch_ = int(state.entry("epoch", int))

    def save(self, path: str | Path) -> None:
        """Write ``state_dict()`` to ``path`` atomically, in the library's checkpoint format
        (:mod:`nce._checkpoint`: a content hash, verified when :meth:`load` reads it)."""
        save_checkpoint(self.state_dict(), path, kind="contrastive")

    def load(self, path: str | Path) -> None:
        """Restore the checkpoint file at ``path`` (:meth:`save`; files of earlier versions too)."""
        self.load_state_dict(load_checkpoint(path, kind="contrastive", legacy=_legacy_reason))

    def _config(self) -> dict:
        return {
            "loss": self.loss if isinstance(self.loss, str) else "callable",
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "moco": self.moco,
            "queue_size": self.queue_size if self.moco else None,
            "random_state": (
                "torch.Generator"
                if isinstance(self.random_state, torch.Generator)
                else self.random_state
            ),
            "data_shape": self._data_shape,
        }

    # --------------------------------------------------------------- training

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.augment is None else self.augment(x, self.generator)

    def batch_loss(
        self, x: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss of one batch ``x`` (two fresh views of each sample), with gradients.

        ``indices`` (N,) are the samples' positions in the data set (MoCo's queue ids, soft
        targets); ``labels`` (N,) are needed by ``supervised_info_nce``. In MoCo mode the batch's
        keys are enqueued after the loss and the key encoder takes its momentum step.
        """
        v1, v2 = self._view(x), self._view(x)
        if self.moco:
            return self._moco_loss(v1, v2, indices)
        z = self._check_outputs(self.model(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        return self._named_loss(z1, z2, indices, labels)

    def _named_loss(self, z1, z2, indices, labels):
        t, opts = self.temperature, self.loss_options
        if callable(self.loss):
            return self.loss(z1, z2, labels)
        if self.loss == "nt_xent":
            return nt_xent(z1, z2, temperature=t, **opts)
        if self.loss == "info_nce":
            return info_nce(z1, z2, temperature=t, **opts)
        if self.loss == "debiased_info_nce":
            return debiased_info_nce(z1, z2, temperature=t, **opts)
        if self.loss == "supervised_info_nce":
            if labels is None:
                raise ValueError("loss='supervised_info_nce' needs labels: call fit(X, y)")
            return supervised_info_nce(
                torch.cat([z1, z2]), torch.cat([labels, labels]), temperature=t, **opts
            )
        own = _TRAINER_LOSS_OPTIONS["soft_info_nce"]
        if "targets" in opts:
            targets = opts["targets"](indices, labels).to(z1)
        else:
            n, eps = z1.shape[0], opts.get("smoothing", 0.1)
            eye = torch.eye(n, dtype=z1.dtype, device=z1.device)
            targets = (1 - eps) * eye + eps * (1 - eye) / (n - 1)
        options = {key: value for key, value in opts.items() if key not in own}
        return soft_info_nce(z1, z2, targets, temperature=t, **options)

    def _moco_loss(self, v1, v2, indices):
        q = self._check_outputs(self.model(v1))
        k = self._check_outputs(self.key_model(v2))
        if len(self.queue) == 0:
            loss = info_nce(q, k, temperature=self.temperature, **self.loss_options)
        else:
            loss = info_nce(
                q,
                k,
                self.queue.keys,
                temperature=self.temperature,
                remove_accidental_hits=True,
                key_ids=indices,
                negative_ids=self.queue.ids,
                **self.loss_options,
            )
        self.queue.enqueue(torch.nn.functional.normalize(k, dim=1), indices)
        return loss

    def _steps_taken(self) -> int:
        return self.scheduler.last_epoch if hasattr(self, "scheduler") else 0

    def _diverged(self) -> DivergenceError:
        return DivergenceError("contrastive training", self.epoch_ + 1, option="lr", value=self.lr)

    def _not_finite(self, what: str) -> Exception:
        """The reason ``what`` is NaN or infinite for finite data: divergence once the weights
        have been stepped; before the first step, X too large for the network (or the loss)."""
        if self._steps_taken() > 0:
            return self._diverged()
        return ValueError(
            f"{what} is NaN or infinite before any training step although X is finite: X's "
            "values are too large for the network (scale X)"
        )

    def _check_outputs(self, z: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(z).all()):
            raise self._not_finite("the network's output")
        return z

    def _check_weights(self) -> None:
        """Weights and running statistics (batch norm's) must be finite after an epoch."""
        for value in self.model.state_dict().values():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise self._diverged()

    def _batches(self, n: int) -> list[torch.Tensor]:
        order = torch.randperm(n, generator=self.generator)
        size = min(self.batch_size, n)
        stop = n - n % size if n > size else n
        return [order[i : i + size] for i in range(0, stop, size)]

    def _steps_per_epoch(self, n: int) -> int:
        return max(1, n // min(self.batch_size, n))

    def fit(self, X, y=None, *, resume: bool = False) -> ContrastiveTrainer:
        """Train for ``epochs`` epochs (the remaining ones when ``resume`` finds a checkpoint).

        Args:
            X: the unlabeled samples, numpy array or tensor.
            y: integer labels (only ``supervised_info_nce`` and label-aware targets use them).
            resume: continue from ``checkpoint`` when that file exists.

        Returns:
            ``self``.
        """
        x = self._as_input("X", X)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"X must hold at least 2 samples, got shape {shape_str(x)}")
        labels = None if y is None else _as_labels(y, n).to(self.device)
        if self.moco and self.queue_size < min(self.batch_size, n):
            raise ValueError(
                f"queue_size ({self.queue_size}) must hold at least one batch of keys "
                f"({min(self.batch_size, n)})"
            )
        self._data_shape = list(x.shape)
        if resume and self.checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path")
        self._probe_input = self.augment(x[:2], torch.Generator()) if self.augment else x[:2]
        self._initialize(self.epochs * self._steps_per_epoch(n))
        if resume and self.checkpoint.exists():
            self.load(self.checkpoint)
        self.model.train()
        bar = tqdm(
            range(self.epoch_, self.epochs),
            desc=f"{self.loss if isinstance(self.loss, str) else 'contrastive'}",
            disable=not self.progress,
            leave=False,
        )
        for _ in bar:
            total, count = 0.0, 0
            for idx in self._batches(n):
                idx = idx.to(self.device)
                loss = self.batch_loss(x[idx], idx, None if labels is None else labels[idx])
                if not bool(torch.isfinite(loss)):
                    raise self._not_finite("the loss")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                if self.key_model is not None:
                    self.key_model.update(self.model)
                total, count = total + loss.item(), count + 1
            self._check_weights()
            self.history_.append(total / count)
            self.epoch_ += 1
            bar.set_postfix(loss=f"{self.history_[-1]:.4f}", refresh=False)
            if self.checkpoint is not None and (
                self.epoch_ % self.checkpoint_every == 0 or self.epoch_ == self.epochs
            ):
                self.save(self.checkpoint)
            if self.callback is not None and self.callback(self, self.epoch_, self.history_[-1]):
                break
        self.model.eval()
        return self

    def _as_input(self, name: str, X) -> torch.Tensor:
        """``X`` as a finite tensor (N, ...) of the network's dtype, on its device."""
        parameter = next(self.model.parameters(), None)
        dtype = parameter.dtype if parameter is not None else torch.float32
        x = as_float_tensor(name, X, ndim=None, dtype=dtype)
        if x.dim() < 2:
            raise ValueError(
                f"{name} must have a batch axis and features, got shape {shape_str(x)}"
            )
        return x.to(self.device)

    @torch.no_grad()
    def transform(self, X, batch_size: int = 1024) -> torch.Tensor:
        """Representations :math:`h = f(x)` of the encoder in evaluation mode, shape (N, F)."""
        x = self._as_input("X", X)
        was_training = self.encoder.training
        self.encoder.eval()
        out = torch.cat([self.encoder(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        self.encoder.train(was_training)
        return out.cpu()


def _legacy_reason(state: dict) -> str | None:
    """None for a trainer checkpoint written before the checkpoint format (a bare dict)."""
    missing = [k for k in ("config", "model", "generator") if k not in state]
    return f"no {', '.join(map(repr, missing))}" if missing else None
