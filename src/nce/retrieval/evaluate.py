"""Retrieval quality of a two-tower encoder on pairs: every query against every document.

Query i's answer is document i. Both directions are measured — each query ranks all documents,
and each document ranks all queries — and averaged. Identical texts are interchangeable answers
(:func:`~nce.retrieval.mining.text_ids` groups them), so a verse repeated word for word does not
count as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nce.retrieval.mining import text_ids
from nce.retrieval.search import ranks, retrieval_metrics
from nce.retrieval.towers import HashedNgramEncoder

__all__ = ["evaluate_pairs"]


def evaluate_pairs(
    model: HashedNgramEncoder,
    queries: Sequence[str],
    documents: Sequence[str],
    *,
    ks: Sequence[int] = (1, 10),
    chunk_size: int = 1024,
) -> dict:
    r"""``recall_at_<k>`` and ``mrr`` averaged over query → document and document → query, and each
    direction's under ``"query_to_document"`` and ``"document_to_query"``.

    With :math:`r_i` the rank of query i's document among all N documents (identical texts count
    as one answer), recall@K :math:`= \frac1N\sum_i [r_i \le K]` and MRR
    :math:`= \frac1N\sum_i 1/r_i`.

    Shape:
        - queries, documents: sequences of N strings, pair i = (queries[i], documents[i])

    Example:
        >>> enc = HashedNgramEncoder(buckets=512, width=8, dim=8)
        >>> r = evaluate_pairs(enc, ["a", "b"], ["a", "b"])
        >>> sorted(r)[:3], 0 <= r["mrr"] <= 1
        (['document_to_query', 'mrr', 'query_to_document'], True)
    """
    if len(queries) != len(documents):
        raise ValueError(
            f"queries and documents must pair up, got {len(queries)} and {len(documents)}"
        )
    q = model.embed(queries, "query")
    x = model.embed(documents, "document")
    answers = torch.arange(len(queries))
    forward = retrieval_metrics(
        ranks(q, x, answers, text_ids(documents), chunk_size=chunk_size), ks
    )
    backward = retrieval_metrics(ranks(x, q, answers, text_ids(queries), chunk_size=chunk_size), ks)
    out = {key: (forward[key] + backward[key]) / 2 for key in forward}
    out["query_to_document"] = forward
    out["document_to_query"] = backward
    return out
