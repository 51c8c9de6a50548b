import math

import pytest
import torch

import nce

import reference as ref
from conftest import assert_close_grads, randn


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_matches_reference(dtype, tol, temperature):
    v1, v2 = randn(6, 4, dtype=dtype), randn(6, 4, dtype=dtype, seed=1)
    got = nce.nt_xent(v1, v2, temperature=temperature, reduction="none")
    a, b = (x.detach().double().requires_grad_() for x in (v1, v2))
    want = ref.nt_xent_terms(a, b, temperature)
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    w = torch.linspace(0.2, 1.5, 12, dtype=dtype)
    g_got = torch.autograd.grad((got * w).sum(), (v1, v2))
    g_want = torch.autograd.grad((want * w.double()).sum(), (a, b))
    for x, y in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(x.double(), y, rtol=tol, atol=tol)


def test_mean_is_over_2n_views():
    v1, v2 = randn(5, 3), randn(5, 3, seed=1)
    torch.testing.assert_close(nce.nt_xent(v1, v2), nce.nt_xent(v1, v2, reduction="none").mean())
    assert nce.nt_xent(v1, v2, reduction="none").shape == (10,)


def test_gradcheck_with_learned_temperature():
    v1, v2 = randn(4, 3), randn(4, 3, seed=1)
    t = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, t: nce.nt_xent(a, b, temperature=t, reduction="none", chunk_size=3),
        (v1, v2, t),
    )


@pytest.mark.parametrize("chunk", [1, 2, 7, 13, 14, 15, 26, 27])
def test_tiles_equal_one_tile(chunk):
    v1, v2 = randn(13, 4, dtype=torch.float32), randn(13, 4, dtype=torch.float32, seed=1)
    t = torch.tensor(0.3, requires_grad=True)
    w = torch.rand(26, generator=torch.Generator().manual_seed(2))
    whole = nce.nt_xent(v1, v2, temperature=t, reduction="none", chunk_size=26)
    tiled = nce.nt_xent(v1, v2, temperature=t, reduction="none", chunk_size=chunk)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-6)
    g_whole = torch.autograd.grad((whole * w).sum(), (v1, v2, t))
    g_tiled = torch.autograd.grad((tiled * w).sum(), (v1, v2, t))
    for a, b in zip(g_tiled, g_whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_equals_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    v1, v2 = randn(8, 5), randn(8, 5, seed=1)
    labels = torch.arange(8).repeat(2)
    want = losses.NTXentLoss(temperature=0.2)(torch.cat([v1, v2]), labels)
    torch.testing.assert_close(nce.nt_xent(v1, v2, temperature=0.2), want)


def test_equals_cross_entropy_over_2n_views_in_value_and_gradient():
    # NT-Xent is InfoNCE whose candidates are the 2N - 1 other views; a zero row and a learned
    # temperature included.
    v1, v2 = randn(5, 3), randn(5, 3, seed=1)
    v1 = v1.detach().clone()
    v1[2] = 0.0
    v1.requires_grad_()
    t = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    z = torch.nn.functional.normalize(torch.cat([v1, v2]), dim=1)
    logits = (z @ z.T / t).fill_diagonal_(float("-inf"))
    want = torch.nn.functional.cross_entropy(logits, torch.arange(10).roll(5))
    got = nce.nt_xent(v1, v2, temperature=t)
    assert_close_grads(got, want, (v1, v2, t), (v1, v2, t), rtol=1e-10, atol=1e-10)


def test_invariances():
    v1, v2 = randn(6, 4), randn(6, 4, seed=1)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    base = nce.nt_xent(v1, v2)
    torch.testing.assert_close(nce.nt_xent(v1[perm], v2[perm]), base)
    torch.testing.assert_close(nce.nt_xent(v2, v1), base)
    torch.testing.assert_close(nce.nt_xent(5 * v1, 0.1 * v2), base)
    assert not torch.isclose(nce.nt_xent(v1[perm], v2), base)
    same = torch.ones(6, 4, dtype=torch.float64)
    torch.testing.assert_close(
        nce.nt_xent(same, same), torch.tensor(math.log(11), dtype=torch.float64)
    )


def test_zero_vectors_and_half_precision():
    v1, v2 = randn(4, 3, dtype=torch.float32), randn(4, 3, dtype=torch.float32, seed=1)
    v1 = v1.detach().clone()
    v1[1] = 0
    v1.requires_grad_()
    loss = nce.nt_xent(v1, v2, temperature=0.01)
    assert torch.isfinite(loss) and torch.isfinite(torch.autograd.grad(loss, v1)[0]).all()
    for dtype in (torch.float16, torch.bfloat16):
        h1, h2 = v2.detach().to(dtype).requires_grad_(), (v2.detach() * 100).to(dtype)
        loss = nce.nt_xent(h1, h2, temperature=0.01)
        assert loss.dtype == dtype and torch.isfinite(loss)
        assert torch.isfinite(torch.autograd.grad(loss, h1)[0]).all()
