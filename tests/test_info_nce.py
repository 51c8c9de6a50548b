import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nce

import reference as ref
from conftest import assert_close_grads, randn

TOL64 = dict(rtol=1e-10, atol=1e-10)
TOL32 = dict(rtol=1e-5, atol=1e-5)


def _pair(n=7, d=5, dtype=torch.float64, seed=0):
    return randn(n, d, dtype=dtype, seed=seed), randn(n, d, dtype=dtype, seed=seed + 1)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_in_batch_matches_reference(normalize, temperature):
    q, k = _pair()
    got = nce.info_nce(q, k, temperature=temperature, normalize=normalize)
    want = ref.info_nce_terms(q, k, None, temperature, normalize).mean()
    assert_close_grads(got, want, (q, k), (q, k), **TOL64)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL64), (torch.float32, TOL32)])
@pytest.mark.parametrize("kind", ["shared", "paired"])
def test_explicit_negatives_match_reference(kind, dtype, tol):
    q, k = _pair(dtype=dtype)
    neg = (
        randn(11, 5, dtype=dtype, seed=9)
        if kind == "shared"
        else randn(7, 4, 5, dtype=dtype, seed=9)
    )
    got = nce.info_nce(q, k, neg, temperature=0.2)
    q64, k64, n64 = (x.detach().double().requires_grad_() for x in (q, k, neg))
    want = ref.info_nce_terms(q64, k64, n64, 0.2, True).mean()
    torch.testing.assert_close(got.double(), want, **tol)
    g_got = torch.autograd.grad(got, (q, k, neg))
    g_want = torch.autograd.grad(want, (q64, k64, n64))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), b, **tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL64), (torch.float32, TOL32)])
def test_symmetric_is_clip(dtype, tol):
    q, k = _pair(dtype=dtype)
    got = nce.info_nce(q, k, temperature=0.07, symmetric=True, reduction="none")
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    want = ref.clip_terms(q64, k64, 0.07)
    torch.testing.assert_close(got.double(), want, **tol)
    w = torch.linspace(0.1, 2.0, 7, dtype=dtype)
    g_got = torch.autograd.grad((got * w).sum(), (q, k))
    g_want = torch.autograd.grad((want * w.double()).sum(), (q64, k64))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), b, **tol)


@pytest.mark.parametrize("chunk", [None, 4])
def test_log_q_and_accidental_hits_in_batch(chunk):
    # log Q is subtracted from every column of the batch softmax, the positive's included.
    q, k = _pair(n=6)
    log_q = randn(6, seed=5, requires_grad=False)
    ids = torch.tensor([0, 1, 2, 1, 3, 0])
    got = nce.info_nce(
        q,
        k,
        temperature=0.3,
        log_q=log_q,
        remove_accidental_hits=True,
        key_ids=ids,
        chunk_size=chunk,
    )
    want = ref.joint_terms(q, k, None, 0.3, True, log_q=(log_q,), ids=(ids,)).mean()
    assert_close_grads(got, want, (q, k), (q, k), **TOL64)


def test_in_batch_log_q_corrects_the_positive_too():
    # With equal scores, row i's loss is log_q[i] + log sum_j exp(-log_q[j]): a positive with a
    # larger expected count gets a larger loss. Correcting the negatives only would not.
    q = torch.ones(4, 3, dtype=torch.float64)
    log_q = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    got = nce.info_nce(q, q, log_q=log_q, reduction="none")
    want = log_q + torch.logsumexp(-log_q, 0)
    torch.testing.assert_close(got, want, **TOL64)


@pytest.mark.parametrize("kind", ["shared", "paired"])
def test_log_q_and_accidental_hits_sampled(kind):
    q, k = _pair(n=5)
    if kind == "shared":
        neg, neg_ids = randn(8, 5, seed=3), torch.tensor([0, 1, 2, 3, 4, 5, 1, 1])
        log_q = randn(8, seed=4, requires_grad=False)
    else:
        neg, neg_ids = (
            randn(5, 3, 5, seed=3),
            torch.randint(0, 4, (5, 3), generator=torch.Generator().manual_seed(1)),
        )
        log_q = randn(5, 3, seed=4, requires_grad=False)
    key_ids = torch.tensor([0, 1, 2, 3, 1])

    def hit(i, j):
        return (neg_ids[j] if neg_ids.dim() == 1 else neg_ids[i, j]) == key_ids[i]

    got = nce.info_nce(
        q,
        k,
        neg,
        temperature=0.5,
        log_q=log_q,
        remove_accidental_hits=True,
        key_ids=key_ids,
        negative_ids=neg_ids,
    )
    want = ref.info_nce_terms(q, k, neg, 0.5, True, log_q=log_q, hits=hit).mean()
    assert_close_grads(got, want, (q, k, neg), (q, k, neg), **TOL64)


