"""An adapter to faiss (optional: ``pip install nce[faiss]``) for corpora that outgrow brute force.

:class:`FaissIndex` wraps an inner-product faiss index — exact ``IndexFlatIP`` by default, or any
index built by ``faiss.index_factory`` from a description such as ``"IVF1024,Flat"`` (trained on
the documents) — behind the same call as :func:`~nce.retrieval.search.top_k`: ``search(queries,
k)`` returns (scores (N, k), indices (N, k)) as torch tensors. faiss is imported only when an index
is built.
"""

from __future__ import annotations

import torch

from nce._validation import check_int

__all__ = ["FaissIndex"]


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "FaissIndex needs faiss, an optional dependency: pip install nce[faiss]"
        ) from err
    return faiss


class FaissIndex:
    r"""Maximum-inner-product search over ``documents`` (M, D) with faiss.

    ``search`` returns, for each query, the k documents of largest :math:`s_{ij} = q_i \cdot x_j`
    (exactly with ``IndexFlatIP``, approximately with other index descriptions).

    Args:
        documents: the corpus embeddings (float32 is used).
        description: ``None`` for the exact ``IndexFlatIP``, or a ``faiss.index_factory``
            description (inner-product metric), trained on the documents when it needs training.

    Shape:
        - documents: (M, D); ``search`` queries: (N, D) -> scores (N, k), indices (N, k)

    References:
        Johnson, Douze & Jégou 2017, Billion-scale similarity search with GPUs (faiss),
        arXiv:1702.08734.

    Example:
        >>> index = FaissIndex(torch.eye(3))  # doctest: +SKIP
        >>> index.search(torch.tensor([[0.0, 1.0, 0.0]]), 1)  # doctest: +SKIP
        (tensor([[1.]]), tensor([[1]]))
    """

    def __init__(self, documents: torch.Tensor, description: str | None = None):
        faiss = _faiss()
        if not isinstance(documents, torch.Tensor) or documents.dim() != 2:
            raise ValueError("documents must be a 2-D tensor (M, D)")
        x = documents.detach().to(torch.float32).contiguous().numpy()
        dim = x.shape[1]
        if description is None:
            self.index = faiss.IndexFlatIP(dim)
        else:
            self.index = faiss.index_factory(dim, description, faiss.METRIC_INNER_PRODUCT)
            if not self.index.is_trained:
                self.index.train(x)
        self.index.add(x)
        self.size, self.dim = x.shape

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (N, k), indices (N, k)) of the k best documents of each query, best first."""
        check_int("k", k, minimum=1)
        if k > self.size:
            raise ValueError(f"k must be <= the number of documents ({self.size}), got {k}")
        if (
            not isinstance(queries, torch.Tensor)
            or queries.dim() != 2
            or (queries.shape[1] != self.dim)
        ):
            raise ValueError(f"queries must be a (N, {self.dim}) tensor")
        q = queries.detach().to(torch.float32).contiguous().numpy()
        scores, indices = self.index.search(q, k)
        return torch.from_numpy(scores), torch.from_numpy(indices).to(torch.int64)
