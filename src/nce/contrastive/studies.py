r"""Measured studies of contrastive learning's practical claims, on the digits benchmark.

Each study trains small encoders with :class:`~nce.contrastive.trainer.ContrastiveTrainer` and
returns a list of rows (plain dicts of numbers and names), one per setting; the ``nce study``
command and ``benchmarks/study_contrastive.py`` turn them into tables and figures. Runs are lean
by default (an MLP encoder on the 64 pixels, a few epochs, one seed) so that each study takes
minutes on a CPU; :class:`StudyConfig` scales them up.

* ``temperature``: SimCLR reports that the probe accuracy peaks at an intermediate temperature
  :math:`\tau`; Wang & Isola (2020, arXiv:2005.10242) explain it as a trade-off between alignment
  of positives and uniformity of the embedding.
* ``batch-size``: more in-batch negatives give a tighter bound and a less noisy gradient, at a
  higher cost per step. The trace of the gradient covariance over repeated minibatches,
  :math:`V(N) = \mathbb E\lVert g - \bar g\rVert^2`, and the time per step :math:`t(N)` combine into
  the noise left after a fixed time :math:`T`: averaging :math:`T / t(N)` steps leaves
  :math:`V(N)\,t(N) / T`, so the batch size that minimizes :math:`V(N)\,t(N)` balances the two.
  The study also trains each batch size for the same wall-clock budget.
* ``false-negatives``: a random in-batch negative shares the query's class with probability
  :math:`\tau^+ \approx 0.1` on digits. Biased InfoNCE, the debiased loss (Chuang et al. 2020,
  arXiv:2007.00224), hard-negative weighting (Robinson et al. 2021, arXiv:2010.04592) and an oracle
  that masks same-class negatives.
* ``soft-labels``: a fraction x of positive pairs is corrupted (two samples of a batch swap their
  key views, as a tracker that swaps two objects would); hard targets trust the pairing, soft
  targets (:func:`~nce.functional.soft_info_nce`) put 1/2 on each of the two candidates of an
  ambiguous pair.
* ``noise``: negatives drawn from the data (the batch's other samples) against negatives drawn
  from a simple distribution (Gaussian images with the data's per-pixel mean and variance).
* ``features``: the same encoder trained with labels by cross-entropy and by
  :func:`~nce.functional.supervised_info_nce`; effective rank and sparsity of its features.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nce.contrastive.augment import digits_augmentation
from nce.contrastive.data import DigitsSplit
from nce.contrastive.encoders import MLPEncoder, ProjectionHead
from nce.contrastive.evaluate import evaluate_representation
from nce.contrastive.metrics import alignment, effective_rank, sparsity, uniformity
from nce.contrastive.trainer import ContrastiveTrainer
from nce.functional import info_nce, soft_info_nce

__all__ = ["STUDIES", "StudyConfig", "run_study"]


@dataclass(frozen=True)
class StudyConfig:
    """Shared settings of the studies' pretraining runs.

    Args:
        epochs: pretraining epochs per run.
        batch_size: N (the batch-size study varies it).
        temperature: τ (the temperature study varies it).
        hidden: hidden sizes of the MLP encoder on the 64 pixels; the last is the feature size.
        lr: AdamW's peak learning rate.
        seed: ``random_state`` of every run.
        progress: tqdm bars.
    """

    epochs: int = 15
    batch_size: int = 256
    temperature: float = 0.5
    hidden: tuple[int, ...] = (256, 128)
    lr: float = 3e-3
    seed: int = 0
    progress: bool = False


def _trainer(config: StudyConfig, **kw) -> ContrastiveTrainer:
    encoder = MLPEncoder(64, config.hidden)
    head = kw.pop("head") if "head" in kw else ProjectionHead(encoder.out_features, 128, 64)
    kw.setdefault("temperature", config.temperature)
    kw.setdefault("epochs", config.epochs)
    kw.setdefault("batch_size", config.batch_size)
    return ContrastiveTrainer(
        encoder,
        head,
        augment=digits_augmentation(),
        lr=config.lr,
        random_state=config.seed,
        progress=config.progress,
        **kw,
    )


def _probe(trainer: ContrastiveTrainer, data: DigitsSplit) -> dict:
    h_train, h_test = trainer.transform(data.x_train), trainer.transform(data.x_test)
    r = evaluate_representation(h_train, data.y_train, h_test, data.y_test)
    return {
        "linear_probe": r.linear_probe_accuracy,
        "linear_probe_10": r.linear_probe_accuracy_10_per_class,
        "knn": r.knn_accuracy,
    }


def _fit(trainer: ContrastiveTrainer, data: DigitsSplit, labels: bool = False) -> float:
    t0 = time.perf_counter()
    trainer.fit(data.x_train, data.y_train if labels else None)
    return time.perf_counter() - t0


# ------------------------------------------------------------------ temperature


def temperature_study(
    data: DigitsSplit, config: StudyConfig, temperatures=(0.05, 0.1, 0.2, 0.5, 1.0)
) -> list[dict]:
    """NT-Xent at each τ: probes, and alignment / uniformity of the test embeddings z."""
    rows = []
    for t in temperatures:
        trainer = _trainer(config, loss="nt_xent", temperature=t)
        seconds = _fit(trainer, data)
        g = torch.Generator().manual_seed(1)
        augment = digits_augmentation()
        with torch.no_grad():
            trainer.model.eval()
            z1 = trainer.model(augment(data.x_test, g))
            z2 = trainer.model(augment(data.x_test, g))
            z = trainer.model(data.x_test)
        rows.append(
            {
                "temperature": t,
                **_probe(trainer, data),
                "alignment": float(alignment(z1, z2)),
                "uniformity": float(uniformity(z)),
                "final_loss": trainer.history_[-1],
                "seconds": seconds,
            }
        )
    return rows


# ------------------------------------------------------------------ batch size


def _flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def batch_size_study(
    data: DigitsSplit,
    config: StudyConfig,
    sizes=(16, 32, 64, 128, 256, 512, 1024),
    repeats: int = 16,
    budget_seconds: float = 10.0,
) -> list[dict]:
    """Gradient variance and time per step at each N, then training for equal wall-clock time.

    The variance is measured at one parameter point (an encoder pretrained for 2 epochs at N=256):
    ``repeats`` minibatches of size N, each with fresh augmentations, give gradients
    :math:`g_r` of NT-Xent; :math:`V(N) = \\frac{1}{R-1}\\sum_r \\lVert g_r - \\bar g\\rVert^2`.
    """
    base = _trainer(config, loss="nt_xent", epochs=2, batch_size=256)
    base.fit(data.x_train)
    model = base.model
    n = len(data.x_train)
    rows = []
    for size in sizes:
        size = min(size, n)
        g = torch.Generator().manual_seed(size)
        base.generator = g
        model.train()
        grads, times = [], []
        for _ in range(repeats):
            idx = torch.randperm(n, generator=g)[:size]
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = base.batch_loss(data.x_train[idx], idx)
            loss.backward()
            times.append(time.perf_counter() - t0)
            grads.append(_flat_grad(model))
        grads = torch.stack(grads).double()
        variance = float(((grads - grads.mean(0)) ** 2).sum(1).sum() / (repeats - 1))
        step = float(np.median(times))
        rows.append({"batch_size": size, "grad_variance": variance, "seconds_per_step": step})
    # equal wall-clock: the epochs that fit in the budget at the measured time per step
    for row in rows:
        steps_per_epoch = max(1, n // row["batch_size"])
        epochs = max(1, round(budget_seconds / (1.3 * row["seconds_per_step"] * steps_per_epoch)))
        trainer = _trainer(config, loss="nt_xent", batch_size=row["batch_size"], epochs=epochs)
        seconds = _fit(trainer, data)
        row.update(
            {
                "noise_per_time": row["grad_variance"] * row["seconds_per_step"],
                "epochs_in_budget": epochs,
                "train_seconds": seconds,
                **_probe(trainer, data),
            }
        )
    return rows


# ------------------------------------------------------------------ false negatives


def false_negatives_study(
    data: DigitsSplit, config: StudyConfig, tau_plus: float = 0.1, betas=(0.5, 1.0, 2.0, 6.0)
) -> list[dict]:
    """Biased InfoNCE, debiased (τ⁺), hard negatives (τ⁺, β) and the same-class-masking oracle."""
    t = config.temperature

    def oracle(z1, z2, labels):
        return info_nce(z1, z2, temperature=t, remove_accidental_hits=True, key_ids=labels)

    variants = [
        ("biased info_nce", {"loss": "info_nce"}),
        (f"debiased τ⁺={tau_plus}", {"loss": "debiased_info_nce", "tau_plus": tau_plus}),
    ]
    variants += [
        (
            f"hard τ⁺={tau_plus}, β={b:g}",
            {"loss": "debiased_info_nce", "tau_plus": tau_plus, "beta": b},
        )
        for b in betas
    ]
    variants.append(("oracle (same class masked)", {"loss": oracle}))
    labels = data.y_train
    same = float((labels[:, None] == labels[None, :]).double().mean())
    rows = []
    for name, spec in variants:
        spec = dict(spec)
        loss = spec.pop("loss")
        trainer = _trainer(config, loss=loss, loss_options=spec)
        seconds = _fit(trainer, data, labels=callable(loss))
        rows.append(
            {"method": name, **_probe(trainer, data), "same_class_rate": same, "seconds": seconds}
        )
    return rows


# ------------------------------------------------------------------ soft labels


def _ambiguous_pairs(n: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """round(rate·n / 2) disjoint pairs (P, 2) of batch positions."""
    pairs = round(rate * n / 2)
    return torch.randperm(n, generator=generator)[: 2 * pairs].view(pairs, 2)


def corrupted_pair_loss(rate: float, soft: bool, temperature: float, seed: int = 0) -> Callable:
    """A loss ``f(z1, z2, labels)`` on batches whose positive pairs are partly swapped.

    In each batch, a fraction ``rate`` of the samples is grouped into ambiguous pairs (i, j) whose
    key views are swapped: query i is shown a view of j as its positive. Hard targets keep the
    identity; soft targets put 1/2 on keys i and j for both queries of the pair.
    """
    generator = torch.Generator().manual_seed(seed)

    def loss(z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        n = z1.shape[0]
        pairs = _ambiguous_pairs(n, rate, generator)
        order = torch.arange(n)
        order[pairs[:, 0]], order[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
        keys = z2[order]
        targets = torch.eye(n, dtype=z1.dtype)
        if soft and len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            for a, b in ((i, j), (j, i)):
                targets[a, a] = 0.5
                targets[a, b] = 0.5
        return soft_info_nce(z1, keys, targets, temperature=temperature)

    return loss


def soft_labels_study(data: DigitsSplit, config: StudyConfig, rates=(0.0, 0.1, 0.3)) -> list[dict]:
    """Hard against soft targets when x% of the positive pairs are swapped."""
    rows = []
    for rate in rates:
        for soft in (False, True) if rate > 0 else (False,):
            fn = corrupted_pair_loss(rate, soft, config.temperature, seed=config.seed)
            trainer = _trainer(config, loss=fn)
            seconds = _fit(trainer, data)
            rows.append(
                {
                    "corrupted": rate,
                    "targets": "soft" if soft else "hard",
                    **_probe(trainer, data),
                    "seconds": seconds,
                }
            )
    return rows


# ------------------------------------------------------------------ noise choice


def noise_study(data: DigitsSplit, config: StudyConfig) -> list[dict]:
    """In-batch data negatives against N Gaussian-noise images per step as the negatives.

    The noise images have the training pixels' mean and standard deviation, pixel by pixel; they
    are embedded with the running batch-norm statistics so that they do not shift them.
    """
    flat = data.x_train.flatten(1)
    mean, std = flat.mean(0), flat.std(0)
    holder: dict = {}
    generator = torch.Generator().manual_seed(config.seed)
    t = config.temperature

    def gaussian_negatives(z1, z2, labels=None):
        model = holder["model"]
        noise = mean + std * torch.randn(z1.shape[0], flat.shape[1], generator=generator)
        model.eval()
        negatives = model(noise.view(-1, 1, 8, 8))
        model.train()
        return info_nce(z1, z2, negatives, temperature=t)

    rows = []
    for name, loss in (("data (in-batch)", "info_nce"), ("Gaussian noise images", None)):
        trainer = _trainer(config, loss=loss if loss else gaussian_negatives)
        holder["model"] = trainer.model
        seconds = _fit(trainer, data)
        rows.append({"negatives": name, **_probe(trainer, data), "seconds": seconds})
    return rows


# ------------------------------------------------------------------ features


def features_study(data: DigitsSplit, config: StudyConfig) -> list[dict]:
    """Cross-entropy against supervised_info_nce on the same encoder: rank and sparsity of h."""

    def cross_entropy(z1, z2, labels):
        return 0.5 * (F.cross_entropy(z1, labels) + F.cross_entropy(z2, labels))

    classes = int(data.y_train.max()) + 1
    rows = []
    for name, loss in (
        ("cross-entropy", cross_entropy),
        ("supervised_info_nce", "supervised_info_nce"),
    ):
        kw = {"head": nn.Linear(config.hidden[-1], classes)} if callable(loss) else {}
        trainer = _trainer(config, loss=loss, **kw)
        seconds = _fit(trainer, data, labels=True)
        h = trainer.transform(data.x_test)
        rows.append(
            {
                "training": name,
                **_probe(trainer, data),
                "effective_rank": float(effective_rank(h)),
                "sparsity": float(sparsity(h)),
                "active_units": int((h.abs().amax(0) > 0).sum()),
                "feature_dim": int(h.shape[1]),
                "seconds": seconds,
            }
        )
    return rows


STUDIES: dict[str, Callable] = {
    "temperature": temperature_study,
    "batch-size": batch_size_study,
    "false-negatives": false_negatives_study,
    "soft-labels": soft_labels_study,
    "noise": noise_study,
    "features": features_study,
}


def run_study(name: str, data: DigitsSplit, config: StudyConfig | None = None, **kw) -> list:
    """Run the study called ``name`` (a key of ``STUDIES``) and return its rows.

    Example:
        >>> sorted(STUDIES)[:3]
        ['batch-size', 'false-negatives', 'features']
    """
    if name not in STUDIES:
        raise ValueError(f"study must be one of {tuple(STUDIES)}, got {name!r}")
    return STUDIES[name](data, config or StudyConfig(), **kw)


def with_overrides(config: StudyConfig, **kw) -> StudyConfig:
    """``config`` with the given fields replaced (``None`` values are ignored)."""
    return replace(config, **{k: v for k, v in kw.items() if v is not None})
