import math

import pytest
import torch
import torch.nn.functional as F

import nce
from nce.losses import SigLIPLoss

import reference as ref
from conftest import randn

TOL64 = dict(rtol=1e-10, atol=1e-10)
TOL32 = dict(rtol=1e-5, atol=1e-5)
LABELS = torch.tensor([0, 2, 0, 1, 2, 2, 3])


def _pair(n=7, d=5, dtype=torch.float64, seed=0):
    return randn(n, d, dtype=dtype, seed=seed), randn(n, d, dtype=dtype, seed=seed + 1)


def _learned(temperature=0.3, bias=-2.0, dtype=torch.float64):
    return (
        torch.tensor(temperature, dtype=dtype, requires_grad=True),
        torch.tensor(bias, dtype=dtype, requires_grad=True),
    )


def _reference(q, k, t, b, labels, normalize, reduction):
    rows = ref.pairwise_terms(q, k, t, b, labels, normalize)
    return {"mean": rows.sum() / q.shape[0], "sum": rows.sum(), "none": rows}[reduction]


def _weighted(loss):
    """A scalar whose gradient weights each example differently (for reduction="none")."""
    if loss.dim() == 0:
        return loss
    return (loss * torch.linspace(0.5, 1.5, loss.shape[0], dtype=loss.dtype)).sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("labels", [None, LABELS], ids=["diagonal", "labels"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_the_papers_equation(normalize, labels, reduction):
    q, k = _pair()
    t, b = _learned()
    got = nce.pairwise_nce(
        q, k, temperature=t, bias=b, labels=labels, normalize=normalize, reduction=reduction
    )
    want = _reference(q, k, t, b, labels, normalize, reduction)
    torch.testing.assert_close(got, want, **TOL64)
    inputs = (q, k, t, b)
    g_got = torch.autograd.grad(_weighted(got), inputs)
    g_want = torch.autograd.grad(_weighted(want), inputs)
    for a, w in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, w, **TOL64)


def test_float32_matches_the_float64_reference():
    q, k = _pair(dtype=torch.float32)
    got = nce.pairwise_nce(q, k, labels=LABELS, reduction="none")
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    want = ref.pairwise_terms(q64, k64, 0.1, -10.0, LABELS)
    torch.testing.assert_close(got.double(), want, **TOL32)
    g_got = torch.autograd.grad(got.sum(), (q, k))
    g_want = torch.autograd.grad(want.sum(), (q64, k64))
    for a, w in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a.double(), w, **TOL32)


@pytest.mark.parametrize("labels", [None, LABELS], ids=["diagonal", "labels"])
@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_through_temperature_and_bias(normalize, labels):
    q, k = _pair(d=3)
    t, b = _learned(0.5, -1.0)

    def loss(q, k, t, b):
        return nce.pairwise_nce(
            q, k, temperature=t, bias=b, labels=labels, normalize=normalize, reduction="none"
        )

    assert torch.autograd.gradcheck(loss, (q, k, t, b))


@pytest.mark.parametrize("labels", [None, LABELS], ids=["diagonal", "labels"])
@pytest.mark.parametrize("chunk", [1, 3, 7])  # 3: an uneven last tile of one column
def test_tiles_equal_one_tile(chunk, labels):
    q, k = _pair(dtype=torch.float32)
    t, b = _learned(0.2, -3.0, torch.float32)
    kw = dict(temperature=t, bias=b, labels=labels, reduction="none")
    whole = nce.pairwise_nce(q, k, chunk_size=None, **kw)
    tiled = nce.pairwise_nce(q, k, chunk_size=chunk, **kw)
    torch.testing.assert_close(tiled, whole, rtol=1e-6, atol=1e-6)
    for total in (torch.sum, _weighted):  # a uniform upstream gradient, and a per-row one
        g_whole = torch.autograd.grad(total(whole), (q, k, t, b), retain_graph=True)
        g_tiled = torch.autograd.grad(total(tiled), (q, k, t, b), retain_graph=True)
        for a, w in zip(g_tiled, g_whole, strict=True):
            torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-6)


