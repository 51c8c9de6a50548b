"""gather=True on real gloo process groups: parity with one process on the concatenated batch,
and bad batches refused alike on every rank (never a rank left waiting in a collective)."""

import os
import re
import socket
from datetime import timedelta

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
    # two hard negatives per query, made from its own rows, scored by every query of every rank
    "in_batch_negatives": lambda q, k, t, gather: nce.info_nce(
        q,
        k,
        torch.stack([q.flip(1), 2 * k], 1),
        in_batch=True,
        temperature=t,
        gather=gather,
        chunk_size=3,
        log_q=(k[:, 0].detach(), q[:, :2].detach()),
        remove_accidental_hits=True,
        key_ids=(k[:, 1] > 0).long(),
        negative_ids=(q[:, 2:4] > 0).long(),
    ),
    "log_q_in_batch": lambda q, k, t, gather: nce.info_nce(
        q, k, temperature=t, gather=gather, log_q=q[:, 0].detach(), reduction="sum"
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


def _init(rank, world, port):
    """A gloo group whose collectives fail after a minute instead of hanging the suite."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))


def _worker(rank, world, port, sizes, out_dir):
    _init(rank, world, port)
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


@pytest.mark.parametrize(
    "sizes",
    [(4, 4), (3, 5), (2, 4, 3), (1, 7), (0, 3, 5)],
    ids=["2equal", "2uneven", "3uneven", "one_row", "zero_rows"],
)
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


def _rows(n, d=D, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)


# Each case: what rank r passes (a function of r), and the error every rank must raise.
BAD_BATCHES = {
    "global_batch_of_one": (
        lambda r: nce.info_nce(_rows(1 - r), _rows(1 - r, seed=1), gather=True),
        ValueError,
        r"in-batch negatives need a batch of at least 2, got 1 \+ 0 = 1 rows of query over 2",
    ),
    "no_rows_anywhere_nt_xent": (
        lambda r: nce.nt_xent(_rows(0), _rows(0), gather=True),
        ValueError,
        r"NT-Xent needs a batch of at least 1, got 0 \+ 0 = 0 rows of view1",
    ),
    "no_rows_anywhere_clip": (
        lambda r: nce.info_nce(_rows(0), _rows(0), symmetric=True, gather=True),
        ValueError,
        "a batch of at least 2",
    ),
    "feature_size_differs": (
        lambda r: nce.info_nce(_rows(3, 5 + r), _rows(3, 5 + r, seed=1), gather=True),
        ValueError,
        r"same feature shape on every rank, got rank 0: query of shape \(3, 5\), "
        r"rank 1: query of shape \(3, 6\)",
    ),
    "dtype_differs": (
        lambda r: nce.nt_xent(
            *(_rows(3, dtype=torch.float32 if r else torch.float64, seed=s) for s in (0, 1)),
            gather=True,
        ),
        TypeError,
        "view1 of the same dtype on every rank, got rank 0: torch.float64, rank 1: torch.float32",
    ),
    "nan_on_one_rank": (
        lambda r: nce.info_nce(
            _rows(3).detach().index_fill(0, torch.tensor([0]), float("nan") if r else 0.0),
            _rows(3, seed=1),
            gather=True,
        ),
        ValueError,
        "on rank 1 of 2: query contains 5 NaN or Inf value",
    ),
    "shape_mismatch_on_one_rank": (
        lambda r: nce.info_nce(_rows(3), _rows(3 + r, seed=1), symmetric=True, gather=True),
        ValueError,
        r"on rank 1 of 2: query has shape \(3, 5\) but key has \(4, 5\)",
    ),
    "meta_tensor_on_one_rank": (
        lambda r: nce.info_nce(
            _rows(3), torch.empty(3, D, device="meta") if r == 0 else _rows(3), gather=True
        ),
        TypeError,
        "on rank 0 of 2: key is a meta tensor",
    ),
    "negatives_on_one_rank": (
        lambda r: nce.info_nce(_rows(3), _rows(3), _rows(4) if r else None, gather=True),
        ValueError,
        "on rank 1 of 2: gather=True gathers the in-batch keys",
    ),
    "gradient_tracked_on_one_rank": (
        lambda r: nce.info_nce(_rows(3), _rows(3).detach().requires_grad_(r == 1), gather=True),
        ValueError,
        "gather=True needs every rank to track gradients alike",
    ),
    "in_batch_negatives_on_one_rank": (
        lambda r: nce.info_nce(
            _rows(3),
            _rows(3),
            _rows(6).detach().reshape(3, 2, D) if r else None,
            in_batch=True,
            gather=True,
        ),  # fmt: skip
        ValueError,
        r"the same options on every rank, got rank 0: symmetric=0, negatives.dim\(\)=0",
    ),
    "hard_negative_count_differs": (
        lambda r: nce.info_nce(
            _rows(3),
            _rows(3),
            _rows(3 * (2 + r)).detach().reshape(3, 2 + r, D),
            in_batch=True,
            gather=True,
        ),  # fmt: skip
        ValueError,
        r"rank 0: negatives of shape \(3, 2, 5\), rank 1: negatives of shape \(3, 3, 5\)",
    ),
    "gather_rows_feature_size_differs": (
        lambda r: nce.distributed.gather_rows(torch.zeros(2, 3 + r)),
        ValueError,
        r"rank 0: x of shape \(2, 3\), rank 1: x of shape \(2, 4\)",
    ),
    "pairwise_nan_on_one_rank": (
        lambda r: nce.pairwise_nce(
            _rows(3).detach().index_fill(0, torch.tensor([0]), float("nan") if r else 0.0),
            _rows(3, seed=1),
            gather=True,
        ),
        ValueError,
        "on rank 1 of 2: query contains 5 NaN or Inf value",
    ),
    "pairwise_no_rows_anywhere": (
        lambda r: nce.pairwise_nce(_rows(0), _rows(0), gather=True),
        ValueError,
        r"the pairwise loss needs a batch of at least 1, got 0 \+ 0 = 0 rows of query",
    ),
    "pairwise_labels_on_one_rank": (
        lambda r: nce.pairwise_nce(
            _rows(3), _rows(3, seed=1), labels=torch.arange(3) if r else None, gather=True
        ),
        ValueError,
        r"labels must be given on every rank or none, got \['None', 'labels'\]",
    ),
    "float16_overflow_on_every_rank": (
        lambda r: nce.info_nce(
            _rows(4, seed=r).half(), _rows(4, seed=2 + r).half(), temperature=1e-6, gather=True
        ),
        ValueError,
        "exceeds the largest torch.float16 value 65504",
    ),
}


def _bad_batch_worker(rank, world, port, out_dir):
    _init(rank, world, port)
    try:
        raised = {}
        for name, (call, _, _) in BAD_BATCHES.items():
            try:
                call(rank)
                raised[name] = None
            except (TypeError, ValueError) as error:
                raised[name] = (type(error), str(error))
        # After every refusal the group is still in step: a good call runs on every rank.
        q = _rows(1 + 3 * rank)
        loss = nce.info_nce(q, _rows(1 + 3 * rank, seed=1), gather=True)
        loss.backward()
        n = 0 if rank else 2
        none = nce.nt_xent(_rows(n), _rows(n, seed=1), gather=True, reduction="none")
        none.sum().backward()
        # Ranks that differ in an option the overflow check depends on still meet in it.
        mixed = nce.info_nce(_rows(3), _rows(3, seed=1), normalize=rank == 0, gather=True)
        raised["mixed_normalize"] = bool(torch.isfinite(mixed))
        # A rank with no rows takes part in the pairwise ring too.
        m = 0 if rank else 3
        pair = nce.pairwise_nce(_rows(m), _rows(m, seed=1), gather=True)
        pair.backward()
        raised["pairwise_empty_rank"] = float(pair)
        raised["after"] = (float(loss), tuple(q.grad.shape), tuple(none.shape))
        torch.save(raised, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_bad_batches_raise_the_same_error_on_every_rank(tmp_path):
    mp.spawn(_bad_batch_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name, (_, kind, message) in BAD_BATCHES.items():
        for raised in ranks:
            assert raised[name] is not None, f"{name}: no error"
            assert raised[name][0] is kind, f"{name}: {raised[name]}"
            assert re.search(message, raised[name][1]), f"{name}: {raised[name][1]}"
        assert ranks[0][name] == ranks[1][name], name
    assert ranks[0]["after"][1] == (1, D) and ranks[1]["after"][1] == (4, D)
    assert ranks[0]["after"][2] == (4,) and ranks[1]["after"][2] == (0,)
    assert ranks[0]["mixed_normalize"] and ranks[1]["mixed_normalize"]
    single = nce.pairwise_nce(_rows(3), _rows(3, seed=1))
    assert ranks[1]["pairwise_empty_rank"] == 0.0
    torch.testing.assert_close(
        torch.tensor(ranks[0]["pairwise_empty_rank"] / 2, dtype=torch.float64), single.detach()
    )


def test_global_layout_without_process_group_checks_the_local_batch():
    with pytest.raises(
        ValueError, match=r"need a batch of at least 2, got query of shape \(1, 5\)"
    ):
        nce.info_nce(_rows(1), _rows(1), gather=True)
    with pytest.raises(
        ValueError, match=r"need a batch of at least 2, got query of shape \(0, 5\)"
    ):
        nce.info_nce(_rows(0), _rows(0), gather=True)
    with pytest.raises(ValueError, match=r"query has shape \(3, 5\) but key has \(4, 5\)"):
        nce.info_nce(_rows(3), _rows(4), gather=True)
