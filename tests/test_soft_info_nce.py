import pytest
import torch

import nce

import reference as ref
from conftest import randn


def _targets(n, m, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, m, generator=g, dtype=dtype) * 2, 1)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_reference(normalize, dtype, tol):
    q, k = randn(5, 4, dtype=dtype), randn(7, 4, dtype=dtype, seed=1)
    t = _targets(5, 7, dtype=dtype)
    got = nce.soft_info_nce(q, k, t, temperature=0.3, normalize=normalize)
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    want = ref.soft_terms(q64, k64, t.double(), 0.3, normalize).mean()
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    for a, b in zip(
        torch.autograd.grad(got, (q, k)), torch.autograd.grad(want, (q64, k64)), strict=True
    ):
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol)


def test_one_hot_targets_are_info_nce():
    q, k = randn(6, 4), randn(6, 4, seed=1)
    eye = torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(nce.soft_info_nce(q, k, eye), nce.info_nce(q, k))


def test_gradcheck():
    q, k = randn(4, 3), randn(4, 3, seed=1)
    t = _targets(4, 4)
    assert torch.autograd.gradcheck(
        lambda a, b: nce.soft_info_nce(a, b, t, reduction="none"), (q, k)
    )


def test_bad_targets():
    q, k = randn(4, 3), randn(4, 3, seed=1)
    t = _targets(4, 4)
    with pytest.raises(ValueError, match="rows must sum to 1"):
        nce.soft_info_nce(q, k, t * 1.1)
    with pytest.raises(ValueError, match=r"targets has \d+ negative entries$"):
        nce.soft_info_nce(q, k, t - t.mean())
    one = t.clone()
    one[0, 0] = -0.1
    with pytest.raises(ValueError, match="targets has 1 negative entry$"):
        nce.soft_info_nce(q, k, one)
    with pytest.raises(ValueError, match=r"targets must have shape \(4, 4\)"):
        nce.soft_info_nce(q, k, t[:, :3])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_targets_that_round_off_one_are_accepted(dtype):
    q, k = torch.randn(4, 8, dtype=dtype), torch.randn(3, 8, dtype=dtype)
    targets = torch.full((4, 3), 1 / 3, dtype=dtype)
    loss = nce.soft_info_nce(q, k, targets)
    assert loss.dtype == dtype and torch.isfinite(loss)