def test_mean_divides_the_sum_over_pairs_by_n():
    # Equal rows: every score is 1/tau + b; one positive and N - 1 negatives per row.
    n, t, b = 6, 0.5, -1.0
    q = torch.ones(n, 3, dtype=torch.float64)
    s = torch.tensor(1 / t + b, dtype=torch.float64)
    row = F.softplus(-s) + (n - 1) * F.softplus(s)
    torch.testing.assert_close(nce.pairwise_nce(q, q, temperature=t, bias=b), row)
    total = nce.pairwise_nce(q, q, temperature=t, bias=b, reduction="sum")
    torch.testing.assert_close(total, n * row)


def test_joint_permutation_invariant_one_sided_not():
    q, k = _pair(n=9)
    labels = torch.tensor([0, 1, 1, 2, 0, 3, 3, 3, 4])
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    for given in (None, labels):
        base = nce.pairwise_nce(q, k, bias=-2.0, labels=given)
        permuted = None if given is None else given[perm]
        torch.testing.assert_close(
            nce.pairwise_nce(q[perm], k[perm], bias=-2.0, labels=permuted), base
        )
        assert not torch.isclose(nce.pairwise_nce(q[perm], k, bias=-2.0, labels=given), base)


def test_distinct_labels_are_the_diagonal():
    q, k = _pair()
    labels = torch.tensor([5, 3, 9, 0, 1, 7, 2])
    torch.testing.assert_close(
        nce.pairwise_nce(q, k, labels=labels, reduction="none"),
        nce.pairwise_nce(q, k, reduction="none"),
    )


def test_scale_invariant_when_normalizing():
    q, k = _pair()
    torch.testing.assert_close(nce.pairwise_nce(3.0 * q, 0.01 * k), nce.pairwise_nce(q, k))


def test_huge_scores_stay_finite_in_log_space():
    # Scores of ±9000, each pair on the wrong side: exp would overflow; each pair costs
    # softplus(-z s) = 9000 exactly.
    q = torch.tensor([[30.0], [-30.0]], requires_grad=True)
    loss = nce.pairwise_nce(q, -q, normalize=False, bias=0.0, reduction="none")
    torch.testing.assert_close(loss.detach(), torch.tensor([18000.0, 18000.0]))
    (g,) = torch.autograd.grad(loss.sum(), q)
    assert torch.isfinite(g).all()


def test_zero_vectors_give_finite_loss_and_gradient():
    q, k = _pair(n=4)
    q = q.detach().clone()
    q[0] = 0
    q.requires_grad_()
    loss = nce.pairwise_nce(q, k)
    (g,) = torch.autograd.grad(loss, q)
    assert torch.isfinite(loss) and torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computed_in_float32(dtype):
    q, k = (x.detach().to(dtype).requires_grad_() for x in _pair(n=16, d=8))
    loss = nce.pairwise_nce(q, k, labels=torch.arange(16) // 2)
    assert loss.dtype == dtype and torch.isfinite(loss)
    gq, gk = torch.autograd.grad(loss, (q, k))
    assert gq.dtype == dtype and torch.isfinite(gq).all() and torch.isfinite(gk).all()
    want = nce.pairwise_nce(q.float(), k.float(), labels=torch.arange(16) // 2)
    torch.testing.assert_close(loss.float(), want, rtol=1e-2, atol=1e-2)


def test_no_grad_path_matches():
    q, k = _pair(dtype=torch.float32)
    with torch.no_grad():
        a = nce.pairwise_nce(q, k, reduction="none")
    torch.testing.assert_close(a, nce.pairwise_nce(q, k, reduction="none").detach())


def test_second_derivatives_raise_instead_of_vanishing():
    q, k = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4)
    with pytest.raises(RuntimeError, match="first-order gradient only"):
        torch.autograd.grad(nce.pairwise_nce(q, k), q, create_graph=True)


def test_in_place_change_after_the_loss_is_refused():
    q, k = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4)
    loss = nce.pairwise_nce(q, k, normalize=False)
    k.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


