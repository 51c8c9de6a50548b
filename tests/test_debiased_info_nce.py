import pytest
import torch

import nce

import reference as ref
from conftest import randn


@pytest.mark.parametrize(
    "tau_plus,beta", [(0.0, 0.0), (0.1, 0.0), (0.1, 1.0), (0.3, 2.0), (0.0, 6.0)]
)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_reference(tau_plus, beta, dtype, tol):
    q, k = randn(9, 4, dtype=dtype), randn(9, 4, dtype=dtype, seed=1)
    got = nce.debiased_info_nce(q, k, tau_plus=tau_plus, beta=beta, temperature=0.5)
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    want = ref.debiased_terms(q64, k64, tau_plus, beta, 0.5).mean()
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    g_got = torch.autograd.grad(got, (q, k))
    g_want = torch.autograd.grad(want, (q64, k64))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol)


def test_floor_is_reached_and_matches_reference():
    # Aligned positives and a large tau_plus push the debiased mass below the floor M e^{-1/t}.
    k = randn(6, 3)
    q = (k.detach() + 0.01 * randn(6, 3, seed=5, requires_grad=False)).requires_grad_()
    got = nce.debiased_info_nce(q, k, tau_plus=0.9, temperature=0.5, reduction="none")
    want = ref.debiased_terms(q, k, 0.9, 0.0, 0.5)
    torch.testing.assert_close(got, want)
    g = torch.autograd.grad(got.sum(), (q, k))
    assert all(torch.isfinite(x).all() for x in g)


def test_zero_tau_plus_and_beta_is_info_nce():
    q, k = randn(7, 5), randn(7, 5, seed=1)
    for t in (0.1, 0.5, 1.0):
        torch.testing.assert_close(
            nce.debiased_info_nce(q, k, tau_plus=0.0, temperature=t),
            nce.info_nce(q, k, temperature=t),
        )


def test_gradcheck():
    q, k = randn(5, 3), randn(5, 3, seed=1)
    assert torch.autograd.gradcheck(
        lambda a, b: nce.debiased_info_nce(a, b, tau_plus=0.1, beta=1.0, reduction="none"), (q, k)
    )


def test_errors():
    q, k = randn(5, 3), randn(5, 3, seed=1)
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tau_plus"):
            nce.debiased_info_nce(q, k, tau_plus=bad)
    with pytest.raises(ValueError, match="beta"):
        nce.debiased_info_nce(q, k, tau_plus=0.1, beta=-1.0)
    with pytest.raises(ValueError, match="at least 2"):
        nce.debiased_info_nce(q[:1], k[:1], tau_plus=0.1)


@pytest.mark.parametrize("beta", [0.0, 1.5])
@pytest.mark.parametrize("chunk", [1, 8, 9, 10, 5])
def test_chunked_equals_dense(beta, chunk):
    q, k = randn(9, 4, dtype=torch.float32), randn(9, 4, dtype=torch.float32, seed=1)
    t = torch.tensor(0.4, requires_grad=True)
    w = torch.rand(9, generator=torch.Generator().manual_seed(0))
    kw = dict(tau_plus=0.1, beta=beta, temperature=t, reduction="none")
    dense = nce.debiased_info_nce(q, k, **kw)
    tiled = nce.debiased_info_nce(q, k, chunk_size=chunk, **kw)
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-6)
    g_dense = torch.autograd.grad((dense * w).sum(), (q, k, t))
    g_tiled = torch.autograd.grad((tiled * w).sum(), (q, k, t))
    for a, b in zip(g_tiled, g_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gradcheck_chunked():
    q, k = randn(5, 3), randn(5, 3, seed=1)
    assert torch.autograd.gradcheck(
        lambda a, b: nce.debiased_info_nce(
            a, b, tau_plus=0.1, beta=1.0, reduction="none", chunk_size=2
        ),
        (q, k),
    )