def test_accidental_hit_mask_is_finite_even_when_all_negatives_hit():
    q, k = _pair(n=3)
    neg, neg_ids = randn(4, 5, seed=3), torch.zeros(4, dtype=torch.long)
    key_ids = torch.zeros(3, dtype=torch.long)
    loss = nce.info_nce(
        q, k, neg, remove_accidental_hits=True, key_ids=key_ids, negative_ids=neg_ids
    )
    assert torch.isfinite(loss) and abs(loss.item()) < 1e-10  # only the positive remains
    (g,) = torch.autograd.grad(loss, q)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck_in_batch_and_symmetric(symmetric):
    q, k = _pair(n=5, d=3)
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)

    def loss(a, b, t):
        return nce.info_nce(a, b, temperature=t, symmetric=symmetric, reduction="none")

    assert torch.autograd.gradcheck(loss, (q, k, t))


def test_gradcheck_explicit_negatives():
    q, k = _pair(n=4, d=3)
    neg = randn(4, 2, 3, seed=7)
    assert torch.autograd.gradcheck(
        lambda a, b, c: nce.info_nce(a, b, c, temperature=0.5), (q, k, neg)
    )


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("chunk", [1, 12, 13, 14, 5])
def test_chunked_equals_dense(chunk, symmetric):
    q, k = _pair(n=13, d=4, dtype=torch.float32)
    t = torch.tensor(0.2, requires_grad=True)
    w = torch.rand(13, generator=torch.Generator().manual_seed(3))
    dense = nce.info_nce(q, k, temperature=t, symmetric=symmetric, reduction="none", chunk_size=13)
    tiled = nce.info_nce(
        q, k, temperature=t, symmetric=symmetric, reduction="none", chunk_size=chunk
    )
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-6)
    for reduction_weights in (None, w):  # uniform and non-uniform upstream gradients

        def total(loss, rw=reduction_weights):
            return loss.mean() if rw is None else (loss * rw).sum()

        g_dense = torch.autograd.grad(total(dense), (q, k, t), retain_graph=True)
        g_tiled = torch.autograd.grad(total(tiled), (q, k, t), retain_graph=True)
        for a, b in zip(g_tiled, g_dense, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [None, 1, 5, 6, 7, 4])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("symmetric", [False, True])
def test_tiled_path_equals_autograd_path_with_zero_and_tiny_rows(normalize, symmetric, chunk):
    # A zero log_q sends the same loss through the plain autograd path.
    q, k = _pair(n=6, d=4)
    q = q.detach().clone()
    q[0], q[3] = 0.0, 1e-14
    q.requires_grad_()
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    kw = dict(temperature=t, normalize=normalize, reduction="none")
    tiled = nce.info_nce(q, k, symmetric=symmetric, chunk_size=chunk, **kw)
    if symmetric:
        plain = nce.info_nce(
            q, k, symmetric=True, key_ids=torch.arange(6), remove_accidental_hits=True, **kw
        )
    else:
        plain = nce.info_nce(q, k, log_q=torch.zeros(6, dtype=torch.float64), **kw)
    w = torch.linspace(0.5, 1.5, 6, dtype=torch.float64)
    assert_close_grads((tiled * w).sum(), (plain * w).sum(), (q, k, t), (q, k, t), **TOL64)


def test_no_grad_path_matches():
    q, k = _pair(dtype=torch.float32)
    with torch.no_grad():
        a = nce.info_nce(q, k)
    torch.testing.assert_close(a, nce.info_nce(q, k).detach())


def test_joint_permutation_invariant_one_sided_not():
    q, k = _pair(n=9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    base = nce.info_nce(q, k)
    torch.testing.assert_close(nce.info_nce(q[perm], k[perm]), base)
    assert not torch.isclose(nce.info_nce(q[perm], k), base)


def test_all_equal_embeddings_give_log_n():
    q = torch.ones(10, 4, dtype=torch.float64)
    torch.testing.assert_close(nce.info_nce(q, q), torch.tensor(math.log(10), dtype=torch.float64))
    torch.testing.assert_close(
        nce.info_nce(q, q, symmetric=True), torch.tensor(math.log(10), dtype=torch.float64)
    )


def test_scale_invariant_when_normalizing():
    q, k = _pair()
    torch.testing.assert_close(nce.info_nce(3.0 * q, 0.01 * k), nce.info_nce(q, k))


def test_zero_vectors_give_finite_loss_and_gradient():
    q, k = _pair(n=4)
    q = q.detach().clone()
    q[0] = 0
    q.requires_grad_()
    loss = nce.info_nce(q, k)
    (g,) = torch.autograd.grad(loss, q)
    assert torch.isfinite(loss) and torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computed_in_float32(dtype):
    g = torch.Generator().manual_seed(0)
    q = (torch.randn(16, 8, generator=g) * 4).to(dtype).requires_grad_()
    k = (torch.randn(16, 8, generator=g) * 4).to(dtype).requires_grad_()
    assert (
        float((q.detach().float() @ k.detach().float().T).abs().max()) / 0.01 > 5e3
    )  # logits up to ~1e4
    for normalize in (True, False):
        loss = nce.info_nce(q, k, temperature=0.01, normalize=normalize)
        assert loss.dtype == dtype and torch.isfinite(loss)
        gq, gk = torch.autograd.grad(loss, (q, k))
        assert gq.dtype == dtype and torch.isfinite(gq).all() and torch.isfinite(gk).all()
    want = nce.info_nce(q.float(), k.float(), temperature=0.01)
    torch.testing.assert_close(
        nce.info_nce(q, k, temperature=0.01).float(), want, rtol=1e-2, atol=1e-2
    )


def test_reductions():
    q, k = _pair()
    per = nce.info_nce(q, k, reduction="none")
    assert per.shape == (7,)
    torch.testing.assert_close(nce.info_nce(q, k, reduction="sum"), per.sum())
    torch.testing.assert_close(nce.info_nce(q, k), per.mean())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 9), d=st.integers(1, 6), m=st.integers(1, 5), chunk=st.integers(1, 10))
