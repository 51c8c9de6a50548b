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
