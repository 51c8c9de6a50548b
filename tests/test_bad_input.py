"""Every public loss refuses bad input with a message naming the argument."""

import math

import pytest
import torch

import nce

Q, K = torch.randn(4, 3), torch.randn(4, 3)


def _all_in_batch_losses():
    return {
        "info_nce": lambda q, k, **kw: nce.info_nce(q, k, **kw),
        "symmetric": lambda q, k, **kw: nce.info_nce(q, k, symmetric=True, **kw),
        "nt_xent": lambda q, k, **kw: nce.nt_xent(q, k, **kw),
        "debiased": lambda q, k, **kw: nce.debiased_info_nce(q, k, tau_plus=0.1, **kw),
        "soft": lambda q, k, **kw: nce.soft_info_nce(q, k, torch.eye(q.shape[0], k.shape[0]), **kw),
    }


LOSSES = _all_in_batch_losses()


@pytest.mark.parametrize("name", LOSSES)
def test_wrong_ndim(name):
    with pytest.raises(ValueError, match=r"must be 2-D, got shape \(4,\)"):
        LOSSES[name](Q[:, 0], K[:, 0])


@pytest.mark.parametrize("name", LOSSES)
def test_dimension_mismatch_quotes_both_shapes(name):
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        LOSSES[name](Q, K[:, :2])


@pytest.mark.parametrize("name", ["info_nce", "symmetric", "nt_xent", "debiased"])
def test_batch_mismatch(name):
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 3\)"):
        LOSSES[name](Q, K[:3])


