"""info_nce(..., negatives, in_batch=True): the given negatives join the in-batch keys in one
softmax, against a float64 naive loop written from the definition (tests/reference.py)."""

import pytest
import torch

import nce
from nce.chunked import grad_cache

import reference as ref
from conftest import randn

N, K, M, D = 7, 3, 5, 4
TOL64 = dict(rtol=1e-10, atol=1e-10)
TOL32 = dict(rtol=1e-5, atol=1e-5)


def _batch(kind, dtype=torch.float64, n=N):
    q, k = randn(n, D, dtype=dtype), randn(n, D, dtype=dtype, seed=1)
    neg = (
        randn(M, D, dtype=dtype, seed=2)
        if kind == "shared"
        else randn(n, K, D, dtype=dtype, seed=2)
    )
    g = torch.Generator().manual_seed(3)
    neg_shape = neg.shape[:-1]
    log_q = (
        torch.randn(n, generator=g, dtype=dtype),
        torch.randn(neg_shape, generator=g, dtype=dtype),
    )
    # repeated ids: duplicate positives among the keys, negatives that hit some positives
    key_ids = torch.tensor([0, 1, 2, 1, 3, 0, 4][:n])
    negative_ids = torch.randint(0, 6, neg_shape, generator=g)
    return q, k, neg, log_q, key_ids, negative_ids


def _weighted(loss, n):
    return (loss * torch.linspace(0.5, 1.5, n, dtype=loss.dtype)).sum()


@pytest.mark.parametrize("kind", ["shared", "paired"])
@pytest.mark.parametrize("options", ["plain", "log_q", "hits", "both"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL64), (torch.float32, TOL32)])
def test_matches_the_reference_in_value_and_gradient(kind, options, normalize, dtype, tol):
    q, k, neg, log_q, key_ids, negative_ids = _batch(kind, dtype)
    use_q, use_hits = options in ("log_q", "both"), options in ("hits", "both")
    got = nce.info_nce(
        q,
        k,
        neg,
        in_batch=True,
        temperature=0.4,
        normalize=normalize,
        reduction="none",
        log_q=log_q if use_q else None,
        remove_accidental_hits=use_hits,
        key_ids=key_ids if use_hits else None,
        negative_ids=negative_ids if use_hits else None,
    )
    q64, k64, n64 = (x.detach().double().requires_grad_() for x in (q, k, neg))
    want = ref.joint_terms(
        q64,
        k64,
        n64,
        0.4,
        normalize,
        log_q=tuple(x.double() for x in log_q) if use_q else None,
        ids=(key_ids, negative_ids) if use_hits else None,
    )
    torch.testing.assert_close(got.double(), want, **tol)
    g_got = torch.autograd.grad(_weighted(got, N), (q, k, neg))
    g_want = torch.autograd.grad(_weighted(want, N), (q64, k64, n64))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), b, **tol)


def test_paired_negatives_are_scored_by_every_query():
    # Moving a hard negative from query 0's list to query 5's leaves the loss unchanged: every
    # query scores all N*K negatives. Without in_batch it changes.
    q, k, neg, *_ = _batch("paired")
    moved = neg.detach().clone()
    moved[[0, 5], 1] = moved[[5, 0], 1]
    for in_batch, same in ((True, True), (False, False)):
        a = nce.info_nce(q, k, neg, in_batch=in_batch)
        b = nce.info_nce(q, k, moved, in_batch=in_batch)
        assert bool(torch.isclose(a, b, rtol=1e-12)) == same


@pytest.mark.parametrize("kind", ["shared", "paired"])
@pytest.mark.parametrize("chunk", [1, 2, 3, N])  # 3 leaves an uneven last tile of 1 row
def test_tiles_of_any_size_agree(kind, chunk):
    q, k, neg, log_q, key_ids, negative_ids = _batch(kind)
    kw = dict(
        in_batch=True,
        reduction="none",
        log_q=log_q,
        remove_accidental_hits=True,
        key_ids=key_ids,
        negative_ids=negative_ids,
    )
    whole = nce.info_nce(q, k, neg, chunk_size=100, **kw)
    tiled = nce.info_nce(q, k, neg, chunk_size=chunk, **kw)
    torch.testing.assert_close(tiled, whole, **TOL64)
    for weights in (None, torch.linspace(0.5, 1.5, N, dtype=torch.float64)):

        def total(x, w=weights):
            return x.sum() if w is None else (x * w).sum()

        g_whole = torch.autograd.grad(total(whole), (q, k, neg), retain_graph=True)
        g_tiled = torch.autograd.grad(total(tiled), (q, k, neg), retain_graph=True)
        for a, b in zip(g_tiled, g_whole, strict=True):
            torch.testing.assert_close(a, b, **TOL64)


@pytest.mark.parametrize("kind", ["shared", "paired"])
def test_gradcheck(kind):
    q, k, neg, log_q, key_ids, negative_ids = _batch(kind, n=4)
    t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

    def loss(a, b, c, t):
        return nce.info_nce(
            a, b, c, in_batch=True, temperature=t, reduction="none", log_q=log_q,
            remove_accidental_hits=True, key_ids=key_ids[:4], negative_ids=negative_ids,
        )  # fmt: skip

    if kind == "paired":
        log_q = (log_q[0][:4], log_q[1][:4])
        negative_ids = negative_ids[:4]
    else:
        log_q = (log_q[0][:4], log_q[1])
    assert torch.autograd.gradcheck(loss, (q[:4].detach().requires_grad_(),
                                           k[:4].detach().requires_grad_(), neg, t))  # fmt: skip


