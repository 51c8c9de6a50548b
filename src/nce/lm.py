r"""A word-level recurrent language model whose output layer is an :class:`nce.output.NCEOutput`.

Embedding → LSTM (or GRU) → output over the vocabulary, trained by truncated backpropagation
through time on a token stream cut into ``batch_size`` parallel streams. The output layer trains
with NCE, ranking NCE or the full softmax; evaluation is always the exact normalized perplexity

.. math:: \mathrm{PPL} = \exp\Big(-\frac1T\sum_t \log p(w_t \mid w_{<t})\Big).

Training checkpoints (the library's checkpoint format, :mod:`nce._checkpoint`, with a content
hash verified on load) hold everything a resumed run needs to continue exactly: parameters,
optimizer state, the noise sampler's and the dropout's random states, the position in the data,
and the configuration and training options, which a resume must repeat.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from nce._checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from nce._deprecation import renamed_keywords
from nce._divergence import DivergenceError
from nce._random import as_generator, as_seed, check_random_state, seeded
from nce._validation import check_in_range, check_int
from nce.noise.unigram import Unigram
from nce.optim import LazyAdam, clip_grad_norm_
from nce.output import NCEOutput

EVAL_BATCH = 16  # parallel streams when measuring perplexity and log Z
SELF_NORMALIZATION_ROWS = 32  # contexts per step whose exact log Z the self-normalization uses


@dataclass(frozen=True)
class LMConfig:
    r"""Hyperparameters of :class:`LanguageModel` (saved in checkpoints).

    ``shared_noise=False`` draws k noise words per target word, as Mnih & Teh (2012) do; ``True``
    draws k for the whole batch, which is cheaper but, measured on the KJV (BENCHMARKS.md), makes
    binary NCE learn far more slowly: use it with ``loss="ranking"`` and a large k.
    ``noise_power`` α sets the noise distribution :math:`q(w) \propto c_w^{\alpha}` from the
    training counts :math:`c_w` (1: the unigram distribution of Mnih & Teh; 0.75, the default,
    flattens it as Mikolov et al. 2013 do). ``self_normalization`` α adds the self-normalization
    term of Devlin et al. (2014), :math:`\alpha\,\overline{\log^2 Z(h)}`, to the training loss (see
    :meth:`LanguageModel.loss`); 0, the default, leaves it out.
    """

    vocab_size: int
    dim: int = 256
    hidden: int = 256
    cell: str = "lstm"
    tied: bool = False
    dropout: float = 0.2
    loss: str = "nce"
    num_samples: int = 25
    shared_noise: bool = False
    log_z: str | float = 0.0
    noise_power: float = 0.75
    self_normalization: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "dim", "hidden", "num_samples"):
            check_int(name, getattr(self, name), minimum=2 if name == "vocab_size" else 1)
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {self.cell!r}")
        if self.loss not in ("nce", "ranking", "full"):
            raise ValueError(f"loss must be 'nce', 'ranking' or 'full', got {self.loss!r}")
        for name in ("tied", "shared_noise"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        check_in_range("dropout", self.dropout, 0.0, 1.0)
        check_in_range("noise_power", self.noise_power, 0.0, math.inf)
        check_in_range("self_normalization", self.self_normalization, 0.0, math.inf)
        finite = isinstance(self.log_z, (int, float)) and math.isfinite(self.log_z)
        if isinstance(self.log_z, bool) or not (finite or self.log_z in ("learned", "context")):
            raise ValueError(
                f"log_z must be 'learned', 'context' or a finite number, got {self.log_z!r}"
            )

    @classmethod
    def from_dict(cls, config) -> LMConfig:
        """The config saved in a checkpoint (``asdict(config)``); unknown or missing fields and
        bad values raise ValueError or TypeError naming them."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise ValueError(f"config has unknown field(s) {', '.join(map(repr, unknown))}")
        if "vocab_size" not in config:
            raise ValueError("config has no 'vocab_size'")
        return cls(**config)


