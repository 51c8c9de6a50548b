r"""An NCE output layer inside your own model: a bag-of-words next-word predictor.

    python examples/output_layer.py                         # built-in King James Bible
    python examples/output_layer.py --corpus my_text.txt --loss ranking

The model is yours: it averages the embeddings of the previous ``--context`` words and passes
them through a tanh layer into a hidden state :math:`h`. Only its last layer comes from the
library: :class:`nce.output.NCEOutput` scores word :math:`w` as :math:`s(w, h) = h^\top u_w +
b_w` and trains, with ``--loss nce``, by binary NCE against :math:`K` noise words drawn from the
smoothed unigram distribution :math:`q` (Mnih & Teh 2012, arXiv:1206.6426): each step reads the
target's and the K noise words' rows instead of all :math:`V`, and learns :math:`\log Z`
instead of computing it. ``--loss ranking`` is sampled softmax; ``--loss full`` the exact
softmax, the reference.

Evaluation is exact: ``layer.log_prob(h)`` is the normalized distribution over all V words,
so the held-out perplexity :math:`\exp(-\frac1T\sum_t \log p(w_t|h_t))` can be compared with the
unigram model's and across losses. The script also prints the exact :math:`\log Z(h)` of the
trained scores (``layer.log_partition``) next to the learned one: NCE drives them together.

Any UTF-8 text file works as ``--corpus`` (one sentence or paragraph per line).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

import nce
from nce.output import NCEOutput
from nce.text import Vocabulary, read_corpus, split_lines, tokenize


class NextWordModel(nn.Module):
    """Mean of the previous words' embeddings, a tanh layer, and an NCE output layer."""

    def __init__(self, counts: torch.Tensor, dim: int, num_samples: int, loss: str):
        super().__init__()
        vocabulary_size = counts.numel()
        self.context = nn.EmbeddingBag(vocabulary_size, dim, mode="mean")
        self.hidden = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.output = NCEOutput(
            vocabulary_size, dim, nce.noise.Unigram(counts + 1), num_samples, loss=loss
        )

    def forward(self, previous: torch.Tensor) -> torch.Tensor:
        """(N, C) previous word ids -> (N, D) hidden states."""
        return self.hidden(self.context(previous))


def windows(stream: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (previous ``context`` words, next word) pair of a token stream: (T, C) and (T,)."""
    previous = stream.unfold(0, context, 1)[:-1]
    return previous, stream[context:]


def perplexity(model: NextWordModel, previous, targets, batch_size: int = 2048) -> float:
    """exp of the mean negative log-probability of the targets under the exact softmax."""
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(targets), batch_size):
            h = model(previous[start : start + batch_size])
            log_p = model.output.log_prob(h)
            total -= float(log_p.gather(1, targets[start : start + batch_size, None]).sum())
    return math.exp(total / len(targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="kjv", help='"kjv" (built-in) or a UTF-8 text file')
    parser.add_argument("--lines", type=int, default=4000, help="first lines of the corpus")
    parser.add_argument("--vocabulary", type=int, default=5000, help="most frequent words kept")
    parser.add_argument("--loss", default="nce", choices=["nce", "ranking", "full"])
    parser.add_argument("--noise-samples", type=int, default=25, help="K")
    parser.add_argument("--context", type=int, default=3, help="previous words seen")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    lines = [tokenize(line) for line in read_corpus(args.corpus, args.lines)]
    train_lines, _, test_lines = split_lines(lines, random_state=args.seed)
    vocabulary = Vocabulary.build(train_lines, max_size=args.vocabulary)
    counts = torch.tensor(vocabulary.counts, dtype=torch.float64)
    train = windows(vocabulary.encode(train_lines), args.context)
    test = windows(vocabulary.encode(test_lines), args.context)
    print(
        f"{args.corpus}: V = {len(vocabulary)} words, {len(train[1])} training and "
        f"{len(test[1])} held-out next-word predictions"
    )

    torch.manual_seed(args.seed)
    model = NextWordModel(counts, args.dim, args.noise_samples, args.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    before = perplexity(model, *test)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train[1]), generator=generator)
        total = 0.0
        for batch in order.split(args.batch_size):
            loss = model.output(model(train[0][batch]), train[1][batch], generator=generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}: {args.loss} loss {total / len(order):.4f}")
    seconds = time.perf_counter() - start

    unigram = math.exp(-float((counts / counts.sum()).log()[test[1]].mean()))
    print(
        f"held-out perplexity (exact softmax over {len(vocabulary)} words): "
        f"{perplexity(model, *test):.2f}; untrained {before:.2f}; unigram {unigram:.2f}"
    )
    print(f"training time {seconds:.1f} s")
    with torch.no_grad():
        log_z = model.output.log_partition(model(test[0][:2048]))
    print(
        f"exact log Z(h) over held-out contexts: mean {float(log_z.mean()):+.4f}, "
        f"sd {float(log_z.std()):.4f}",
        end="",
    )
    if args.loss == "nce":
        print(f"; learned log Z {model.output.log_z.item():+.4f}")
    else:
        print(" (the softmax losses normalize by themselves)")


if __name__ == "__main__":
    main()
