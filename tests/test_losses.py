import math

import pytest
import torch

import nce
from nce.losses import (
    BinaryNCE,
    CLIPLoss,
    DebiasedInfoNCE,
    InfoNCE,
    NTXent,
    SoftInfoNCE,
    SupervisedInfoNCE,
    Temperature,
)

from conftest import randn


def test_modules_call_their_functions():
    q, k = randn(6, 4), randn(6, 4, seed=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    targets = torch.softmax(randn(6, 6, seed=2, requires_grad=False), 1)
    cases = [
        (InfoNCE(0.2)(q, k), nce.info_nce(q, k, temperature=0.2)),
        (InfoNCE(0.2, symmetric=True)(q, k), nce.info_nce(q, k, temperature=0.2, symmetric=True)),
        (NTXent(0.3)(q, k), nce.nt_xent(q, k, temperature=0.3)),
        (SupervisedInfoNCE(0.1)(q, labels), nce.supervised_info_nce(q, labels, temperature=0.1)),
        (
            DebiasedInfoNCE(0.1, beta=1.0)(q, k),
            nce.debiased_info_nce(q, k, tau_plus=0.1, beta=1.0),
        ),
        (SoftInfoNCE(0.1)(q, k, targets), nce.soft_info_nce(q, k, targets, temperature=0.1)),
    ]
    for got, want in cases:
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-6, atol=1e-6)


def test_learnable_temperature_is_a_clamped_log_scale():
    loss = CLIPLoss()
    (param,) = list(loss.parameters())
    assert math.isclose(param.item(), math.log(1 / 0.07), rel_tol=1e-6)
    q, k = randn(8, 4, dtype=torch.float32), randn(8, 4, dtype=torch.float32, seed=1)
    loss(q, k).backward()
    assert param.grad is not None and param.grad != 0
    with torch.no_grad():
        param.fill_(math.log(1000.0))  # beyond the maximum scale of 100
    assert math.isclose(loss.temperature().item(), 0.01, rel_tol=1e-6)
    param.grad = None
    loss(q, k).backward()
    assert param.grad == 0  # clamped: no gradient pushes it further


def test_fixed_temperature_has_no_parameters():
    assert list(InfoNCE(0.1).parameters()) == []
    assert "temperature=0.1" in repr(InfoNCE(0.1))


def test_temperature_gradient_matches_finite_difference():
    q, k = randn(6, 4), randn(6, 4, seed=1)
    module = InfoNCE(0.3, learn_temperature=True).double()
    loss = module(q, k)
    (grad,) = torch.autograd.grad(loss, module.temperature.log_scale)
    eps = 1e-6
    with torch.no_grad():
        module.temperature.log_scale += eps
        up = module(q, k)
        module.temperature.log_scale -= 2 * eps
        down = module(q, k)
    assert abs(float(grad) - float(up - down) / (2 * eps)) < 1e-6


def test_binary_nce_module_learns_log_z():
    module = BinaryNCE()
    assert [n for n, _ in module.named_parameters()] == ["log_z"]
    x, y = randn(5, requires_grad=False), randn(5, 3, seed=1, requires_grad=False)
    got = module(x, x, y, y)
    torch.testing.assert_close(got, nce.binary_nce(x, x, y, y))
    fixed = BinaryNCE(log_z=0.5)
    assert list(fixed.parameters()) == []
    torch.testing.assert_close(fixed(x, x, y, y), nce.binary_nce(x - 0.5, x, y - 0.5, y))


def test_constructor_validation():
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        InfoNCE(0.0)
    with pytest.raises(ValueError, match="below 1 / max_scale"):
        Temperature(0.001, max_scale=100)
    with pytest.raises(ValueError, match="reduction must be one of"):
        NTXent(reduction="avg")
    with pytest.raises(ValueError, match="tau_plus"):
        DebiasedInfoNCE(tau_plus=1.0)
    with pytest.raises(ValueError, match="log_z must be 'learned' or a finite number"):
        BinaryNCE(log_z=float("nan"))
    with pytest.raises(ValueError, match="noise_ratio"):
        BinaryNCE(noise_ratio=-1)


def test_binary_nce_module_subtracts_log_z_in_float32():
    g = torch.Generator().manual_seed(0)
    data = 600 + torch.randn(8, generator=g)
    noise = 600 + torch.randn(8, 4, generator=g)
    q_data, q_noise = torch.randn(8, generator=g), torch.randn(8, 4, generator=g)
    module = nce.losses.BinaryNCE(log_z=0.1)
    half = module(data.half(), q_data.half(), noise.half(), q_noise.half())
    full = module(data.half().float(), q_data.half().float(), noise.half().float(),
                  q_noise.half().float())  # fmt: skip
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, rtol=1e-3, atol=0)
