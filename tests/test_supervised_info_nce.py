import pytest
import torch

import nce

import reference as ref
from conftest import randn

LABELS = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_reference(dtype, tol):
    z = randn(8, 5, dtype=dtype)
    got = nce.supervised_info_nce(z, LABELS, temperature=0.2, reduction="none")
    z64 = z.detach().double().requires_grad_()
    terms = ref.supcon_terms(z64, LABELS, 0.2)
    valid = [t for t in terms if t is not None]
    assert got[6] == 0  # label 3 occurs once: no positive
    want_mean = torch.stack(valid).mean()
    torch.testing.assert_close(
        got[[i for i, t in enumerate(terms) if t is not None]].double(),
        torch.stack(valid),
        rtol=tol,
        atol=tol,
    )
    mean = nce.supervised_info_nce(z, LABELS, temperature=0.2)
    torch.testing.assert_close(mean.double(), want_mean, rtol=tol, atol=tol)
    (g_got,) = torch.autograd.grad(mean, z)
    (g_want,) = torch.autograd.grad(want_mean, z64)
    torch.testing.assert_close(g_got.double(), g_want, rtol=tol, atol=tol)


def test_equals_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    z = randn(8, 5)
    want = losses.SupConLoss(temperature=0.1)(z, LABELS)
    torch.testing.assert_close(nce.supervised_info_nce(z, LABELS, temperature=0.1), want)


def test_gradcheck():
    z = randn(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda x: nce.supervised_info_nce(x, labels), (z,))


def test_one_positive_per_anchor_is_info_nce_over_views():
    # With labels pairing view i and view i+N, SupCon is NT-Xent.
    v1, v2 = randn(5, 4), randn(5, 4, seed=1)
    labels = torch.arange(5).repeat(2)
    torch.testing.assert_close(
        nce.supervised_info_nce(torch.cat([v1, v2]), labels, temperature=0.5),
        nce.nt_xent(v1, v2, temperature=0.5),
    )


def test_invariances_and_errors():
    z = randn(8, 5)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    base = nce.supervised_info_nce(z, LABELS)
    torch.testing.assert_close(nce.supervised_info_nce(z[perm], LABELS[perm]), base)
    torch.testing.assert_close(nce.supervised_info_nce(3 * z, LABELS), base)
    with pytest.raises(ValueError, match="every label in labels occurs once"):
        nce.supervised_info_nce(z, torch.arange(8))
    with pytest.raises(ValueError, match=r"labels must have shape \(8,\)"):
        nce.supervised_info_nce(z, LABELS[:5])
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        nce.supervised_info_nce(z, LABELS.float())


@pytest.mark.parametrize("chunk", [1, 7, 8, 9, 3])
def test_chunked_equals_dense(chunk):
    z = randn(8, 5, dtype=torch.float32)
    t = torch.tensor(0.2, requires_grad=True)
    w = torch.rand(8, generator=torch.Generator().manual_seed(0))
    dense = nce.supervised_info_nce(z, LABELS, temperature=t, reduction="none")
    tiled = nce.supervised_info_nce(z, LABELS, temperature=t, reduction="none", chunk_size=chunk)
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-6)
    g_dense = torch.autograd.grad((dense * w).sum(), (z, t))
    g_tiled = torch.autograd.grad((tiled * w).sum(), (z, t))
    for a, b in zip(g_tiled, g_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gradcheck_chunked():
    z = randn(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    assert torch.autograd.gradcheck(
        lambda x: nce.supervised_info_nce(x, labels, reduction="none", chunk_size=4), (z,)
    )
