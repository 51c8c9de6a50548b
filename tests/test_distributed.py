"""gather=True on real gloo process groups: parity with one process on the concatenated batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import nce

D = 5
VARIANTS = {
    "info_nce": lambda q, k, t, gather: nce.info_nce(q, k, temperature=t, gather=gather),
    "clip": lambda q, k, t, gather: nce.info_nce(
        q, k, temperature=t, symmetric=True, gather=gather
    ),
    "info_nce_chunked_sum": lambda q, k, t, gather: nce.info_nce(
        q, k, temperature=t, gather=gather, chunk_size=2, reduction="sum"
    ),
    "nt_xent": lambda q, k, t, gather: nce.nt_xent(q, k, temperature=t, gather=gather),
    "nt_xent_chunked": lambda q, k, t, gather: nce.nt_xent(
        q, k, temperature=t, gather=gather, chunk_size=3
    ),
}


def _global_batch(total):
    g = torch.Generator().manual_seed(0)
    return torch.randn(total, D, generator=g, dtype=torch.float64), torch.randn(
        total, D, generator=g, dtype=torch.float64
    )


def _worker(rank, world, port, sizes, out_dir):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q_all, k_all = _global_batch(sum(sizes))
        lo = sum(sizes[:rank])
        results = {}
        for name, fn in VARIANTS.items():
            q = q_all[lo : lo + sizes[rank]].clone().requires_grad_()
            k = k_all[lo : lo + sizes[rank]].clone().requires_grad_()
            t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
            loss = fn(q, k, t, True)
            loss.backward()
            # What DDP does with a shared parameter: average its gradient over ranks.
            t_grad = t.grad.clone()
            dist.all_reduce(t_grad)
            value = loss.detach().clone()
            dist.all_reduce(value)
            results[name] = {
                "value": value / world,
                "t_grad": t_grad / world,
                "q_grad": q.grad / world,
                "k_grad": k.grad / world,
            }
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sizes", [(4, 4), (3, 5), (2, 4, 3)], ids=["2equal", "2uneven", "3uneven"])
def test_gather_matches_single_process_on_the_global_batch(sizes, tmp_path):
    world = len(sizes)
    mp.spawn(_worker, args=(world, _free_port(), sizes, str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    q_all, k_all = _global_batch(sum(sizes))
    for name, fn in VARIANTS.items():
        q, k = q_all.clone().requires_grad_(), k_all.clone().requires_grad_()
        t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        want = fn(q, k, t, False)
        want.backward()
        got = ranks[0][name]
        torch.testing.assert_close(got["value"], want.detach(), msg=name)
        torch.testing.assert_close(got["t_grad"], t.grad, msg=name)
        torch.testing.assert_close(torch.cat([r[name]["q_grad"] for r in ranks]), q.grad, msg=name)
        torch.testing.assert_close(torch.cat([r[name]["k_grad"] for r in ranks]), k.grad, msg=name)


def test_gather_without_process_group_is_the_local_loss():
    q, k = _global_batch(6)
    for fn in VARIANTS.values():
        torch.testing.assert_close(fn(q, k, 0.3, True), fn(q, k, 0.3, False))


def test_gather_refuses_explicit_negatives():
    q, k = _global_batch(4)
    with pytest.raises(ValueError, match="gather=True gathers the in-batch keys"):
        nce.info_nce(q, k, torch.randn(3, D, dtype=torch.float64), gather=True)