def parameter_shapes(config: LMConfig) -> dict[str, tuple[int, ...]]:
    """The shapes of the :class:`LanguageModel` weights whose size the config sets: G = 4 gates
    for an LSTM, 3 for a GRU; V vocabulary, D ``dim``, H ``hidden``.

    Shape:
        - ``embedding.weight``: (V, D); ``rnn.weight_ih_l0``: (G·H, D);
          ``rnn.weight_hh_l0``: (G·H, H); ``output.embedding.weight``: (V, H);
          ``output.bias.weight``: (V, 1)
    """
    v, d, h = config.vocab_size, config.dim, config.hidden
    gates = 4 if config.cell == "lstm" else 3
    return {
        "embedding.weight": (v, d),
        "rnn.weight_ih_l0": (gates * h, d),
        "rnn.weight_hh_l0": (gates * h, h),
        "output.embedding.weight": (v, h),
        "output.bias.weight": (v, 1),
    }


class LanguageModel(nn.Module):
    r"""Embedding, one recurrent layer and an :class:`NCEOutput` over ``counts``' vocabulary.

    The hidden state :math:`h_t = \mathrm{RNN}(e_{w_1}, \dots, e_{w_t})` (an LSTM or a GRU on the
    word embeddings, with dropout) scores the next word as :math:`s(w, h_t) = h_t^\top u_w + b_w`,
    and the model is :math:`p(w_{t+1} = w \mid w_{\le t}) = e^{s(w, h_t)} / \sum_{v} e^{s(v, h_t)}`;
    training uses the output layer's NCE, ranking NCE or full softmax loss.

    Shape:
        - ids: (B, T) int64; ``hidden_states``: (B, T, H)

    References:
        Mnih & Teh 2012, arXiv:1206.6426 (NCE for language models); Zaremba et al. 2014,
        Recurrent Neural Network Regularization, arXiv:1409.2329 (the LSTM with dropout).
    """

    def __init__(self, config: LMConfig, counts: torch.Tensor):
        super().__init__()
        if not isinstance(config, LMConfig):
            raise TypeError(f"config must be an LMConfig, got {type(config).__name__}")
        counts = torch.as_tensor(counts)
        if counts.shape != (config.vocab_size,):
            raise ValueError(
                f"counts has shape {tuple(counts.shape)} but the vocabulary has "
                f"{config.vocab_size} words"
            )
        if config.tied and config.dim != config.hidden:
            raise ValueError(f"tied=True needs dim == hidden, got {config.dim} and {config.hidden}")
        if config.loss != "full" and config.num_samples >= config.vocab_size:
            raise ValueError(
                f"num_samples (k = {config.num_samples}) must be below the vocabulary size "
                f"V = {config.vocab_size}"
            )
        self.config = config
        self.counts = counts.detach().cpu()
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = rnn(config.dim, config.hidden, batch_first=True)
        self.drop = nn.Dropout(config.dropout)
        self.output = NCEOutput(
            config.vocab_size,
            config.hidden,
            Unigram(counts.clamp(min=1).double(), power=config.noise_power),
            config.num_samples,
            loss=config.loss,
            shared_noise=config.shared_noise,
            log_z=config.log_z,
        )
        self.embedding = (
            self.output.embedding if config.tied else nn.Embedding(config.vocab_size, config.dim)
        )

    def hidden_states(self, ids: torch.Tensor, state=None):
        """The hidden states (B, T, H) of the token ids (B, T), and the recurrent state to carry."""
        out, state = self.rnn(self.drop(self.embedding(ids)), state)
        return self.drop(out), state

    def loss(self, inputs, targets, state=None, generator=None):
        r"""The training loss (shape ()) on next-token targets (B, T) given the inputs (B, T),
        and the carried state: the output layer's loss, plus, with ``config.self_normalization``
        α > 0 in training mode, the self-normalization term of Devlin et al. (2014),

        .. math:: \frac{\alpha}{m} \sum_{i \in S} \big(\log Z(h_i) - c(h_i)\big)^2,
                  \qquad \log Z(h) = \log \sum_{w=1}^{V} e^{s(w, h)},

        with :math:`c(h)` the log Z that binary NCE subtracts (0 for the softmax losses), over
        the exact partition function of the m = ``SELF_NORMALIZATION_ROWS`` contexts S spread
        evenly over the B·T of the batch: O(m·V·H) per step, and a gradient that reads every row
        of the output layer.

        References:
            Devlin et al. 2014, Fast and Robust Neural Network Joint Models for Statistical
            Machine Translation, ACL (the term); Andreas & Klein 2015, When and why are log-linear
            models self-normalizing?, NAACL.
        """
        h, state = self.hidden_states(inputs, state)
        h = h.reshape(-1, h.shape[-1])
        loss = self.output(h, targets.reshape(-1), generator=generator)
        alpha = self.config.self_normalization
        if alpha > 0 and self.training:
            rows = h[:: max(1, h.shape[0] // SELF_NORMALIZATION_ROWS)][:SELF_NORMALIZATION_ROWS]
            log_z = self.output.log_partition(rows)
            if self.config.loss == "nce":
                log_z = log_z - self.output.nce_log_partition(rows)
            loss = loss + alpha * log_z.square().mean()
        return loss, state


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream (T,) into ``batch_size`` parallel streams: (batch_size, length), with
    length = T // batch_size (the remainder is dropped)."""
    check_int("batch_size", batch_size, minimum=1)
    length = stream.numel() // batch_size
    if length < 2:
        raise ValueError(f"{stream.numel()} tokens are too few for batch_size {batch_size}")
    return stream[: length * batch_size].view(batch_size, length)


def _detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


@torch.no_grad()
def perplexity(model: LanguageModel, stream: torch.Tensor, batch_size=EVAL_BATCH, bptt=64) -> float:
    r"""Exact normalized perplexity of ``stream`` (full softmax over the vocabulary): ``inf`` when
    the mean negative log-likelihood is beyond float range; a model whose log-probabilities are
    NaN (its weights are not finite) raises ValueError.

    .. math:: \mathrm{PPL} = \exp\Big(-\frac1T\sum_t \log p(w_t \mid w_{<t})\Big)

    over the T predicted tokens of the ``batch_size`` parallel streams.

    Shape:
        - stream: (T,) int64 token ids; output: a float
    """
    nll = _mean_nll(model, stream, batch_size, bptt)
    if math.isnan(nll):
        raise ValueError(
            "the model's log-probabilities are NaN: its weights are not finite (did training "
            "diverge?)"
        )
    return _exp(nll)


def _mean_nll(model: LanguageModel, stream: torch.Tensor, batch_size: int, bptt: int) -> float:
    """The mean negative log-likelihood per token of ``stream``, in nats (may be inf or NaN)."""
    check_int("bptt", bptt, minimum=1)
    model.eval()
    data = batchify(stream, batch_size)
    total, count, state = 0.0, 0, None
    for t in range(0, data.shape[1] - 1, bptt):
        inputs = data[:, t : t + bptt]
        targets = data[:, t + 1 : t + 1 + bptt]
        inputs = inputs[:, : targets.shape[1]]
        h, state = model.hidden_states(inputs, state)
        logp = model.output.log_prob(h.reshape(-1, h.shape[-1]))
        total -= logp.gather(1, targets.reshape(-1, 1)).sum().item()
        count += targets.numel()
    return total / count


def _exp(x: float) -> float:
    """``exp(x)``, ``inf`` past the float range instead of an OverflowError."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


@torch.no_grad()
def log_partition_stats(
    model: LanguageModel, stream, batch_size=EVAL_BATCH, bptt=64, max_tokens=20000
):
    """Mean and standard deviation of the exact :math:`\\log Z(h)` over contexts of ``stream``,
    :math:`\\log Z(h) = \\log \\sum_w e^{s(w, h)}` (near 0 when self-normalization works).

    Shape:
        - stream: (T,) int64 token ids (the first ``max_tokens``); output: two floats
    """
    check_int("bptt", bptt, minimum=1)
    model.eval()
    data = batchify(stream[: max_tokens + 1], batch_size)
    h, _ = model.hidden_states(data[:, :-1][:, : bptt * max(1, data.shape[1] // bptt)])
    log_z = model.output.log_partition(h.reshape(-1, h.shape[-1]))
    return log_z.mean().item(), log_z.std().item()


@torch.no_grad()
def generate(model, prompt_ids, n: int, temperature: float = 1.0, generator=None) -> list[int]:
    """Sample ``n`` tokens after ``prompt_ids`` from the exact normalized distribution, its
    log-probabilities divided by ``temperature`` (> 0):
    :math:`p_T(w \\mid h) \\propto p(w \\mid h)^{1/T}`, one word at a time.

    Shape:
        - prompt_ids: (P,) token ids; output: a list of ``n`` ints
    """
    finite = isinstance(temperature, (int, float)) and math.isfinite(temperature)
    if not finite or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    model.eval()
    ids = torch.as_tensor(prompt_ids, dtype=torch.int64).view(1, -1)
    h, state = model.hidden_states(ids)
    out = []
    for _ in range(n):
        logp = model.output.log_prob(h[:, -1]) / temperature
        nxt = torch.multinomial(logp.softmax(-1), 1, generator=generator)
        out.append(int(nxt))
        h, state = model.hidden_states(nxt.view(1, 1), state)
    return out


TRAINING_OPTIONS = (
    "lr",
    "batch_size",
    "bptt",
    "random_state",
    "optimizer",
    "lr_schedule",
    "cosine_epochs",
    "late_num_samples",
    "late_epochs",
)
OPTIMIZERS = ("lazy_adam", "adam")
LR_SCHEDULES = ("constant", "cosine", "plateau")
PLATEAU_FACTOR = 4.0  # "plateau" divides the learning rate by this when validation stalls


@renamed_keywords(seed="random_state")
def train(
    model: LanguageModel,
    train_stream: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 32,
    bptt: int = 35,
    lr: float = 2e-3,
    random_state: int | torch.Generator | None = 0,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    extra: dict | None = None,
    valid_stream: torch.Tensor | None = None,
    progress: bool = True,
    optimizer: str | None = None,
    lr_schedule: str = "constant",
    late_num_samples: int | None = None,
    late_epochs: int = 0,
) -> list[dict]:
    r"""Train with Adam; checkpoint (atomically) after every epoch; ``resume`` continues exactly.

    Minimizes the output layer's loss (binary NCE, ranking NCE or the full softmax,
    ``model.config.loss``) of each next token by truncated backpropagation through time over
    windows of ``bptt`` steps; for binary NCE with K noise words per target,

    .. math:: \ell = -\log\sigma(G(w)) - \sum_{j=1}^{K} \log\sigma(-G(\hat w_j)),
              \qquad G(w) = s(w, h) - \log Z(h) - \log(K q(w)).

    References:
        Mnih & Teh 2012, arXiv:1206.6426.

    Args:
        model: the :class:`LanguageModel` to train, in place.
        train_stream: (T,) int64 token ids.
        epochs: the number of epochs in all (a resumed run trains the remaining ones).
        batch_size: parallel streams; bptt: steps of truncated backpropagation.
        lr: Adam's learning rate.
        random_state: None, an int or a :class:`torch.Generator`; draws the noise samples and the
            dropout masks. torch's global generator is left as it was.
        checkpoint: the file written after every epoch (none if None).
        resume: continue from ``checkpoint``, which must have been written with the same model
            configuration, training options and ``extra`` entries (the differing ones are named).
        extra: plain entries stored in the checkpoint (e.g. the vocabulary).
        valid_stream: (T',) token ids whose exact perplexity is measured after every epoch.
        progress: show a progress bar.
        optimizer: "lazy_adam" (:class:`nce.optim.LazyAdam`): the word embeddings and, unless
            ``loss="full"``, the output layer's get sparse gradients, and each step updates only
            the rows it read, O(rows read) instead of O(V) per step; "adam": dense
            :class:`torch.optim.Adam` over every row at every step. The two differ only in rows a
            step does not read, which dense Adam keeps moving by their momentum. None (the
            default): "lazy_adam" for NCE and ranking NCE, "adam" for the full softmax, whose
            step is O(V) anyway (on the KJV, 12 epochs at a constant rate: NCE k = 25 reaches
            the same test perplexity with either, 32.62 and 32.57, the full softmax 31.12
            lazily and 30.49 densely; on the cosine schedule dense Adam is 1.5 % better for NCE
            too, 31.02 against 31.48; BENCHMARKS.md).
        lr_schedule: "constant"; "cosine": step s of S in all (every epoch's) runs at
            :math:`\eta_s = \eta\,\tfrac12(1 + \cos(\pi s / S))` (Loshchilov & Hutter 2017,
            arXiv:1608.03983), so a cosine run resumes only with the same ``epochs``;
            "plateau": the rate is divided by 4 after every epoch whose validation perplexity
            is not below the best before it (needs ``valid_stream``).
        late_num_samples: K' noise words per target word in the last ``late_epochs`` epochs
            (a larger K' late in training; binary and ranking NCE only). None keeps K throughout.
        late_epochs: how many of the last epochs use ``late_num_samples``.

    Returns:
        One record per epoch run: loss, seconds, tokens per second and, given ``valid_stream``,
        the exact validation perplexity.

    Raises:
        DivergenceError: the loss, the weights or the validation perplexity became non-finite
            (lower ``lr``); the checkpoint of the last good epoch is kept.
    """
    check_int("epochs", epochs, minimum=1)
    check_int("bptt", bptt, minimum=1)
    check_random_state(random_state)
    if optimizer is None:
        optimizer = "adam" if model.config.loss == "full" else "lazy_adam"
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    _check_schedules(model, epochs, valid_stream, lr_schedule, late_num_samples, late_epochs)
    data = batchify(train_stream, batch_size)
    lazy = optimizer == "lazy_adam"
    options = {
        "lr": lr,
        "batch_size": batch_size,
        "bptt": bptt,
        "random_state": random_state if isinstance(random_state, int) else None,
        "optimizer": optimizer,
        "lr_schedule": lr_schedule,
        "cosine_epochs": epochs if lr_schedule == "cosine" else None,  # its rate depends on them
        "late_num_samples": late_num_samples,
        "late_epochs": late_epochs,
    }
    optimizer = (LazyAdam if lazy else torch.optim.Adam)(model.parameters(), lr=lr)
    dropout_seed = as_seed(random_state)
    sampler = as_generator(random_state)
    start, history = 0, []
    with seeded(dropout_seed), _sparse_gradients(model, lazy):
        if resume:
            if checkpoint is None or not Path(checkpoint).is_file():
                raise ValueError(f"resume=True but there is no checkpoint at {checkpoint}")
            saved = read_checkpoint(checkpoint)
            check_resume(saved, model.config, options, extra or {})
            load_state(model, saved["model"], saved, "model")
            load_state(optimizer, saved.entry("optimizer", dict), saved, "optimizer")
            _set_states(saved, sampler)
            start = saved.entry("epoch", int)
            history = list(saved.entry("history", list))
        for epoch in range(start, epochs):
            late = late_num_samples is not None and epoch >= epochs - late_epochs
            schedule = (lr, epochs) if lr_schedule == "cosine" else None
            with _num_samples(model, late_num_samples if late else None):
                record = _epoch(
                    model, data, optimizer, sampler, epoch, epochs, bptt, progress, schedule
                )
            problem = record.get("diverged")
            if problem is None and not all(torch.isfinite(p).all() for p in model.parameters()):
                problem = "the weights are no longer finite"
            if problem is None and valid_stream is not None:
                record["valid_perplexity"] = _exp(_mean_nll(model, valid_stream, EVAL_BATCH, 64))
                if not math.isfinite(record["valid_perplexity"]):
                    problem = f"the validation perplexity became {record['valid_perplexity']}"
            if problem is not None:
                raise _divergence(problem, epoch + 1, lr, checkpoint)
            if lr_schedule == "plateau":
                best = min((r["valid_perplexity"] for r in history), default=math.inf)
                if record["valid_perplexity"] >= best:
                    for group in optimizer.param_groups:
                        group["lr"] /= PLATEAU_FACTOR
            history.append(record)
            if checkpoint is not None:
                payload = {
                    "model": model.state_dict(),
                    "counts": model.counts,
                    "optimizer": optimizer.state_dict(),
                    "sampler_state": sampler.get_state(),
                    "torch_rng_state": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": asdict(model.config),
                    "options": options,
                    **(extra or {}),
                }
                save_checkpoint(payload, Path(checkpoint), kind="lm")
    return history


def _epoch(model, data, optimizer, sampler, epoch, epochs, bptt, progress, cosine=None) -> dict:
    """One pass over ``data`` (B, L); a non-finite loss stops it, saying so in ``"diverged"``.
    ``cosine``: (peak rate, epochs in all) of a cosine schedule set before every step."""
    model.train()
    state, total, steps, t0 = None, 0.0, 0, time.perf_counter()
    windows = range(0, data.shape[1] - 1, bptt)
    bar = tqdm(windows, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
    for i, t in enumerate(bar):
        if cosine is not None:
            peak, total_epochs = cosine
            done = (epoch + i / len(windows)) / total_epochs
            for group in optimizer.param_groups:
                group["lr"] = peak * 0.5 * (1.0 + math.cos(math.pi * done))
        targets = data[:, t + 1 : t + 1 + bptt]
        inputs = data[:, t : t + targets.shape[1]]
        loss, state = model.loss(inputs, targets, _detach(state), generator=sampler)
        value = loss.item()
        if not math.isfinite(value):
            bar.close()
            problem = f"the training loss became {value} at step {steps + 1} of {len(windows)}"
            return {"epoch": epoch + 1, "diverged": problem}
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total, steps = total + value, steps + 1
        elapsed = time.perf_counter() - t0
        bar.set_postfix(
            loss=f"{total / steps:.3f}",
            tok_s=f"{steps * bptt * data.shape[0] / elapsed:.0f}",
            refresh=False,
        )
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "lr": optimizer.param_groups[0]["lr"],
        "num_samples": model.output.num_samples,
        "loss": total / steps,
        "seconds": seconds,
        "tokens_per_second": data.numel() / seconds,
    }


def _check_schedules(model, epochs, valid_stream, lr_schedule, late_num_samples, late_epochs):
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if lr_schedule == "plateau" and valid_stream is None:
        raise ValueError("lr_schedule='plateau' needs valid_stream (it watches its perplexity)")
    check_int("late_epochs", late_epochs, minimum=0)
    if late_epochs > epochs:
        raise ValueError(f"late_epochs ({late_epochs}) must be at most epochs ({epochs})")
    if late_num_samples is None:
        if late_epochs:
            raise ValueError(f"late_epochs={late_epochs} needs late_num_samples")
        return
    check_int("late_num_samples", late_num_samples, minimum=1)
    if model.config.loss == "full":
        raise ValueError("late_num_samples applies to loss='nce' or 'ranking', not 'full'")
    if late_num_samples >= model.config.vocab_size:
        raise ValueError(
            f"late_num_samples ({late_num_samples}) must be below the vocabulary size "
            f"V = {model.config.vocab_size}"
        )
    if not late_epochs:
        raise ValueError("late_num_samples needs late_epochs >= 1 (the epochs that use it)")


@contextlib.contextmanager
def _num_samples(model: LanguageModel, k: int | None):
    """The output layer draws ``k`` noise words per target while inside (None: unchanged)."""
    before = model.output.num_samples
    model.output.num_samples = before if k is None else k
    try:
        yield
    finally:
        model.output.num_samples = before


@contextlib.contextmanager
def _sparse_gradients(model: LanguageModel, enabled: bool):
    """Sparse gradients for the model's embeddings while training (``enabled``), as they were
    afterwards: the output layer's unless it is the full softmax, which reads every row."""
    full = model.config.loss == "full"
    embeddings = [] if full and model.config.tied else [model.embedding]
    if not full:
        embeddings += [model.output.embedding, model.output.bias]
    before = [e.sparse for e in embeddings]
    for e in embeddings:
        e.sparse = e.sparse or enabled
    try:
        yield
    finally:
        for e, sparse in zip(embeddings, before, strict=True):
            e.sparse = sparse


def _divergence(problem: str, epoch: int, lr: float, checkpoint) -> DivergenceError:
    """The error that says training diverged: what happened, when, what is kept, what to change."""
    if checkpoint is None:
        kept = "no checkpoint is written"
    elif epoch == 1:
        kept = f"{checkpoint} is not written"
    else:
        kept = f"{checkpoint} keeps epoch {epoch - 1}, the last good one"
    return DivergenceError("training", epoch, detail=problem, kept=kept, option="lr", value=lr)


def _set_states(saved: Checkpoint, sampler: torch.Generator) -> None:
    targets = {"sampler_state": sampler.set_state, "torch_rng_state": torch.set_rng_state}
    for key, target in targets.items():
        value = saved.entry(key, torch.Tensor)
        try:
            target(value)
        except (RuntimeError, TypeError) as err:
            raise saved.error(f"entry {key!r} is not a random-generator state") from err


def read_checkpoint(path: str | Path, *, source: str | None = None) -> Checkpoint:
    """A language-model checkpoint written by :func:`train` (or an earlier version of it), its
    config, counts and weights checked against each other; any problem raises
    :class:`~nce._checkpoint.CheckpointError` naming the file and the entry."""
    saved = load_checkpoint(path, kind="lm", legacy=_legacy_reason, source=source)
    try:
        config = LMConfig.from_dict(saved.entry("config", dict))
    except (TypeError, ValueError) as err:
        raise saved.error(f"entry 'config' is not a language-model config: {err}") from err
    counts = saved.get("counts")  # absent only from checkpoints of earlier versions
    if counts is not None and tuple(getattr(counts, "shape", ())) != (config.vocab_size,):
        raise saved.error(
            f"entry 'counts' has shape {tuple(counts.shape)} but the config's vocabulary has "
            f"{config.vocab_size} words"
        )
    state = saved.entry("model", dict)
    for key, shape in parameter_shapes(config).items():
        if config.tied and key == "embedding.weight":
            continue
        found = state.get(key)
        if not isinstance(found, torch.Tensor) or tuple(found.shape) != shape:
            have = "is missing" if found is None else f"has shape {tuple(found.shape)}"
            if not isinstance(found, (torch.Tensor, type(None))):
                have = f"is a {type(found).__name__}"
            raise saved.error(
                f"entry 'model' does not fit the config (vocab_size {config.vocab_size}, dim "
                f"{config.dim}, hidden {config.hidden}): {key} {have} but the config needs {shape}"
            )
    saved["config"] = config
    return saved


def load_model(path: str | Path, *, source: str | None = None) -> tuple[LanguageModel, Checkpoint]:
    """The trained :class:`LanguageModel` of a checkpoint (in evaluation mode) and the checkpoint
    (:func:`read_checkpoint`): the weights are checked before the model is built."""
    saved = read_checkpoint(path, source=source)
    try:
        model = LanguageModel(saved["config"], saved.entry("counts", torch.Tensor))
    except (TypeError, ValueError) as err:
        raise saved.error(f"entry 'config' does not build a model: {err}") from err
    load_state(model, saved["model"], saved, "model")
    return model.eval(), saved


def check_resume(saved: Checkpoint, config: LMConfig, options: dict, extra: dict) -> None:
    """Refuse to resume ``saved`` with another model ``config``, other training ``options`` or
    other ``extra`` entries, naming every differing key. Entries a checkpoint predates are not
    compared."""
    stored = saved["config"]
    differences = [
        _difference(f"config.{k}", getattr(stored, k), getattr(config, k))
        for k in asdict(config)
        if getattr(stored, k) != getattr(config, k)
    ]
    saved_options = dict(saved.get("options") or {})
    if "seed" in saved_options:  # written by an earlier version
        saved_options["random_state"] = saved_options.pop("seed")
    if "lr" in saved_options:  # earlier versions trained with dense Adam
        saved_options.setdefault("optimizer", "adam")
    differences += [
        _difference(f"options.{k}", saved_options[k], v)
        for k, v in options.items()
        if k in saved_options and saved_options[k] != v
    ]
    differences += [
        _difference(k, saved[k], v)
        for k, v in extra.items()
        if k in saved and not _same(saved[k], v)
    ]
    if differences:
        raise CheckpointError(
            f"{saved.source} cannot be resumed with these settings: {'; '.join(differences)} "
            "(an exact resume needs the same model, training options and data)"
        )


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    return a == b


def _difference(name: str, stored, requested) -> str:
    scalar = (str, int, float, bool, type(None))
    if isinstance(stored, scalar) and isinstance(requested, scalar):
        return f"{name} is {stored!r} in the checkpoint, {requested!r} now"
    return f"{name} differs"


def _legacy_reason(payload: dict) -> str | None:
    """None for a checkpoint written before the checkpoint format (a bare ``torch.save`` dict)."""
    missing = [k for k in ("config", "model") if k not in payload]
    return f"no {', '.join(map(repr, missing))}" if missing else None