@pytest.mark.parametrize("name", LOSSES)
def test_integer_embeddings(name):
    with pytest.raises(TypeError, match="floating dtype"):
        LOSSES[name](Q.long(), K.long())


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_inf_inputs(name, bad):
    q = Q.clone()
    q[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        LOSSES[name](q, K)


@pytest.mark.parametrize("name", LOSSES)
def test_empty_batch(name):
    with pytest.raises(ValueError, match="empty"):
        LOSSES[name](Q[:0], K[:0])


@pytest.mark.parametrize("name", LOSSES)
def test_dtype_mismatch(name):
    with pytest.raises(TypeError, match="dtype mismatch"):
        LOSSES[name](Q, K.double())


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(name, t):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        LOSSES[name](Q, K, temperature=t)
    with pytest.raises(ValueError, match="temperature"):
        LOSSES[name](Q, K, temperature=torch.tensor(t))


@pytest.mark.parametrize("name", LOSSES)
def test_bad_reduction(name):
    with pytest.raises(ValueError, match="reduction must be one of"):
        LOSSES[name](Q, K, reduction="avg")


@pytest.mark.parametrize("name", ["info_nce", "symmetric", "debiased"])
def test_in_batch_needs_two(name):
    with pytest.raises(ValueError, match="at least 2"):
        LOSSES[name](Q[:1], K[:1])


def test_non_tensor_input():
    with pytest.raises(TypeError, match="query must be a torch.Tensor, got list"):
        nce.info_nce([[1.0]], K)


def test_info_nce_negatives_errors():
    with pytest.raises(
        ValueError, match=r"dimension mismatch: query has shape \(4, 3\) but negatives has \(5, 2\)"
    ):
        nce.info_nce(Q, K, torch.randn(5, 2))
    with pytest.raises(
        ValueError, match=r"batch mismatch: query has shape \(4, 3\) but negatives has \(2, 5, 3\)"
    ):
        nce.info_nce(Q, K, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="symmetric=True needs in-batch negatives"):
        nce.info_nce(Q, K, torch.randn(5, 3), symmetric=True)
    with pytest.raises(ValueError, match=r"log_q must have shape \(5,\)"):
        nce.info_nce(Q, K, torch.randn(5, 3), log_q=torch.zeros(4))
    with pytest.raises(ValueError, match="needs key_ids and negative_ids"):
        nce.info_nce(Q, K, torch.randn(5, 3), remove_accidental_hits=True)
    with pytest.raises(ValueError, match=r"negative_ids must have shape \(5,\)"):
        nce.info_nce(
            Q,
            K,
            torch.randn(5, 3),
            remove_accidental_hits=True,
            key_ids=torch.arange(4),
            negative_ids=torch.arange(3),
        )
    with pytest.raises(TypeError, match="key_ids must have an integer dtype"):
        nce.info_nce(Q, K, remove_accidental_hits=True, key_ids=torch.zeros(4))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        nce.info_nce(Q, K, chunk_size=0)


@pytest.mark.skipif(
    not torch.backends.mps.is_available() and not torch.cuda.is_available(),
    reason="needs a second device",
)
def test_device_mismatch():
    other = "cuda" if torch.cuda.is_available() else "mps"
    with pytest.raises(ValueError, match="device mismatch"):
        nce.info_nce(Q, K.to(other))


def test_device_mismatch_message_on_meta():
    with pytest.raises(TypeError, match=r"key is a meta tensor \(a shape without values"):
        nce.info_nce(Q, torch.empty(4, 3, device="meta"))


def test_zero_norm_embeddings_finite_everywhere():
    q = torch.zeros(4, 3, requires_grad=True)
    for name, loss_fn in LOSSES.items():
        loss = loss_fn(q, K)
        (g,) = torch.autograd.grad(loss, q)
        assert torch.isfinite(loss), name
        assert torch.isfinite(g).all(), name
    assert math.isfinite(float(nce.supervised_info_nce(q, torch.tensor([0, 0, 1, 1])).detach()))


def test_chunk_size_must_be_a_positive_int():
    labels = torch.tensor([0, 0, 1, 1])
    for call in (
        lambda c: nce.info_nce(Q, K, chunk_size=c),
        lambda c: nce.nt_xent(Q, K, chunk_size=c),
        lambda c: nce.supervised_info_nce(Q, labels, chunk_size=c),
        lambda c: nce.debiased_info_nce(Q, K, tau_plus=0.1, chunk_size=c),
    ):
        with pytest.raises(ValueError, match="chunk_size must be >= 1"):
            call(0)
        with pytest.raises(TypeError, match="chunk_size must be an int"):
            call(2.5)


def _overflow_cases():
    """Each loss on float16 inputs, with a temperature that may push its result past 65504."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1000, 8, generator=g), torch.randn(1000, 8, generator=g)
    labels = torch.arange(1000) // 2
    targets = torch.eye(1000)
    return {
        "info_nce": lambda dt, **kw: nce.info_nce(q.to(dt), k.to(dt), **kw),
        "symmetric": lambda dt, **kw: nce.info_nce(q.to(dt), k.to(dt), symmetric=True, **kw),
        "negatives": lambda dt, **kw: nce.info_nce(q.to(dt), k.to(dt), k[:50].to(dt), **kw),
        "nt_xent": lambda dt, **kw: nce.nt_xent(q.to(dt), k.to(dt), **kw),
        "supervised": lambda dt, **kw: nce.supervised_info_nce(q.to(dt), labels, **kw),
        "debiased": lambda dt, **kw: nce.debiased_info_nce(q.to(dt), k.to(dt), tau_plus=0.1, **kw),
        "soft": lambda dt, **kw: nce.soft_info_nce(q.to(dt), k.to(dt), targets.to(dt), **kw),
    }


OVERFLOW = _overflow_cases()


@pytest.mark.parametrize("name", OVERFLOW)
def test_float16_result_beyond_its_range_is_refused_not_inf(name):
    call = OVERFLOW[name]
    message = r"largest torch.float16 value 65504 \(reduction='sum'.*temperature=0.01.*\"mean\""
    with pytest.raises(ValueError, match=message):
        call(torch.float16, temperature=0.01, reduction="sum")
    with pytest.raises(ValueError, match=r"reduction='mean'.*temperature=1e-06.*float32 inputs$"):
        call(torch.float16, temperature=1e-6)
    mean = call(torch.float16, temperature=0.01)  # the same inputs fit with reduction="mean"
    assert mean.dtype == torch.float16 and torch.isfinite(mean)
    torch.testing.assert_close(
        mean.float(), call(torch.float32, temperature=0.01), rtol=1e-3, atol=0
    )
    total = call(torch.float32, temperature=0.01, reduction="sum")  # float32 holds the sum
    assert torch.isfinite(total) and total > 65504


@pytest.mark.parametrize("name", ["info_nce", "symmetric", "negatives", "soft"])
def test_unnormalized_similarities_beyond_float32_are_refused_not_nan(name):
    q, k = 1e19 * torch.randn(6, 4), 1e19 * torch.randn(6, 4)
    call = {
        "info_nce": lambda: nce.info_nce(q, k, normalize=False),
        "symmetric": lambda: nce.info_nce(q, k, normalize=False, symmetric=True),
        "negatives": lambda: nce.info_nce(q, k, k[:3], normalize=False),
        "soft": lambda: nce.soft_info_nce(q, k, torch.eye(6), normalize=False),
    }[name]
    with pytest.raises(ValueError, match=r"the loss overflows torch.float32 although the inputs "
                       r"are finite \(temperature=0.1, normalize=False"):  # fmt: skip
        call()
    q, k = q.double(), k.double()  # float64 holds them
    assert torch.isfinite(call())


def test_binary_nce_overflow_is_refused_not_inf():
    x, y = torch.full((4,), -60000.0), torch.full((4, 3), 60000.0)
    with pytest.raises(ValueError, match="exceeds the largest torch.float16 value"):
        nce.binary_nce(x.half(), -x.half(), y.half(), -y.half())
    big = torch.full((4,), 3e38)
    with pytest.raises(ValueError, match="the loss overflows torch.float32"):
        nce.binary_nce(-big, big, big[:, None], -big[:, None])
    assert torch.isfinite(nce.binary_nce(x, -x, y, -y))


@pytest.mark.parametrize("name", [*LOSSES, "supervised", "binary_nce"])
def test_meta_tensors_are_refused_with_a_clear_error(name):
    meta = torch.empty(4, 3, device="meta")
    labels = torch.tensor([0, 0, 1, 1]).expand(3, 4).T
    call = {
        **LOSSES,
        "supervised": lambda q, k, **kw: nce.supervised_info_nce(
            q, torch.tensor([0, 0, 1, 1]), **kw
        ),
        "binary_nce": lambda q, k, **kw: nce.binary_nce(q[:, 0], K[:, 0], K, K, **kw),
    }[name]
    with pytest.raises(TypeError, match=r"is a meta tensor \(a shape without values"):
        call(meta, labels if name == "supervised" else K)
    if name != "binary_nce":
        with pytest.raises(TypeError, match="temperature is a meta tensor"):
            call(
                Q,
                labels if name == "supervised" else K,
                temperature=torch.tensor(0.1, device="meta"),
            )
