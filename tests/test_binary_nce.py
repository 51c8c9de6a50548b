import math

import pytest
import torch

import nce

import reference as ref
from conftest import randn


def _inputs(n=6, k=4, shared=False, dtype=torch.float64):
    shape = (n * k,) if shared else (n, k)
    return (
        randn(n, dtype=dtype, seed=1),
        randn(n, dtype=dtype, seed=2),
        randn(*shape, dtype=dtype, seed=3),
        randn(*shape, dtype=dtype, seed=4),
    )


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_gutmann_hyvarinen(shared, dtype, tol):
    args = _inputs(shared=shared, dtype=dtype)
    got = nce.binary_nce(*args)
    args64 = [a.detach().double().requires_grad_() for a in args]
    want = ref.binary_nce(*args64)
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    for a, b in zip(torch.autograd.grad(got, args), torch.autograd.grad(want, args64), strict=True):
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol)


def test_explicit_noise_ratio_and_reductions():
    args = _inputs()
    torch.testing.assert_close(
        nce.binary_nce(*args, noise_ratio=2.5), ref.binary_nce(*args, nu=2.5)
    )
    per = nce.binary_nce(*args, reduction="none")
    assert per.shape == (6,)
    torch.testing.assert_close(per.mean(), nce.binary_nce(*args))
    torch.testing.assert_close(per.sum(), nce.binary_nce(*args, reduction="sum"))
    shared = _inputs(shared=True)
    torch.testing.assert_close(
        nce.binary_nce(*shared, reduction="none").mean(), nce.binary_nce(*shared)
    )


def test_gradcheck():
    assert torch.autograd.gradcheck(
        lambda *a: nce.binary_nce(*a, reduction="none"), _inputs(n=3, k=2)
    )
    assert torch.autograd.gradcheck(lambda *a: nce.binary_nce(*a), _inputs(n=3, k=2, shared=True))


def test_model_equal_to_noise_gives_known_value():
    # G = -log nu for every sample: loss = log(1 + nu) + nu log(1 + 1/nu).
    x, y = torch.randn(50, dtype=torch.float64), torch.randn(50, 10, dtype=torch.float64)
    lp = torch.distributions.Normal(0.0, 1.0).log_prob
    got = nce.binary_nce(lp(x), lp(x), lp(y), lp(y))
    want = math.log(11) + 10 * math.log(1.1)
    assert abs(float(got) - want) < 1e-12


def test_stable_for_extreme_log_densities():
    lm_x = torch.tensor([1e4, -1e4], dtype=torch.float32, requires_grad=True)
    ln_x = torch.zeros(2)
    lm_y = torch.tensor([[-1e4], [1e4]], requires_grad=True)
    loss = nce.binary_nce(lm_x, ln_x, lm_y, torch.zeros(2, 1))
    assert torch.isfinite(loss)
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, (lm_x, lm_y)))


def test_errors():
    a, b, c, d = _inputs()
    with pytest.raises(ValueError, match="batch mismatch"):
        nce.binary_nce(a, b, c[:3], d[:3])
    with pytest.raises(
        ValueError, match=r"log_model_noise has shape \(6, 4\) but log_noise_noise has \(6, 3\)"
    ):
        nce.binary_nce(a, b, c, d[:, :3])
    with pytest.raises(ValueError, match="noise_ratio"):
        nce.binary_nce(a, b, c, d, noise_ratio=0)
    with pytest.raises(ValueError, match="log_model_data must be 1-D"):
        nce.binary_nce(a[:, None], b, c, d)
