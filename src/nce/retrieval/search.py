r"""Exact nearest neighbours by inner product, in chunks, and the ranking metrics of retrieval.

For queries :math:`Q` (N, D) and documents :math:`X` (M, D) the scores are
:math:`s_{ij} = q_i \cdot x_j` (the cosine for unit rows). The N×M matrix is never held: queries
are taken ``chunk_size`` at a time and, for each, the documents ``chunk_size`` at a time, keeping a
running top-k, so memory is O(chunk_size² + N·k). Ties are broken by the lower document index —
the order of a stable descending sort of each full row — so the result does not depend on the
chunk size.

The rank of a query's relevant document j is one plus the number of documents that come before it
in that order; documents of the same ``group`` as j (e.g. the same text) are not counted, since
finding any of them is finding the answer:

.. math:: r_i = 1 + \#\{l : g_l \ne g_j,\ s_{il} > s_{ij} \text{ or } (s_{il} = s_{ij},\ l < j)\}.

Then recall@K = :math:`\frac1N\sum_i [r_i \le K]` and MRR = :math:`\frac1N\sum_i 1/r_i`.

Shape:
    - queries: (N, D); documents: (M, D); relevant: (N,) document indices; groups: (M,)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nce._validation import check_int, shape_str

__all__ = ["ranks", "retrieval_metrics", "top_k"]


def _check_matrices(queries: torch.Tensor, documents: torch.Tensor) -> None:
    for name, x in (("queries", queries), ("documents", documents)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            got = shape_str(x) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 2-D tensor, got {got}")
    if queries.shape[1] != documents.shape[1]:
        raise ValueError(
            f"queries have shape {shape_str(queries)} but documents have "
            f"{shape_str(documents)}: the dimensions differ"
        )


def top_k(
    queries: torch.Tensor,
    documents: torch.Tensor,
    k: int,
    *,
    chunk_size: int = 1024,
    exclude=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The k highest-scoring documents of each query: (scores (N, k), indices (N, k)), best first,
    ties broken by the lower index; the scores are :math:`s_{ij} = q_i \cdot x_j`.

    Args:
        queries, documents: embeddings; scores are their dot products.
        k: how many documents per query, at most M.
        chunk_size: queries and documents scored per tile.
        exclude: ``exclude(rows, columns, scores) -> mask`` of the (rows, columns) entries of a
            tile that must never be returned (given the query indices (R,), the document indices
            (C,) and the (R, C) scores). Excluded documents are ranked last with score ``-inf``.

    Example:
        >>> q = torch.tensor([[1.0, 0.0]]); x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
        >>> top_k(q, x, 2)
        (tensor([[1., 1.]]), tensor([[1, 2]]))
    """
    _check_matrices(queries, documents)
    check_int("chunk_size", chunk_size, minimum=1)
    n, m = queries.shape[0], documents.shape[0]
    check_int("k", k, minimum=1)
    if k > m:
        raise ValueError(f"k must be <= the number of documents ({m}), got {k}")
    all_scores, all_indices = [], []
    for q0 in range(0, n, chunk_size):
        q = queries[q0 : q0 + chunk_size]
        rows = torch.arange(q0, q0 + len(q))
        best = torch.empty(len(q), 0, dtype=q.dtype)
        best_index = torch.empty(len(q), 0, dtype=torch.int64)
        for d0 in range(0, m, chunk_size):
            columns = torch.arange(d0, min(d0 + chunk_size, m))
            scores = q @ documents[d0 : d0 + chunk_size].T
            if exclude is not None:
                scores = scores.masked_fill(exclude(rows, columns, scores), -torch.inf)
            merged = torch.cat([best, scores], 1)
            merged_index = torch.cat([best_index, columns.expand(len(q), -1)], 1)
            order = merged.argsort(dim=1, descending=True, stable=True)[:, :k]
            best, best_index = merged.gather(1, order), merged_index.gather(1, order)
        all_scores.append(best)
        all_indices.append(best_index)
    if not all_scores:
        return torch.empty(0, k, dtype=queries.dtype), torch.empty(0, k, dtype=torch.int64)
    return torch.cat(all_scores), torch.cat(all_indices)


def ranks(
    queries: torch.Tensor,
    documents: torch.Tensor,
    relevant: torch.Tensor,
    groups: torch.Tensor | None = None,
    *,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The rank (1 = first) of each query's relevant document among all documents (module
    docstring), counted in chunks.

    Args:
        relevant: index of each query's relevant document, (N,).
        groups: documents of one group are interchangeable answers (e.g. identical texts), (M,);
            None: every document its own group.

    Example:
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> ranks(q, x, torch.tensor([1, 1])).tolist()
        [2, 2]
        >>> ranks(q, x, torch.tensor([1, 1]), groups=torch.tensor([7, 7])).tolist()
        [1, 1]
    """
    _check_matrices(queries, documents)
    check_int("chunk_size", chunk_size, minimum=1)
    n, m = queries.shape[0], documents.shape[0]
    if not isinstance(relevant, torch.Tensor) or relevant.shape != (n,):
        raise ValueError(f"relevant must be a ({n},) tensor of document indices")
    if n and (int(relevant.min()) < 0 or int(relevant.max()) >= m):
        raise ValueError(f"relevant holds indices outside [0, {m})")
    if groups is None:
        groups = torch.arange(m)
    elif not isinstance(groups, torch.Tensor) or groups.shape != (m,):
        raise ValueError(f"groups must be a ({m},) tensor, one group per document")
    out = []
    for q0 in range(0, n, chunk_size):
        q = queries[q0 : q0 + chunk_size]
        target = relevant[q0 : q0 + chunk_size]
        positive = (q * documents[target]).sum(1, keepdim=True)
        target_group = groups[target].unsqueeze(1)
        before = torch.zeros(len(q), dtype=torch.int64)
        for d0 in range(0, m, chunk_size):
            columns = torch.arange(d0, min(d0 + chunk_size, m))
            scores = q @ documents[d0 : d0 + chunk_size].T
            ahead = (scores > positive) | ((scores == positive) & (columns < target.unsqueeze(1)))
            before += (ahead & (groups[columns] != target_group)).sum(1)
        out.append(before + 1)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def retrieval_metrics(rank: torch.Tensor, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    r"""``recall_at_<k>`` for each k and ``mrr`` of the ranks (fractions in [0, 1]):
    recall@K :math:`= \frac1N\sum_i [r_i \le K]`, MRR :math:`= \frac1N\sum_i 1/r_i`.

    Shape:
        - rank: (N,) ranks :math:`r_i \ge 1`

    Example:
        >>> {k: round(v, 4) for k, v in retrieval_metrics(torch.tensor([1, 2, 20])).items()}
        {'recall_at_1': 0.3333, 'recall_at_10': 0.6667, 'mrr': 0.5167}
    """
    if rank.numel() == 0:
        raise ValueError("no queries to evaluate")
    r = rank.double()
    out = {f"recall_at_{k}": float((r <= k).double().mean()) for k in ks}
    out["mrr"] = float((1.0 / r).mean())
    return out
