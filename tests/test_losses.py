import inspect
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


def _parameters(fn, kinds):
    return {n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds} - {"self"}


POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
ANY = (*POSITIONAL, inspect.Parameter.KEYWORD_ONLY)
# Options a module holds beyond its function's: how its Temperature (or log Z) is kept.
TEMPERATURE_MODULE = {"learn_temperature", "max_scale"}
MODULES = [
    # module, its function, options of the module's own, options the module leaves out
    (InfoNCE, nce.info_nce, TEMPERATURE_MODULE, set()),
    (
        CLIPLoss,
        nce.info_nce,
        TEMPERATURE_MODULE,
        {"symmetric", "negatives", "in_batch", "log_q", "negative_ids"},
    ),
    (NTXent, nce.nt_xent, TEMPERATURE_MODULE, set()),
    (SupervisedInfoNCE, nce.supervised_info_nce, TEMPERATURE_MODULE, set()),
    (DebiasedInfoNCE, nce.debiased_info_nce, TEMPERATURE_MODULE, set()),
    (SoftInfoNCE, nce.soft_info_nce, TEMPERATURE_MODULE, set()),
    (BinaryNCE, nce.binary_nce, {"log_z"}, set()),
]


@pytest.mark.parametrize(
    "module, function, own, left_out", MODULES, ids=lambda x: getattr(x, "__name__", "")
)
def test_every_module_takes_exactly_its_functions_options(module, function, own, left_out):
    for fn in (module.__init__, module.forward):
        kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{fn.__qualname__} takes **kwargs"
    constructor = _parameters(module.__init__, ANY)
    forward_options = _parameters(module.forward, (inspect.Parameter.KEYWORD_ONLY,))
    options = _parameters(function, (inspect.Parameter.KEYWORD_ONLY,)) - left_out
    assert not constructor & forward_options
    assert constructor | forward_options == options | own
    # the function's positional tensors are forward's positional arguments
    tensors = _parameters(function, POSITIONAL) - left_out
    assert len(_parameters(module.forward, POSITIONAL)) == len(tensors)


def test_module_options_reach_the_function():
    q, k = randn(6, 4), randn(6, 4, seed=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    # chunk_size and gather used to be dropped by these modules
    torch.testing.assert_close(
        SupervisedInfoNCE(chunk_size=2)(q, labels), nce.supervised_info_nce(q, labels)
    )
    torch.testing.assert_close(
        DebiasedInfoNCE(0.1, chunk_size=2)(q, k), nce.debiased_info_nce(q, k, tau_plus=0.1)
    )
    torch.testing.assert_close(NTXent(gather=True)(q, k), nce.nt_xent(q, k))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        SupervisedInfoNCE(chunk_size=0)(q, labels)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        DebiasedInfoNCE(0.1, chunk_size=0)(q, k)
    ids = torch.tensor([0, 1, 0, 2, 3, 4])
    want = nce.info_nce(
        q, k, remove_accidental_hits=True, key_ids=ids, temperature=0.07, symmetric=True
    )
    torch.testing.assert_close(CLIPLoss(remove_accidental_hits=True)(q, k, key_ids=ids), want)
    with pytest.raises(TypeError):
        InfoNCE()(q, k, gather=True)  # options belong to the constructor


TILED_LOSSES = {
    "info_nce": lambda q, k, **kw: nce.info_nce(q, k, **kw),
    "nt_xent": lambda q, k, **kw: nce.nt_xent(q, k, **kw),
    "supervised_info_nce": lambda q, k, **kw: nce.supervised_info_nce(
        q, torch.arange(q.shape[0]) // 2, **kw
    ),
    "debiased_info_nce": lambda q, k, **kw: nce.debiased_info_nce(q, k, tau_plus=0.1, **kw),
}


def _chunk_size_doc(function):
    doc = inspect.getdoc(function)
    start = doc.index("chunk_size:")
    end = "only memory and speed change."
    return doc[start : doc.index(end, start) + len(end)]


@pytest.mark.parametrize("name", TILED_LOSSES)
def test_chunk_size_has_one_meaning_in_every_loss(name):
    assert _chunk_size_doc(getattr(nce, name)) == _chunk_size_doc(nce.info_nce)
    q, k = randn(9, 4), randn(9, 4, seed=1)
    loss = TILED_LOSSES[name]
    default = loss(q, k)
    for chunk in (1, 4, 9, 100):
        torch.testing.assert_close(loss(q, k, chunk_size=chunk), default)
    # None is the tiled, memory-efficient path too (its gradient is first-order only)
    with pytest.raises(RuntimeError, match="first-order gradient only"):
        torch.autograd.grad(loss(q, k), q, create_graph=True)
