r"""Hard-negative mining with false-negative filters.

For each training query :math:`q_i` with positive document :math:`x_{p_i}`, the hard negatives are
the K documents of the training corpus that score highest, :math:`s_{il} = q_i \cdot x_l`, among
the candidates that survive two filters:

* **by id** — a document with the positive's id (``ids[l] == ids[p_i]``: the same text, e.g. a
  verse repeated word for word) is the answer, not a negative;
* **by margin** (GISTEmbed, Solatorio 2024, arXiv:2402.16829) — a candidate that a *guide* scores
  nearly as high as the positive, :math:`g_{il} > g_{ip_i} - m`, is probably a paraphrase of it
  (an unlabelled false negative) and is dropped. The guide is the model itself or a frozen model
  given by its embeddings; a large margin drops more.

Re-mining from the current model every E epochs, with the corpus embedded afresh, is ANCE
(Xiong et al. 2021, arXiv:2007.00808): the negatives stay hard as the model improves.

Shape:
    - queries: (N, D); documents: (M, D); positives: (N,); ids: (M,); output: (N, K)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nce._validation import check_int
from nce.retrieval.search import top_k

__all__ = ["mine_hard_negatives", "text_ids"]


def text_ids(texts: Sequence[str]) -> torch.Tensor:
    """One id per text, equal for identical texts: the index of the text's first occurrence.

    Shape:
        - texts: N strings; output: (N,) int64

    Example:
        >>> text_ids(["a", "b", "a", "c", "b"]).tolist()
        [0, 1, 0, 3, 1]
    """
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(t, i) for i, t in enumerate(texts)], dtype=torch.int64)


def mine_hard_negatives(
    queries: torch.Tensor,
    documents: torch.Tensor,
    positives: torch.Tensor,
    k: int,
    *,
    ids: torch.Tensor | None = None,
    margin: float | None = None,
    guide: tuple[torch.Tensor, torch.Tensor] | None = None,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The K hardest surviving negatives of each query (module docstring), hardest first.

    Among the documents l that survive the id filter (``ids[l] != ids[p_i]``) and the margin
    filter (:math:`g_{il} \le g_{ip_i} - m`), the K of largest :math:`s_{il} = q_i \cdot x_l`.

    Args:
        queries, documents: embeddings of the model being trained.
        positives: index of each query's positive document, (N,).
        k: K, negatives per query.
        ids: id of each document (:func:`text_ids`); None: the positive alone is excluded.
        margin: m of the margin filter; None: no margin filter.
        guide: (guide queries (N, D'), guide documents (M, D')) embeddings of a frozen guide model
            for the margin filter; None: the model's own scores.
        chunk_size: rows and columns per tile of the exact search.

    Returns:
        (indices, valid), both (N, K): the document indices, and False where fewer than K
        candidates survived (those slots hold the query's own positive).

    References:
        Xiong et al. 2021, ANCE, arXiv:2007.00808; Solatorio 2024, GISTEmbed (the guided margin
        filter), arXiv:2402.16829.

    Example:
        >>> q = torch.eye(3); x = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.8, 0, 0]])
        >>> mine_hard_negatives(q[:1], x, torch.tensor([0]), 2)[0].tolist()
        [[1, 3]]
        >>> mine_hard_negatives(q[:1], x, torch.tensor([0]), 2, margin=0.15)[0].tolist()
        [[3, 2]]
    """
    check_int("k", k, minimum=1)
    n, m = queries.shape[0], documents.shape[0]
    if not isinstance(positives, torch.Tensor) or positives.shape != (n,):
        raise ValueError(f"positives must be a ({n},) tensor of document indices")
    if ids is None:
        ids = torch.arange(m)
    elif not isinstance(ids, torch.Tensor) or ids.shape != (m,):
        raise ValueError(f"ids must be a ({m},) tensor, one id per document")
    if margin is not None and not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin}")
    guide_q, guide_x = (queries, documents) if guide is None else guide
    if guide_q.shape[0] != n or guide_x.shape[0] != m:
        raise ValueError(
            f"guide embeddings must have {n} queries and {m} documents, got {guide_q.shape[0]} "
            f"and {guide_x.shape[0]}"
        )
    positive_ids = ids[positives]
    guide_positive = (guide_q * guide_x[positives]).sum(1)

    def exclude(rows: torch.Tensor, columns: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = ids[columns].unsqueeze(0) == positive_ids[rows].unsqueeze(1)
        if margin is not None:
            guide_scores = scores if guide is None else guide_q[rows] @ guide_x[columns].T
            mask |= guide_scores > (guide_positive[rows] - margin).unsqueeze(1)
        return mask

    scores, indices = top_k(queries, documents, min(k, m), chunk_size=chunk_size, exclude=exclude)
    valid = torch.isfinite(scores)
    indices = torch.where(valid, indices, positives.unsqueeze(1))
    if indices.shape[1] < k:
        pad = k - indices.shape[1]
        indices = torch.cat([indices, positives.unsqueeze(1).expand(n, pad)], 1)
        valid = torch.cat([valid, torch.zeros(n, pad, dtype=torch.bool)], 1)
    return indices, valid
