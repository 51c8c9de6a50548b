r"""Attention is an energy model, and InfoNCE trains it.

A single attention head reads a key–value memory :math:`\{(k_j, v_j)\}_{j=1}^M` with a query q:

.. math:: a_j(q) = \frac{e^{-E_j(q)}}{\sum_{m} e^{-E_m(q)}}, \qquad
          E_j(q) = -\frac{q \cdot k_j}{\sqrt d}, \qquad \mathrm{out}(q) = \sum_j a_j(q)\, v_j.

The weights are a Gibbs (Boltzmann) distribution over the slots, whose energies are the negative
scaled query–key scores, and the softmax's denominator is the partition function. InfoNCE with
the correct slot c as positive and the other slots as negatives, on unnormalized embeddings at
temperature :math:`\tau = \sqrt d`, is

.. math:: \ell(q) = -\log \frac{e^{q \cdot k_c / \tau}}{\sum_m e^{q \cdot k_m / \tau}}
          = -\log a_c(q),

exactly the negative log attention weight of the correct key: training a head to retrieve the
right slot by InfoNCE is maximum likelihood in this energy model, with the other keys as the
contrastive (noise) samples.

This script builds a memory of M random slots and queries that are noisy, linearly distorted
copies of the slots' descriptions, so that the raw query and key spaces disagree. It learns
query and key projections :math:`W_q, W_k` with ``nce.info_nce(q, k, temperature=sqrt(d),
normalize=False)``, checks the identity above against
``torch.nn.functional.scaled_dot_product_attention`` (with the identity matrix as values the
output *is* the attention matrix), and plots the energy landscape :math:`E_{ij}` of one set of
queries over the slots before and after training.

    python examples/attention_as_ebm.py --slots 32 --steps 300 --out attention_ebm.png
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

import nce


def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The (N, M) attention matrix of one head: SDPA with the identity as the value matrix."""
    values = torch.eye(k.shape[0], dtype=q.dtype)
    return F.scaled_dot_product_attention(q[None], k[None], values[None])[0]


def infonce_over_keys(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-query InfoNCE, query i's positive being key i and the other keys its negatives, (N,)."""
    return nce.info_nce(q, k, temperature=math.sqrt(q.shape[1]), normalize=False, reduction="none")


def make_task(slots: int, dim_in: int, noise: float, generator: torch.Generator):
    """Slot descriptions (M, dim_in), their values (M, dim_in), and a query distortion."""
    descriptions = torch.randn(slots, dim_in, generator=generator)
    values = torch.randn(slots, dim_in, generator=generator)
    distortion = torch.linalg.qr(torch.randn(dim_in, dim_in, generator=generator))[0]

    def queries(gen: torch.Generator) -> torch.Tensor:
        """One query per slot, in slot order: distorted description plus noise."""
        return descriptions @ distortion.T + noise * torch.randn(slots, dim_in, generator=gen)

    return descriptions, values, queries


def run(args: argparse.Namespace) -> dict:
    generator = torch.Generator().manual_seed(args.seed)
    descriptions, values, queries = make_task(args.slots, args.dim_in, args.noise, generator)
    torch.manual_seed(args.seed)
    w_q = torch.nn.Linear(args.dim_in, args.dim, bias=False)
    w_k = torch.nn.Linear(args.dim_in, args.dim, bias=False)
    optimizer = torch.optim.Adam([*w_q.parameters(), *w_k.parameters()], lr=args.lr)
    probe = queries(torch.Generator().manual_seed(args.seed + 1))

    @torch.no_grad()
    def evaluate() -> dict:
        q, k = w_q(probe), w_k(descriptions)
        weights = attention_weights(q, k)
        losses = infonce_over_keys(q, k)
        retrieved = weights @ values
        return {
            "loss": float(losses.mean()),
            "accuracy": float((weights.argmax(1) == torch.arange(args.slots)).float().mean()),
            "value_error": float((retrieved - values).norm(dim=1).mean()),
            "identity_gap": float((losses + weights.diagonal().log()).abs().max()),
            "energies": -(q @ k.T) / math.sqrt(args.dim),
        }

    before = evaluate()
    for _ in range(args.steps):
        q, k = w_q(queries(generator)), w_k(descriptions)
        loss = infonce_over_keys(q, k).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate()
    for name, r in (("before", before), ("after", after)):
        print(
            f"{name:>6} training: InfoNCE {r['loss']:.4f}, retrieval accuracy {r['accuracy']:.3f}, "
            f"mean |retrieved value - true value| {r['value_error']:.3f}, "
            f"max |InfoNCE + log a_c| {r['identity_gap']:.2e}"
        )
    if args.out:
        plot(before["energies"], after["energies"], args.out)
        print(f"wrote {args.out}")
    return {"before": before, "after": after}


def plot(before: torch.Tensor, after: torch.Tensor, path: str) -> None:
    """Heat maps of the energies E_ij = -q_i·k_j/√d (queries i in slot order, slots j)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    for ax, energies, title in ((axes[0], before, "before"), (axes[1], after, "after")):
        image = ax.imshow(energies.numpy(), cmap="viridis")
        ax.set_title(f"energy E(query, slot) {title} training")
        ax.set_xlabel("memory slot j")
        ax.set_ylabel("query i (for slot i)")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=32, help="M, the memory's slots")
    parser.add_argument("--dim-in", type=int, default=16, help="size of queries and descriptions")
    parser.add_argument("--dim", type=int, default=16, help="d, size of projected queries and keys")
    parser.add_argument("--noise", type=float, default=0.5, help="noise added to each query")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="attention_ebm.png", help="PNG of the energies ('' none)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
