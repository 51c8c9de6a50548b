"""SimCLR-style training with DDP: every rank's views are negatives for every other rank.

    torchrun --nproc-per-node=2 examples/ddp_simclr.py --epochs 5
    python -m torch.distributed.run --nproc-per-node=2 examples/ddp_simclr.py --epochs 5

Runs on CPU with the gloo backend (NCCL when every local rank has a GPU of its own). Each rank
embeds its own shard of scikit-learn's digits under two random views; ``nce.nt_xent(...,
gather=True)`` scores them against the views of all ranks, and its reduction makes DDP's gradient
average the gradient of the loss on the global batch, whatever the ranks' batch sizes. Rank 0
prints the loss after each epoch and, at the end, the 5-NN accuracy of the trained features on a
held-out third of the digits (labels are used only there), next to the same accuracy on raw
pixels.
"""

from __future__ import annotations

import argparse
import gc
import os

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import nce
from nce.contrastive import knn_accuracy


def views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random view of 8x8 digit images: pixel noise and a random mask of 10 % of the pixels."""
    noise = 0.1 * torch.randn(x.shape, generator=generator)
    keep = torch.rand(x.shape, generator=generator) > 0.1
    return (x + noise) * keep


def train(args: argparse.Namespace) -> None:
    """Train on this rank's shard; rank 0 prints the loss averaged over ranks after each epoch."""
    rank, world = dist.get_rank(), dist.get_world_size()
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}" if on_gpu else "cpu")
    torch.manual_seed(0)  # the same initial weights on every rank

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    data = TensorDataset(x)
    sampler = DistributedSampler(data, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler)
    encoder = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64)
    ).to(device)
    model = DistributedDataParallel(encoder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1000 + rank)

    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total, batches = 0.0, 0
        for (batch,) in loader:
            v1, v2 = views(batch, generator).to(device), views(batch, generator).to(device)
            loss = nce.nt_xent(model(v1), model(v2), temperature=args.temperature, gather=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        mean = torch.tensor([total / batches], device=device)
        dist.all_reduce(mean)
        if rank == 0:
            print(
                f"epoch {epoch + 1}: loss {mean.item() / world:.4f} (global batch "
                f"{args.batch_size * world}, {world} ranks)",
                flush=True,
            )
    if rank == 0:
        encoder.eval()
        with torch.no_grad():
            features = encoder(x.to(device)).cpu()
        n = 2 * len(x) // 3
        y = digits.target
        learned = knn_accuracy(features[:n], y[:n], features[n:], y[n:])
        raw = knn_accuracy(x[:n], y[:n], x[n:], y[n:])
        print(f"5-NN accuracy on held-out digits: {learned:.4f} (raw pixels {raw:.4f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128, help="per rank")
    parser.add_argument("--temperature", type=float, default=0.5)
    args = parser.parse_args()

    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    dist.init_process_group("nccl" if torch.cuda.device_count() >= local_ranks else "gloo")
    try:
        train(args)
    finally:
        # The DDP module and the last loss's graph hold the process group; they must be gone
        # before it is destroyed, or gloo's threads may abort the process at exit.
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
