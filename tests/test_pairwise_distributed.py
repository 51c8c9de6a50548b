"""pairwise_nce(gather=True) on real gloo process groups: keys passed around a ring of ranks give
the value and gradients of one process on the concatenated batch."""

import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import nce

D = 5
LABELS = torch.tensor([0, 1, 0, 2, 1, 3, 2, 0, 4])
VARIANTS = {
    "diagonal": dict(),
    "labels": dict(labels=True),
    "chunked_sum": dict(chunk_size=2, reduction="sum"),
    "unnormalized_labels_chunked": dict(normalize=False, labels=True, chunk_size=1),
}


def _loss(q, k, t, b, labels, gather, options):
    options = dict(options)
    with_labels = options.pop("labels", False)
    return nce.pairwise_nce(
        q,
        k,
        temperature=t,
        bias=b,
        labels=labels if with_labels else None,
        gather=gather,
        **options,
    )


def _global_batch(total):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(total, D, generator=g, dtype=torch.float64)
    return q, torch.randn(total, D, generator=g, dtype=torch.float64), LABELS[:total]


def _parameters():
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    return t, torch.tensor(-1.5, dtype=torch.float64, requires_grad=True)


def _worker(rank, world, port, sizes, out_dir):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        q_all, k_all, labels_all = _global_batch(sum(sizes))
        lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])
        results = {}
        for name, options in VARIANTS.items():
            q = q_all[lo:hi].clone().requires_grad_()
            k = k_all[lo:hi].clone().requires_grad_()
            t, b = _parameters()
            loss = _loss(q, k, t, b, labels_all[lo:hi], True, options)
            loss.backward()
            # What DDP does with shared parameters: average their gradients over ranks.
            shared = torch.stack([loss.detach(), t.grad, b.grad])
            dist.all_reduce(shared)
            results[name] = {
                "shared": shared / world,
                "q_grad": q.grad / world,
                "k_grad": k.grad / world,
            }
        results["disagreement"] = _disagreeing_ranks(rank)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _disagreeing_ranks(rank):
    """The error each rank raises when the ranks hold embeddings of different sizes."""
    d = D + rank
    try:
        nce.pairwise_nce(torch.randn(3, d), torch.randn(3, d), gather=True)
    except ValueError as error:
        return str(error)
    return "no error"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sizes", [(1, 4), (3, 1, 5)], ids=["2ranks", "3ranks"])
def test_ring_matches_single_process_on_the_global_batch(sizes, tmp_path):
    world = len(sizes)
    mp.spawn(_worker, args=(world, _free_port(), sizes, str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    q_all, k_all, labels_all = _global_batch(sum(sizes))
    for name, options in VARIANTS.items():
        q, k = q_all.clone().requires_grad_(), k_all.clone().requires_grad_()
        t, b = _parameters()
        want = _loss(q, k, t, b, labels_all, False, options)
        want.backward()
        torch.testing.assert_close(
            ranks[0][name]["shared"], torch.stack([want.detach(), t.grad, b.grad]), msg=name
        )
        torch.testing.assert_close(torch.cat([r[name]["q_grad"] for r in ranks]), q.grad, msg=name)
        torch.testing.assert_close(torch.cat([r[name]["k_grad"] for r in ranks]), k.grad, msg=name)
    # Ranks holding different feature sizes all raise the same error instead of hanging.
    messages = {r["disagreement"] for r in ranks}
    assert len(messages) == 1
    assert "needs the same feature shape on every rank" in messages.pop()


def test_gather_without_process_group_is_the_local_loss():
    q, k, labels = _global_batch(6)
    for options in VARIANTS.values():
        torch.testing.assert_close(
            _loss(q, k, 0.3, -1.5, labels, True, options),
            _loss(q, k, 0.3, -1.5, labels, False, options),
        )