@pytest.mark.parametrize("kind", ["shared", "paired"])
def test_symmetric_adds_the_key_to_query_direction_over_the_queries(kind):
    q, k, neg, _, key_ids, negative_ids = _batch(kind)
    got = nce.info_nce(
        q, k, neg, in_batch=True, symmetric=True, reduction="none", temperature=0.3,
        remove_accidental_hits=True, key_ids=key_ids, negative_ids=negative_ids,
    )  # fmt: skip
    forward = ref.joint_terms(q, k, neg, 0.3, True, ids=(key_ids, negative_ids))
    back = ref.joint_terms(k, q, None, 0.3, True, ids=(key_ids,))
    want = 0.5 * (forward + back)
    torch.testing.assert_close(got, want, **TOL64)
    g_got = torch.autograd.grad(_weighted(got, N), (q, k, neg))
    g_want = torch.autograd.grad(_weighted(want, N), (q, k, neg))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, **TOL64)


def test_without_negatives_in_batch_changes_nothing():
    q, k, *_ = _batch("shared")
    torch.testing.assert_close(nce.info_nce(q, k, in_batch=True), nce.info_nce(q, k))


def test_a_single_query_scores_its_positive_and_the_negatives():
    q, k, neg, *_ = _batch("shared", n=1)
    got = nce.info_nce(q, k, neg, in_batch=True, temperature=0.3)
    torch.testing.assert_close(got, ref.joint_terms(q, k, neg, 0.3, True).mean(), **TOL64)


def test_every_column_a_hit_leaves_the_positive_alone():
    q, k, neg, *_ = _batch("paired", n=3)
    ids = torch.zeros(3, dtype=torch.long)
    loss = nce.info_nce(
        q, k, neg, in_batch=True, remove_accidental_hits=True, key_ids=ids,
        negative_ids=torch.zeros(3, K, dtype=torch.long),
    )  # fmt: skip
    assert abs(loss.item()) < 1e-12
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, (q, k, neg)))


def test_grad_cache_gives_the_full_batch_gradient():
    torch.manual_seed(0)
    tower = torch.nn.Linear(6, D).double()
    g = torch.Generator().manual_seed(1)
    xq, xk = (
        torch.randn(N, 6, generator=g, dtype=torch.float64),
        torch.randn(N, 6, generator=g, dtype=torch.float64),
    )
    xn = torch.randn(N * K, 6, generator=g, dtype=torch.float64)  # K hard negatives per query

    def loss_fn(zq, zk, zn):
        return nce.info_nce(zq, zk, zn.reshape(N, K, D), in_batch=True, temperature=0.2)

    want = loss_fn(tower(xq), tower(xk), tower(xn))
    want.backward()
    expected = [p.grad.clone() for p in tower.parameters()]
    tower.zero_grad()
    got = grad_cache(loss_fn, [(tower, xq), (tower, xk), (tower, xn)], sub_batch_size=3)
    torch.testing.assert_close(got, want.detach())
    for a, b in zip((p.grad for p in tower.parameters()), expected, strict=True):
        torch.testing.assert_close(a, b)


BAD = [
    (dict(log_q=torch.zeros(N)), TypeError, r"log_q must be a pair \(key_log_q of shape \(7,\)"),
    (
        dict(log_q=(torch.zeros(N + 1), torch.zeros(N, K))),
        ValueError,
        r"log_q\[0\] \(the keys'\) must have shape \(8?7,\) \(one per key\), got \(8,\)",
    ),
    (
        dict(log_q=(torch.zeros(N), torch.zeros(N * K))),
        ValueError,
        r"log_q\[1\] \(the negatives'\) must have shape \(7, 3\) \(one per negative\), got \(21,\)",
    ),
    (
        dict(
            remove_accidental_hits=True,
            key_ids=torch.arange(N),
            negative_ids=torch.zeros(N, dtype=torch.long),
        ),
        ValueError,
        r"negative_ids must have shape \(7, 3\), got \(7,\)",
    ),
    (
        dict(remove_accidental_hits=True, key_ids=torch.arange(N)),
        ValueError,
        "needs key_ids and negative_ids",
    ),
    (dict(symmetric=True, log_q=(torch.zeros(N), torch.zeros(N, K))), ValueError, "symmetric"),
    (dict(in_batch=1), TypeError, "in_batch must be True or False, got 1"),
]


@pytest.mark.parametrize("kwargs, kind, message", BAD)
def test_bad_inputs_name_the_argument(kwargs, kind, message):
    q, k = randn(N, D, dtype=torch.float32), randn(N, D, dtype=torch.float32, seed=1)
    neg = randn(N, K, D, dtype=torch.float32, seed=2)
    kwargs = {"in_batch": True, **kwargs}
    with pytest.raises(kind, match=message):
        nce.info_nce(q, k, neg, **kwargs)


def test_symmetric_with_replacing_negatives_is_refused():
    q, k, neg, *_ = _batch("shared")
    with pytest.raises(ValueError, match="symmetric=True needs in-batch negatives"):
        nce.info_nce(q, k, neg, symmetric=True)
