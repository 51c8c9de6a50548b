"""The small-batch path (one dense block) against the float64 loop references, against plain
autograd over dense logits, and against the tiled path, in value and gradient."""

import math

import pytest
import torch
import torch.nn.functional as F

import nce
from nce.functional import _dense_softmax
from nce.functional._common import normalize_eps
from nce.functional._dense_softmax import DENSE_MAX_ROWS, dense_ok

import reference as ref
from conftest import randn

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=2e-5, atol=2e-5)}
REDUCTIONS = ("none", "mean", "sum")


def _reduce(terms, reduction):
    return terms if reduction == "none" else terms.mean() if reduction == "mean" else terms.sum()


def _plain_info_nce(q, k, tau, symmetric, reduction):
    """Plain autograd over the dense logits, with the library's normalization."""
    eps = normalize_eps(q.dtype)
    logits = F.normalize(q, dim=1, eps=eps) @ F.normalize(k, dim=1, eps=eps).T / tau
    target = torch.arange(q.shape[0])
    terms = F.cross_entropy(logits, target, reduction="none")
    if symmetric:
        terms = 0.5 * (terms + F.cross_entropy(logits.T, target, reduction="none"))
    return _reduce(terms, reduction)


def _plain_nt_xent(v1, v2, tau, reduction):
    z = F.normalize(torch.cat([v1, v2]), dim=1, eps=normalize_eps(v1.dtype))
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    n = v1.shape[0]
    terms = F.cross_entropy(logits, torch.arange(2 * n).roll(n), reduction="none")
    return _reduce(terms, reduction)


def _grads(loss, inputs, weights):
    target = (loss * weights).sum() if loss.dim() else loss
    return torch.autograd.grad(target, inputs)


def _assert_same(got, want, inputs_got, inputs_want, weights, tol):
    torch.testing.assert_close(got.double(), want.double(), **tol)
    for a, b in zip(
        _grads(got, inputs_got, weights),
        _grads(want, inputs_want, weights.to(want.dtype)),
        strict=True,
    ):
        torch.testing.assert_close(a.double(), b.double(), **tol)


def test_the_small_batch_path_is_taken():
    q, k = randn(8, 4), randn(8, 4, seed=1)
    assert type(nce.info_nce(q, k).grad_fn).__name__ == "DensePairedCEBackward"
    assert type(nce.nt_xent(q, k).grad_fn).__name__ == "DenseSelfCEBackward"
    # Not taken: unnormalized rows, a tile smaller than the batch, a tiny temperature.
    assert "Dense" not in type(nce.info_nce(q, k, normalize=False).grad_fn).__name__
    assert "Dense" not in type(nce.info_nce(q, k, chunk_size=7).grad_fn).__name__
    assert "Dense" not in type(nce.nt_xent(q, k, chunk_size=15).grad_fn).__name__
    assert "Dense" not in type(nce.info_nce(q, k, temperature=0.02).grad_fn).__name__


