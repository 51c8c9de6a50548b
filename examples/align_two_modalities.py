r"""CLIP-style alignment of two modalities: one tower per side, trained to pick each other's pair.

    python examples/align_two_modalities.py --a a.npy --b b.npy --labels y.npy
    python examples/align_two_modalities.py         # built-in: digit images and their captions

``a.npy`` (N, Da) and ``b.npy`` (N, Db) hold the two views of the same N items, row i of one
paired with row i of the other (an image and its caption's embedding, a spectrum and its
molecule's fingerprint, ...); ``y.npy`` (optional) an integer class per row. A held-out part of
the pairs is kept for evaluation; each side gets its own small MLP tower and both are trained on
the rest with CLIP's symmetric InfoNCE (:class:`nce.losses.CLIPLoss`, Radford et al. 2021,
arXiv:2103.00020) or SigLIP's pairwise sigmoid loss (:class:`nce.losses.SigLIPLoss`, Zhai et
al. 2023, arXiv:2303.15343). With normalized embeddings :math:`u_i, v_j` and a learned
temperature :math:`\tau`,

.. math:: \ell_{\mathrm{CLIP}} = \frac12\Big[-\frac1N\sum_i \log
          \frac{e^{u_i\cdot v_i/\tau}}{\sum_j e^{u_i\cdot v_j/\tau}}
          - \frac1N\sum_j \log \frac{e^{u_j\cdot v_j/\tau}}{\sum_i e^{u_i\cdot v_j/\tau}}\Big].

Printed: retrieval recall@1 and @5 on the held-out pairs (each A row ranks every held-out B row,
and back; averaged), and with labels the zero-shot accuracy: each held-out A row gets the class
whose mean B embedding (over the training pairs) is nearest, with no classifier trained on A.

Without arrays the script runs :func:`nce.contrastive.align`: digit images against English
captions ("a handwritten seven"), tested on caption wording never seen in training.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import nce
from nce.contrastive import MLPEncoder, align
from nce.retrieval import ranks, retrieval_metrics


def tower(in_features: int, hidden: int, dim: int) -> nn.Module:
    return nn.Sequential(MLPEncoder(in_features, (hidden, hidden)), nn.Linear(hidden, dim))


def standardized(x: np.ndarray, train: np.ndarray) -> torch.Tensor:
    """float32 columns with the training rows' mean 0 and standard deviation 1."""
    x = torch.as_tensor(x.reshape(len(x), -1), dtype=torch.float64)
    mean, std = x[train].mean(0), x[train].std(0)
    return ((x - mean) / torch.where(std > 0, std, torch.ones_like(std))).float()


def recall(u: torch.Tensor, v: torch.Tensor) -> dict[str, float]:
    """recall@1, @5 and MRR of the pairs (u_i, v_i), averaged over u -> v and v -> u."""
    pairs = torch.arange(len(u))
    forward = retrieval_metrics(ranks(u, v, pairs), ks=(1, 5))
    backward = retrieval_metrics(ranks(v, u, pairs), ks=(1, 5))
    return {key: (forward[key] + backward[key]) / 2 for key in forward}


def align_arrays(args: argparse.Namespace) -> None:
    a, b = np.load(args.a), np.load(args.b)
    if len(a) != len(b):
        raise SystemExit(f"--a has {len(a)} rows but --b has {len(b)}: rows must pair up")
    labels = None if args.labels is None else torch.as_tensor(np.load(args.labels)).long()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(a))
    n_test = max(2, round(args.test_fraction * len(a)))
    test, train = order[:n_test], order[n_test:]
    a, b = standardized(a, train), standardized(b, train)
    print(
        f"{len(a)} pairs ({a.shape[1]} and {b.shape[1]} features): {len(train)} to train, "
        f"{n_test} held out"
    )

    torch.manual_seed(args.seed)
    towers = nn.ModuleList(
        [tower(a.shape[1], args.hidden, args.dim), tower(b.shape[1], args.hidden, args.dim)]
    )
    criterion = nce.losses.CLIPLoss() if args.loss == "clip" else nce.losses.SigLIPLoss()
    optimizer = torch.optim.AdamW([*towers.parameters(), *criterion.parameters()], lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    train_rows = torch.as_tensor(train)
    size = min(args.batch_size, len(train))
    for epoch in range(args.epochs):
        towers.train()
        total, steps = 0.0, 0
        permuted = train_rows[torch.randperm(len(train_rows), generator=generator)]
        for start in range(0, len(permuted) - size + 1, size):  # full batches only
            rows = permuted[start : start + size]
            loss = criterion(towers[0](a[rows]), towers[1](b[rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        if epoch == 0 or epoch + 1 == args.epochs:
            print(f"epoch {epoch + 1}: {args.loss} loss {total / steps:.4f}")

    towers.eval()
    with torch.no_grad():
        u, v = (F.normalize(t(x), dim=1) for t, x in zip(towers, (a, b), strict=True))
    held_out = recall(u[test], v[test])
    print(
        f"held-out recall@1 {held_out['recall_at_1']:.4f}, recall@5 "
        f"{held_out['recall_at_5']:.4f}, MRR {held_out['mrr']:.4f} (chance recall@1 "
        f"{1 / n_test:.4f})"
    )
    print(
        f"learned temperature {criterion.temperature().item():.4f}"
        + (f", bias {criterion.bias.item():.3f}" if args.loss == "siglip" else "")
    )
    if labels is not None:
        classes = labels[train].unique()
        prototypes = F.normalize(
            torch.stack([v[train][labels[train] == c].mean(0) for c in classes]), dim=1
        )
        predicted = classes[(u[test] @ prototypes.T).argmax(1)]
        accuracy = float((predicted == labels[test]).float().mean())
        majority = float((labels[test] == labels[train].mode().values).float().mean())
        print(
            f"zero-shot accuracy {accuracy:.4f} over {len(classes)} classes "
            f"(majority class {majority:.4f})"
        )


def align_builtin(args: argparse.Namespace) -> None:
    result = align(
        loss=args.loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        dim=args.dim,
        width=args.width,
        progress=False,
        random_state=args.seed,
    )
    print(
        f"digit images against captions, {args.loss}, {args.epochs} epochs ({result.seconds:.1f} s)"
    )
    print(
        f"zero-shot accuracy {result.zero_shot_accuracy:.4f} (prompt ensemble "
        f"{result.ensemble_accuracy:.4f}) on caption wording unseen in training"
    )
    print(f"held-out recall@1 {result.recall_at_1:.4f}, recall@5 {result.recall_at_5:.4f}")
    print(f"temperature {result.initial_temperature:.4f} -> {result.temperature:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", help="a .npy array (N, Da): the first modality")
    parser.add_argument("--b", help="a .npy array (N, Db): the second modality, paired by row")
    parser.add_argument("--labels", help="a .npy array (N,) of integer classes (zero-shot)")
    parser.add_argument("--loss", default="clip", choices=["clip", "siglip"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dim", type=int, default=32, help="shared embedding size")
    parser.add_argument("--hidden", type=int, default=128, help="towers' width (arrays)")
    parser.add_argument("--width", type=int, default=16, help="image tower's width (built-in)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if (args.a is None) != (args.b is None):
        parser.error("--a and --b go together")
    if args.a is None:
        align_builtin(args)
    else:
        align_arrays(args)


if __name__ == "__main__":
    main()
