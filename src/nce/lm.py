r"""A word-level recurrent language model whose output layer is an :class:`nce.output.NCEOutput`.

Embedding → LSTM (or GRU) → output over the vocabulary, trained by truncated backpropagation
through time on a token stream cut into ``batch_size`` parallel streams. The output layer trains
with NCE, ranking NCE or the full softmax; evaluation is always the exact normalized perplexity

.. math:: \mathrm{PPL} = \exp\Big(-\frac1T\sum_t \log p(w_t \mid w_{<t})\Big).

Training checkpoints hold everything a resumed run needs to continue exactly: parameters,
optimizer state, the noise sampler's and torch's random states, and the position in the data.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from nce._atomic import atomic_torch_save
from nce._validation import check_int
from nce.output import NCEOutput

EVAL_BATCH = 16  # parallel streams when measuring perplexity and log Z


@dataclass(frozen=True)
class LMConfig:
    """Hyperparameters of :class:`LanguageModel` (saved in checkpoints).

    ``shared_noise=False`` draws k noise words per target word, as Mnih & Teh (2012) do; ``True``
    draws k for the whole batch, which is cheaper but, measured on the KJV (BENCHMARKS.md), makes
    binary NCE learn far more slowly: use it with ``loss="ranking"`` and a large k.
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


class LanguageModel(nn.Module):
    """Embedding, one recurrent layer and an :class:`NCEOutput` over ``counts``' vocabulary.

    Shape:
        - ids: (B, T) int64; ``hidden_states``: (B, T, H)
    """

    def __init__(self, config: LMConfig, counts: torch.Tensor):
        super().__init__()
        if config.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {config.cell!r}")
        if config.tied and config.dim != config.hidden:
            raise ValueError(f"tied=True needs dim == hidden, got {config.dim} and {config.hidden}")
        if config.loss != "full" and config.num_samples >= config.vocab_size:
            raise ValueError(
                f"num_samples (k = {config.num_samples}) must be below the vocabulary size "
                f"V = {config.vocab_size}"
            )
        self.config = config
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = rnn(config.dim, config.hidden, batch_first=True)
        self.drop = nn.Dropout(config.dropout)
        self.output = NCEOutput(
            config.vocab_size,
            config.hidden,
            counts.clamp(min=1).double(),
            config.num_samples,
            loss=config.loss,
            shared_noise=config.shared_noise,
            log_z=config.log_z,
        )
        self.embedding = (
            self.output.embedding if config.tied else nn.Embedding(config.vocab_size, config.dim)
        )

    def hidden_states(self, ids: torch.Tensor, state=None):
        out, state = self.rnn(self.drop(self.embedding(ids)), state)
        return self.drop(out), state

    def loss(self, inputs, targets, state=None, generator=None):
        """The output layer's training loss on next-token targets, and the carried state."""
        h, state = self.hidden_states(inputs, state)
        loss = self.output(h.reshape(-1, h.shape[-1]), targets.reshape(-1), generator=generator)
        return loss, state


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream into ``batch_size`` parallel streams: (batch_size, length)."""
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
    """Exact normalized perplexity of ``stream`` (full softmax over the vocabulary)."""
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
    return math.exp(total / count)


@torch.no_grad()
def log_partition_stats(
    model: LanguageModel, stream, batch_size=EVAL_BATCH, bptt=64, max_tokens=20000
):
    """Mean and standard deviation of the exact :math:`\\log Z(h)` over contexts of ``stream``."""
    check_int("bptt", bptt, minimum=1)
    model.eval()
    data = batchify(stream[: max_tokens + 1], batch_size)
    h, _ = model.hidden_states(data[:, :-1][:, : bptt * max(1, data.shape[1] // bptt)])
    log_z = model.output.log_partition(h.reshape(-1, h.shape[-1]))
    return log_z.mean().item(), log_z.std().item()


@torch.no_grad()
def generate(model, prompt_ids, n: int, temperature: float = 1.0, generator=None) -> list[int]:
    """Sample ``n`` tokens after ``prompt_ids`` from the exact normalized distribution, its
    log-probabilities divided by ``temperature`` (> 0)."""
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


def train(
    model: LanguageModel,
    train_stream: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 32,
    bptt: int = 35,
    lr: float = 2e-3,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    extra: dict | None = None,
    valid_stream: torch.Tensor | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train with Adam; checkpoint (atomically) after every epoch; ``resume`` continues exactly.

    Returns one record per epoch run: loss, seconds, tokens per second and, given
    ``valid_stream``, the exact validation perplexity.
    """
    check_int("epochs", epochs, minimum=1)
    check_int("bptt", bptt, minimum=1)
    data = batchify(train_stream, batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    start, history = 0, []
    if resume:
        if checkpoint is None or not Path(checkpoint).is_file():
            raise ValueError(f"resume=True but there is no checkpoint at {checkpoint}")
        saved = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        sampler.set_state(saved["sampler_state"])
        torch.set_rng_state(saved["torch_rng_state"])
        start, history = saved["epoch"], list(saved["history"])
    for epoch in range(start, epochs):
        model.train()
        state, total, steps, t0 = None, 0.0, 0, time.perf_counter()
        windows = range(0, data.shape[1] - 1, bptt)
        bar = tqdm(windows, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for t in bar:
            targets = data[:, t + 1 : t + 1 + bptt]
            inputs = data[:, t : t + targets.shape[1]]
            loss, state = model.loss(inputs, targets, _detach(state), generator=sampler)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            elapsed = time.perf_counter() - t0
            bar.set_postfix(
                loss=f"{total / steps:.3f}",
                tok_s=f"{steps * bptt * batch_size / elapsed:.0f}",
                refresh=False,
            )
        seconds = time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "loss": total / steps,
            "seconds": seconds,
            "tokens_per_second": data.numel() / seconds,
        }
        if valid_stream is not None:
            record["valid_perplexity"] = perplexity(model, valid_stream)
        history.append(record)
        if checkpoint is not None:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "sampler_state": sampler.get_state(),
                    "torch_rng_state": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": asdict(model.config),
                    **(extra or {}),
                },
                Path(checkpoint),
            )
    return history