def test_size_threshold():
    like = torch.zeros(1)
    assert dense_ok(DENSE_MAX_ROWS, None, 0.1, like)
    assert not dense_ok(DENSE_MAX_ROWS + 1, None, 0.1, like)
    assert dense_ok(8, 8, 0.1, like) and not dense_ok(8, 7, 0.1, like)
    assert not dense_ok(8, None, 0.1, like.half())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_info_nce_matches_reference(dtype, symmetric, reduction):
    q, k = randn(7, 5, dtype=dtype), randn(7, 5, dtype=dtype, seed=1)
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    got = nce.info_nce(q, k, temperature=0.2, symmetric=symmetric, reduction=reduction)
    assert type(got.grad_fn).__name__ == "DensePairedCEBackward"
    terms = ref.clip_terms(q64, k64, 0.2) if symmetric else ref.info_nce_terms(q64, k64, tau=0.2)
    weights = torch.linspace(0.2, 1.5, 7, dtype=dtype)
    _assert_same(got, _reduce(terms, reduction), (q, k), (q64, k64), weights, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nt_xent_matches_reference(dtype, reduction):
    v1, v2 = randn(5, 4, dtype=dtype), randn(5, 4, dtype=dtype, seed=1)
    a, b = (x.detach().double().requires_grad_() for x in (v1, v2))
    got = nce.nt_xent(v1, v2, temperature=0.3, reduction=reduction)
    assert type(got.grad_fn).__name__ == "DenseSelfCEBackward"
    want = _reduce(ref.nt_xent_terms(a, b, 0.3), reduction)
    weights = torch.linspace(0.2, 1.5, 10, dtype=dtype)
    _assert_same(got, want, (v1, v2), (a, b), weights, TOL[dtype])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_zero_and_tiny_rows_match_plain_autograd(reduction, symmetric):
    q, k = randn(6, 3).detach(), randn(6, 3, seed=1).detach()
    q[0], k[1], k[2] = 0.0, 1e-14, 0.0
    q, k = q.requires_grad_(), k.requires_grad_()
    q2, k2 = (x.detach().clone().requires_grad_() for x in (q, k))
    got = nce.info_nce(q, k, temperature=0.5, symmetric=symmetric, reduction=reduction)
    want = _plain_info_nce(q2, k2, 0.5, symmetric, reduction)
    weights = torch.linspace(0.5, 1.0, 6, dtype=torch.float64)
    _assert_same(got, want, (q, k), (q2, k2), weights, TOL[torch.float64])
    got = nce.nt_xent(q, k, temperature=0.5, reduction=reduction)
    want = _plain_nt_xent(q2, k2, 0.5, reduction)
    weights = torch.linspace(0.5, 1.0, 12, dtype=torch.float64)
    _assert_same(got, want, (q, k), (q2, k2), weights, TOL[torch.float64])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_learned_temperature_gradcheck(reduction):
    q, k = randn(5, 3), randn(5, 3, seed=1)
    t = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    for symmetric in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b, t, s=symmetric: nce.info_nce(
                a, b, temperature=t, symmetric=s, reduction=reduction
            ),
            (q, k, t),
        )
    assert torch.autograd.gradcheck(
        lambda a, b, t: nce.nt_xent(a, b, temperature=t, reduction=reduction), (q, k, t)
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_both_sides_of_the_threshold_agree(monkeypatch, reduction):
    # The same batch through one dense block and through tiles of the tiled path.
    q, k = randn(12, 6, dtype=torch.float32), randn(12, 6, dtype=torch.float32, seed=1)
    t = torch.tensor(0.25, requires_grad=True)
    weights = torch.rand(24, generator=torch.Generator().manual_seed(2))
    results = {}
    for limit in (24, 11):  # 24: both dense; 11: both tiled (the tiles hold the whole batch)
        monkeypatch.setattr(_dense_softmax, "DENSE_MAX_ROWS", limit)
        for name, loss in (
            ("info", nce.info_nce(q, k, temperature=t, reduction=reduction)),
            ("clip", nce.info_nce(q, k, temperature=t, symmetric=True, reduction=reduction)),
            ("xent", nce.nt_xent(q, k, temperature=t, reduction=reduction)),
        ):
            assert ("Dense" in type(loss.grad_fn).__name__) == (limit == 24)
            w = weights[: loss.numel()] if loss.dim() else 1.0
            results.setdefault(name, []).append(
                (loss.detach(), *torch.autograd.grad((loss * w).sum(), (q, k, t)))
            )
    for dense, tiled in results.values():
        for a, b in zip(dense, tiled, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("where", ["query", "key"])
def test_non_finite_inputs_are_refused_after_the_product(reduction, where):
    q, k = randn(6, 4).detach(), randn(6, 4, seed=1).detach()
    (q if where == "query" else k)[3, 1] = float("inf")
    name = {"query": "query", "key": "key"}[where]
    with pytest.raises(ValueError, match=f"{name} contains 1 NaN or Inf"):
        nce.info_nce(q, k, reduction=reduction)
    with pytest.raises(ValueError, match=f"{name} contains 1 NaN or Inf"):
        nce.info_nce(q, k, symmetric=True, reduction=reduction)
    view = "view1" if where == "query" else "view2"
    with pytest.raises(ValueError, match=f"{view} contains 1 NaN or Inf"):
        nce.nt_xent(q, k, reduction=reduction)


def test_all_equal_rows_give_log_n():
    x = torch.ones(9, 4, requires_grad=True)
    torch.testing.assert_close(nce.info_nce(x, x).detach(), torch.tensor(math.log(9)))
    torch.testing.assert_close(nce.nt_xent(x, x).detach(), torch.tensor(math.log(17)))


def test_checks_passed_once_still_refuse_bad_calls_of_the_same_shapes():
    q, k = randn(6, 4).detach(), randn(6, 4, seed=1).detach()
    nce.info_nce(q, k)
    nce.nt_xent(q, k)
    bad = k.clone()
    bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="key contains 1 NaN or Inf"):
        nce.info_nce(q, bad)
    with pytest.raises(ValueError, match="view2 contains 1 NaN or Inf"):
        nce.nt_xent(q, bad)
    for loss in (nce.info_nce, nce.nt_xent):
        with pytest.raises(ValueError, match="temperature"):
            loss(q, k, temperature=-1.0)
        with pytest.raises(ValueError, match="reduction"):
            loss(q, k, reduction="max")
        with pytest.raises(ValueError, match="has shape"):
            loss(q, k[:, :3])
        with pytest.raises(TypeError, match="dtype mismatch"):
            loss(q, k.float())