def test_shapes_property(n, d, m, chunk):
    q, k = _pair(n=n, d=d)
    assert nce.info_nce(q, k, reduction="none", chunk_size=chunk).shape == (n,)
    assert nce.info_nce(q, k, randn(m, d), reduction="none").shape == (n,)
    assert nce.info_nce(q, k, randn(n, m, d), reduction="none").shape == (n,)
    assert nce.info_nce(q, k, symmetric=True).shape == ()


def test_training_after_an_inference_mode_call():
    # The CPU tile cache must never hold inference tensors that training would then write.
    from nce.functional import _tiled_softmax

    _tiled_softmax._cpu_workspace.__dict__.pop("buffers", None)
    q, k = torch.randn(300, 16), torch.randn(300, 16)
    with torch.inference_mode():
        nce.info_nce(q, k)
    q.requires_grad_()
    nce.info_nce(q, k).backward()
    assert torch.isfinite(q.grad).all()


def test_in_place_change_after_the_loss_is_refused():
    q = torch.randn(6, 4, requires_grad=True)
    k = torch.randn(6, 4)
    loss = nce.info_nce(q, k, normalize=False, reduction="none")
    k.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward(torch.arange(6.0))


def test_second_derivatives_raise_instead_of_vanishing():
    q, k = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4)
    (grad,) = torch.autograd.grad(nce.info_nce(q, k), q, create_graph=False)
    assert grad.shape == q.shape
    with pytest.raises(RuntimeError, match="first-order gradient only"):
        torch.autograd.grad(nce.info_nce(q, k), q, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order gradient only"):
        torch.autograd.grad(nce.nt_xent(q, k), q, create_graph=True)


@pytest.mark.parametrize("temperature", [0.02, 0.0289, 0.5])  # c = log2(e)/tau: 72, 49.9, 2.9
@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL64), (torch.float32, TOL32)])
def test_exponentials_without_maxima_match_reference(temperature, dtype, tol):
    # Unit rows bound every logit by 1/tau: up to UNSHIFTED_MAX (base 2) the tiles skip the row
    # maxima; beyond it they subtract them. Both sides of the switch, near-parallel pairs
    # included (logits at the bound), agree with the float64 reference, in value and gradient.
    from nce.functional._tiled_softmax import unshifted_ok

    if dtype == torch.float32:  # float32 logits of 1/tau = 50 carry errors of ~50 ulp
        tol = dict(rtol=tol["rtol"] * max(1.0, 0.1 / temperature), atol=tol["atol"] * 5)
    q, k = _pair(n=32, d=8, dtype=dtype, seed=3)
    k = (k + 0).detach()
    k[:8] = q[:8].detach()  # eight pairs with cosine 1
    k.requires_grad_()
    assert unshifted_ok(torch.tensor(1 / temperature), q) == (temperature > 0.0289 - 1e-9)
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    w = torch.linspace(0.1, 2.0, 32, dtype=dtype)
    for symmetric in (False, True):
        got = nce.info_nce(q, k, temperature=temperature, symmetric=symmetric, reduction="none")
        want = (
            ref.clip_terms(q64, k64, temperature)
            if symmetric
            else ref.info_nce_terms(q64, k64, None, temperature, True)
        )
        torch.testing.assert_close(got.double(), want, **tol)
        for weights in (None, w):  # uniform upstream gradient, and a per-row one
            g_got = torch.autograd.grad(
                got.sum() if weights is None else (got * weights).sum(), (q, k), retain_graph=True
            )
            target = want.sum() if weights is None else (want * weights.double()).sum()
            g_want = torch.autograd.grad(target, (q64, k64), retain_graph=True)
            for a, b in zip(g_got, g_want, strict=True):
                torch.testing.assert_close(a.double(), b, **tol)
    got = nce.nt_xent(q, k, temperature=temperature, reduction="sum")
    want = ref.nt_xent_terms(q64, k64, temperature).sum()
    torch.testing.assert_close(got.double(), want, **tol)
    g_got = torch.autograd.grad(got, (q, k))
    g_want = torch.autograd.grad(want, (q64, k64))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), b, **tol)