Q, K = torch.randn(4, 3), torch.randn(4, 3)
NAN_Q = Q.index_fill(0, torch.tensor([1]), math.nan)
BAD_INPUTS = {
    "dimension": ((Q, K[:, :2]), {}, ValueError, r"query has shape \(4, 3\) but key has \(4, 2\)"),
    "batch": ((Q, K[:3]), {}, ValueError, r"query has shape \(4, 3\) but key has \(3, 3\)"),
    "ndim": ((Q[:, 0], K[:, 0]), {}, ValueError, r"query must be 2-D, got shape \(4,\)"),
    "integer": ((Q.long(), K.long()), {}, TypeError, "query must have a floating dtype"),
    "dtype": ((Q, K.double()), {}, TypeError, "dtype mismatch: query is torch.float32"),
    "nan": ((NAN_Q, K), {}, ValueError, "query contains 3 NaN or Inf"),
    "temperature": ((Q, K), dict(temperature=0.0), ValueError, "temperature must be a finite"),
    "temperature_tensor": ((Q, K), dict(temperature=torch.tensor(-1.0)), ValueError, "> 0"),
    "bias_inf": ((Q, K), dict(bias=math.inf), ValueError, "bias must be a finite number, got inf"),
    "bias_nan": ((Q, K), dict(bias=torch.tensor(math.nan)), ValueError, "finite number, got nan"),
    "bias_shape": ((Q, K), dict(bias=torch.zeros(2)), ValueError, r"scalar, got shape \(2,\)"),
    "bias_type": ((Q, K), dict(bias="low"), TypeError, "bias must be a number or a scalar tensor"),
    "labels_shape": (
        (Q, K),
        dict(labels=torch.zeros(3, dtype=torch.long)),
        ValueError,
        r"labels must have shape \(4,\), got \(3,\)",
    ),
    "labels_dtype": ((Q, K), dict(labels=torch.zeros(4)), TypeError, "labels must have an integer"),
    "labels_type": ((Q, K), dict(labels=[0, 1, 2, 3]), TypeError, "labels must be a torch.Tensor"),
    "chunk_size": ((Q, K), dict(chunk_size=0), ValueError, "chunk_size must be >= 1, got 0"),
    "reduction": ((Q, K), dict(reduction="avg"), ValueError, "reduction must be one of"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_are_refused_with_clear_messages(case):
    args, kwargs, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        nce.pairwise_nce(*args, **kwargs)


def test_siglip_loss_learns_scale_and_bias_from_the_papers_start():
    module = SigLIPLoss()
    params = dict(module.named_parameters())
    assert sorted(params) == ["bias", "temperature.log_scale"]
    assert math.isclose(params["temperature.log_scale"].item(), math.log(10.0), rel_tol=1e-6)
    assert params["bias"].item() == -10.0
    q, k = randn(8, 4, dtype=torch.float32), randn(8, 4, dtype=torch.float32, seed=1)
    loss = module(q, k)
    torch.testing.assert_close(loss, nce.pairwise_nce(q, k, temperature=0.1, bias=-10.0))
    loss.backward()
    assert params["bias"].grad < 0  # at -10 nearly every pair is called negative: raise b
    assert params["temperature.log_scale"].grad != 0


def test_siglip_loss_passes_its_options_and_clamps_the_scale():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    q, k = randn(6, 4, dtype=torch.float32), randn(6, 4, dtype=torch.float32, seed=1)
    module = SigLIPLoss(0.2, -3.0, normalize=False, reduction="none", chunk_size=2)
    want = nce.pairwise_nce(q, k, temperature=0.2, bias=-3.0, labels=labels, normalize=False,
                            reduction="none")  # fmt: skip
    torch.testing.assert_close(module(q, k, labels), want)
    with torch.no_grad():
        module.temperature.log_scale.fill_(math.log(1000.0))  # beyond the maximum scale of 100
    assert math.isclose(module.temperature().item(), 0.01, rel_tol=1e-6)
    with pytest.raises(ValueError, match="bias must be a finite number"):
        SigLIPLoss(bias=math.nan)
    with pytest.raises(ValueError, match="reduction must be one of"):
        SigLIPLoss(reduction="avg")
