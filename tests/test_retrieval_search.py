"""Exact chunked top-k search, ranks and metrics against a full-matrix reference; faiss."""

import sys

import pytest
import torch

from nce.retrieval.faiss_index import FaissIndex
from nce.retrieval.search import ranks, retrieval_metrics, top_k


def _tied(n, m, d=3, seed=0):
    """Small integer embeddings: many exactly equal scores."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(-1, 2, (n, d), generator=g).double(),
        torch.randint(-1, 2, (m, d), generator=g).double(),
    )


def _reference_top_k(q, x, k):
    scores = q @ x.T
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), order


def _reference_ranks(q, x, relevant, groups):
    scores = q @ x.T
    out = []
    for i, j in enumerate(relevant.tolist()):
        order = scores[i].argsort(descending=True, stable=True).tolist()
        others = [c for c in order if groups[c] != groups[j] or c == j]
        out.append(others.index(j) + 1)
    return torch.tensor(out)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
def test_top_k_equals_a_stable_sort_of_the_full_matrix_with_ties(chunk_size):
    q, x = _tied(11, 23)
    for k in (1, 5, 23):
        scores, indices = top_k(q, x, k, chunk_size=chunk_size)
        ref_scores, ref_indices = _reference_top_k(q, x, k)
        assert torch.equal(indices, ref_indices)
        assert torch.equal(scores, ref_scores)


def test_top_k_never_returns_an_excluded_document():
    q, x = _tied(6, 10)
    scores, indices = top_k(
        q, x, 9, chunk_size=4, exclude=lambda r, c, s: (c % 2 == 0).expand_as(s)
    )
    finite = torch.isfinite(scores)
    assert finite[:, :5].all() and not finite[:, 5:].any()
    assert (indices[:, :5] % 2 == 1).all()


def test_top_k_refuses_bad_input():
    with pytest.raises(ValueError, match="dimensions differ"):
        top_k(torch.ones(2, 3), torch.ones(4, 2), 1)
    with pytest.raises(ValueError, match="k must be <= the number of documents"):
        top_k(torch.ones(2, 3), torch.ones(4, 3), 5)


@pytest.mark.parametrize("chunk_size", [2, 5, 100])
def test_ranks_equal_the_full_matrix_reference_with_ties_and_groups(chunk_size):
    q, x = _tied(13, 17)
    relevant = torch.arange(13)
    plain = torch.arange(17)
    assert torch.equal(
        ranks(q, x, relevant, chunk_size=chunk_size), _reference_ranks(q, x, relevant, plain)
    )
    groups = torch.tensor([0, 1, 0, 2, 3, 1, 4, 5, 6, 7, 0, 8, 9, 10, 11, 2, 12])
    assert torch.equal(
        ranks(q, x, relevant, groups, chunk_size=chunk_size),
        _reference_ranks(q, x, relevant, groups),
    )


def test_metrics_from_ranks():
    m = retrieval_metrics(torch.tensor([1, 1, 3, 12]), ks=(1, 10))
    assert m == pytest.approx(
        {"recall_at_1": 0.5, "recall_at_10": 0.75, "mrr": (1 + 1 + 1 / 3 + 1 / 12) / 4}
    )


def test_faiss_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install nce\[faiss\]"):
        FaissIndex(torch.eye(3))


def test_faiss_flat_index_agrees_with_exact_search():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(1)
    q, x = torch.randn(20, 8, generator=g), torch.randn(50, 8, generator=g)
    scores, indices = FaissIndex(x).search(q, 5)
    ref_scores, ref_indices = top_k(q, x, 5)
    assert torch.equal(indices, ref_indices)
    assert torch.allclose(scores, ref_scores, atol=1e-5)
