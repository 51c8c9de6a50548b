r"""Training a :class:`~nce.retrieval.towers.HashedNgramEncoder` on (query, document) pairs.

A batch holds N pairs; with unit embeddings :math:`q_i, x_i` and
:math:`s_{ij} = q_i \cdot x_j/\tau`:

* ``loss="info_nce"``: the symmetric InfoNCE of :func:`nce.info_nce` over the in-batch pairs,
  :math:`\frac12[\ell(q \to x) + \ell(x \to q)]`, each query picking its document among the
  batch's and each document its query. With ``hard_negatives=K`` each query also brings K mined
  documents (:func:`~nce.retrieval.mining.mine_hard_negatives`, refreshed every ``mine_every``
  epochs), which join the in-batch documents in one softmax scored by every query:
  ``nce.info_nce(q, x, negatives, in_batch=True)``, query → document only.
* ``loss="pairwise_nce"``: SigLIP's sigmoid loss :func:`nce.pairwise_nce` on every pair of the
  batch, with a learned bias (initial −10).

In both, a pair whose document has the same id as query i's (the same text) is not a negative:
InfoNCE masks it (``remove_accidental_hits`` with ``key_ids``), SigLIP counts it as a positive
(``labels``).

The table is trained by :class:`torch.optim.SparseAdam` (only the rows of a batch's features
move), the projections (and the bias) by Adam, both under a cosine schedule. Every random number
(initialization, batch order) comes from ``random_state``; a checkpoint written atomically after
each epoch lets ``fit(..., resume=True)`` continue exactly, bit for bit, as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

import nce
from nce._checkpoint import Checkpoint, load_checkpoint, load_state, save_checkpoint
from nce._divergence import DivergenceError
from nce._random import as_generator, as_seed, seeded
from nce._validation import check_int, check_positive
from nce.retrieval.mining import mine_hard_negatives, text_ids
from nce.retrieval.towers import FeatureTable, HashedNgramEncoder

__all__ = ["DEFAULTS", "LOSSES", "RetrievalTrainer", "hard_negatives_supported"]

LOSSES = ("info_nce", "pairwise_nce")
DEFAULTS = {
    "loss": "info_nce",
    "epochs": 20,
    "batch_size": 512,
    "lr": 1e-2,
    "temperature": 0.05,
    "hard_negatives": 0,
    "mine_every": 1,
}


def hard_negatives_supported() -> bool:
    """Whether this :func:`nce.info_nce` lets given negatives join the in-batch ones."""
    import inspect

    return "in_batch" in inspect.signature(nce.info_nce).parameters


class RetrievalTrainer:
    r"""Train a two-tower text encoder on (query, document) pairs (module docstring).

    With unit embeddings :math:`q_i, x_i` and :math:`s_{ij} = q_i \cdot x_j/\tau`, each batch of N
    pairs minimizes the symmetric InfoNCE :math:`\frac12[\ell(q \to x) + \ell(x \to q)]`,
    :math:`\ell_i(q \to x) = \log\sum_j e^{s_{ij}} - s_{ii}`; with K mined hard negatives per
    query, the query → document loss alone, its sum running over the in-batch and the mined
    documents; or SigLIP's :math:`-\frac1N\sum_{i,j} \log\sigma(z_{ij}(s_{ij} + b))`.

    Args:
        model: the encoder.
        loss: ``"info_nce"`` or ``"pairwise_nce"``.
        epochs: passes over the pairs.
        batch_size: N pairs per step; the last incomplete batch is dropped.
        lr: peak learning rate (cosine schedule to 0).
        temperature: :math:`\tau`.
        hard_negatives: K mined negatives per query (``info_nce`` only); 0: in-batch only.
        mine_every: E, epochs between two minings.
        false_negative_margin: margin m of the false-negative filter (None: id filter only).
        guide: a frozen encoder whose scores decide the margin filter (None: the model's own).
        checkpoint: path written atomically after each epoch.
        progress: show a tqdm bar over epochs.
        random_state: seed of initialization and batch order.

    Attributes:
        history_: mean training loss of each epoch.
        epoch_: epochs done.
        seconds_, cpu_seconds_: wall and CPU time of ``fit``.

    Example:
        >>> enc = HashedNgramEncoder(buckets=512, width=8, dim=8)
        >>> t = RetrievalTrainer(enc, epochs=2, batch_size=2, progress=False)
        >>> len(t.fit(["a", "b", "c", "d"], ["w", "x", "y", "z"]).history_)
        2

    Shape:
        - ``fit`` queries, documents: sequences of N strings, pair i = (queries[i], documents[i])

    References:
        Karpukhin et al. 2020, Dense Passage Retrieval (in-batch negatives), arXiv:2004.04906;
        Xiong et al. 2021, ANCE (re-mined hard negatives), arXiv:2007.00808;
        Zhai et al. 2023, SigLIP, arXiv:2303.15343.
    """

    def __init__(
        self,
        model: HashedNgramEncoder,
        *,
        loss: str = DEFAULTS["loss"],
        epochs: int = DEFAULTS["epochs"],
        batch_size: int = DEFAULTS["batch_size"],
        lr: float = DEFAULTS["lr"],
        temperature: float = DEFAULTS["temperature"],
        hard_negatives: int = DEFAULTS["hard_negatives"],
        mine_every: int = DEFAULTS["mine_every"],
        false_negative_margin: float | None = None,
        guide: HashedNgramEncoder | None = None,
        checkpoint: str | Path | None = None,
        progress: bool = True,
        random_state: int = 0,
    ):
        if not isinstance(model, HashedNgramEncoder):
            raise TypeError(f"model must be a HashedNgramEncoder, got {type(model).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        check_int("epochs", epochs, minimum=1)
        check_int("batch_size", batch_size, minimum=2)
        check_positive("lr", lr)
        check_positive("temperature", temperature)
        check_int("hard_negatives", hard_negatives, minimum=0)
        check_int("mine_every", mine_every, minimum=1)
        if false_negative_margin is not None and not false_negative_margin >= 0:
            raise ValueError(
                f"false_negative_margin must be a number >= 0, got {false_negative_margin}"
            )
        if hard_negatives and loss != "info_nce":
            raise ValueError("hard_negatives needs loss='info_nce'")
        if hard_negatives and not hard_negatives_supported():
            raise ValueError("hard_negatives needs nce.info_nce(..., in_batch=True)")
        self.model = model
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = float(lr)
        self.temperature = float(temperature)
        self.hard_negatives = hard_negatives
        self.mine_every = mine_every
        self.false_negative_margin = false_negative_margin
        self.guide = guide
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.progress = progress
        self.random_state = as_seed(random_state)
        self.history_: list[float] = []
        self.epoch_ = 0
        self.seconds_ = self.cpu_seconds_ = 0.0

    def _initialize(self, steps: int) -> None:
        with seeded(self.random_state):
            self.model.reset_parameters()
        self.bias = torch.nn.Parameter(torch.tensor(-10.0))
        dense = [self.model.query_projection.weight, self.model.document_projection.weight]
        if self.loss == "pairwise_nce":
            dense.append(self.bias)
        self.optimizers = [
            torch.optim.SparseAdam(list(self.model.table.parameters()), lr=self.lr),
            torch.optim.Adam(dense, lr=self.lr),
        ]

        def cosine(step: int) -> float:
            return 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))

        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, cosine) for o in self.optimizers]
        self.generator = as_generator(self.random_state)
        self.negatives_ = torch.empty(0, 0, dtype=torch.int64)
        self.negatives_valid_ = torch.empty(0, 0, dtype=torch.bool)
        self.history_, self.epoch_ = [], 0

    def _config(self) -> dict:
        return {
            "loss": self.loss,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "temperature": self.temperature,
            "hard_negatives": self.hard_negatives,
            "mine_every": self.mine_every,
            "false_negative_margin": self.false_negative_margin,
            "random_state": self.random_state,
            "model": self.model.config,
        }

    def state_dict(self) -> dict:
        """Everything ``fit`` needs to continue: weights, optimizers, schedules, RNG, negatives."""
        return {
            "model": self.model.state_dict(),
            "bias": self.bias.detach().clone(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "generator": self.generator.get_state(),
            "negatives": self.negatives_,
            "negatives_valid": self.negatives_valid_,
            "history": list(self.history_),
            "epoch": self.epoch_,
            "config": self._config(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` of a trainer of the same configuration; a missing or
        mismatched entry raises a :class:`~nce._checkpoint.CheckpointError` naming it."""
        saved = state if isinstance(state, Checkpoint) else Checkpoint(state, "state_dict")
        saved.check_config(self._config())
        load_state(self.model, saved.entry("model", dict), saved, "model")
        for key, targets in (("optimizers", self.optimizers), ("schedulers", self.schedulers)):
            states = saved.entry(key, list)
            if len(states) != len(targets):
                raise saved.error(f"entry {key!r} must hold {len(targets)} states")
            for target, value in zip(targets, states, strict=True):
                load_state(target, value, saved, key)
        with torch.no_grad():
            self.bias.copy_(saved.entry("bias", torch.Tensor))
        saved.restore_generator(self.generator)
        self.negatives_ = saved.entry("negatives", torch.Tensor)
        self.negatives_valid_ = saved.entry("negatives_valid", torch.Tensor)
        self.history_ = [float(v) for v in saved.entry("history", list)]
        self.epoch_ = int(saved.entry("epoch", int))

    def _diverged(self, what: str):
        raise DivergenceError(
            "retrieval training",
            self.epoch_ + 1,
            detail=f"the {self.loss} {what} is no longer finite",
            option="lr",
            value=self.lr,
            also=f"raise temperature (now {self.temperature:g})",
        )

    def _mine(self, queries: FeatureTable, documents: FeatureTable, ids: torch.Tensor) -> None:
        everything = torch.arange(len(queries))
        model = self.model
        with torch.no_grad():
            q = model.encode(*queries.rows(everything), "query")
            x = model.encode(*documents.rows(everything), "document")
            guide = None
            if self.guide is not None:
                guide = (
                    self.guide.encode(*queries.rows(everything), "query"),
                    self.guide.encode(*documents.rows(everything), "document"),
                )
        self.negatives_, self.negatives_valid_ = mine_hard_negatives(
            q,
            x,
            everything,
            self.hard_negatives,
            ids=ids,
            margin=self.false_negative_margin,
            guide=guide,
        )

    def batch_loss(
        self, queries: FeatureTable, documents: FeatureTable, ids: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """The loss of the pairs ``rows``. The batch's distinct table rows are gathered once into
        ``self.batch_rows_`` (U, H) (their ids in ``self.batch_row_ids_``), whose gradient
        :meth:`_step` hands to the sparse optimizer."""
        parts = [queries.rows(rows), documents.rows(rows)]
        chosen = None
        if self.loss == "info_nce" and self.hard_negatives:
            chosen = self.negatives_[rows]
            parts.append(documents.rows(chosen.reshape(-1)))
        unique, inverse = torch.unique(torch.cat([p[0] for p in parts]), return_inverse=True)
        table_rows = self.model.table.weight.detach()[unique].requires_grad_()
        self.batch_row_ids_, self.batch_rows_ = unique, table_rows
        local = inverse.split([len(p[0]) for p in parts])
        sides = ("query", "document", "document")
        q, x, *negatives = (
            self.model.encode(i, p[1], side, table_rows)
            for i, p, side in zip(local, parts, sides, strict=False)
        )
        key_ids = ids[rows]
        tau = self.temperature
        if self.loss == "pairwise_nce":
            return nce.pairwise_nce(q, x, temperature=tau, bias=self.bias, labels=key_ids)
        if chosen is None:
            return nce.info_nce(
                q,
                x,
                temperature=tau,
                symmetric=True,
                remove_accidental_hits=True,
                key_ids=key_ids,
            )
        negative_ids = torch.where(self.negatives_valid_[rows], ids[chosen], key_ids.unsqueeze(1))
        return nce.info_nce(
            q,
            x,
            negatives[0].view(*chosen.shape, -1),
            in_batch=True,
            temperature=tau,
            remove_accidental_hits=True,
            key_ids=key_ids,
            negative_ids=negative_ids,
        )

    def _step(self, loss: torch.Tensor) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        weight = self.model.table.weight
        weight.grad = torch.sparse_coo_tensor(
            self.batch_row_ids_.unsqueeze(0),
            self.batch_rows_.grad,
            weight.shape,
            is_coalesced=True,
            check_invariants=False,
        )
        for optimizer in self.optimizers:
            optimizer.step()
        for scheduler in self.schedulers:
            scheduler.step()

    def fit(self, queries: Sequence[str], documents: Sequence[str], *, resume: bool = False):
        """Train on the pairs (queries[i], documents[i]) for ``epochs`` epochs (the remaining ones
        when ``resume`` finds the checkpoint).

        Shape:
            - queries, documents: sequences of N strings

        Returns:
            ``self``.
        """
        if len(queries) != len(documents):
            raise ValueError(
                f"queries and documents must pair up, got {len(queries)} and {len(documents)}"
            )
        n = len(queries)
        if n < 2:
            raise ValueError(f"training needs at least 2 pairs, got {n}")
        if self.hard_negatives and self.hard_negatives >= n:
            raise ValueError(f"hard_negatives must be < the number of pairs ({n})")
        if resume and self.checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path")
        wall, cpu = time.perf_counter(), time.process_time()
        c = self.model.config
        query_table = FeatureTable(queries, c["buckets"], c["min_n"], c["max_n"])
        document_table = FeatureTable(documents, c["buckets"], c["min_n"], c["max_n"])
        ids = text_ids(documents)
        size = min(self.batch_size, n)
        self._initialize(self.epochs * (n // size))
        if resume and self.checkpoint.exists():
            self.load_state_dict(load_checkpoint(self.checkpoint, kind="retrieval"))
        self.model.train()
        bar = tqdm(
            range(self.epoch_, self.epochs), desc=self.loss, disable=not self.progress, leave=False
        )
        for epoch in bar:
            if self.hard_negatives and epoch % self.mine_every == 0:
                self._mine(query_table, document_table, ids)
            order = torch.randperm(n, generator=self.generator)
            total, count = 0.0, 0
            for start in range(0, n - size + 1, size):
                loss = self.batch_loss(
                    query_table, document_table, ids, order[start : start + size]
                )
                if not torch.isfinite(loss):
                    self._diverged("loss")
                self._step(loss)
                if not all(bool(torch.isfinite(p).all()) for p in self._dense_parameters()):
                    self._diverged("weights")
                total, count = total + loss.item(), count + 1
            self.history_.append(total / count)
            self.epoch_ += 1
            bar.set_postfix(loss=f"{self.history_[-1]:.4f}", refresh=False)
            if self.checkpoint is not None:
                save_checkpoint(self.state_dict(), self.checkpoint, kind="retrieval")
        self.model.eval()
        self.seconds_ = time.perf_counter() - wall
        self.cpu_seconds_ = time.process_time() - cpu
        return self

    def _dense_parameters(self):
        yield self.model.query_projection.weight
        yield self.model.document_projection.weight
        yield self.bias
