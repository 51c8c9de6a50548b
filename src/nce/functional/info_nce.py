r"""InfoNCE (van den Oord et al., 2018, arXiv:1807.03748): ranking noise-contrastive estimation.

Each query :math:`q_i` has one positive key :math:`k_i` among negatives :math:`n_{ij}`; the loss is
the cross-entropy of picking the positive,

.. math:: \ell_i = -\log \frac{e^{s(q_i, k_i)/\tau}}
          {e^{s(q_i, k_i)/\tau} + \sum_j e^{s(q_i, n_{ij})/\tau - \log Q_{ij}}},

with :math:`s` the dot product (the cosine when ``normalize``), :math:`\tau` the temperature and
:math:`\log Q` an optional sampled-softmax correction (Jean et al., 2015, arXiv:1412.2007): the log
expected count of each negative under the sampler that drew it. The optimal critic is the log
density ratio :math:`\log p(k|q)/p(k)` up to a constant, which is why minimizing the loss maximizes
the bound :math:`I(q; k) \ge \log N - \ell`.
"""

from __future__ import annotations

import math

import torch

from nce._validation import (
    check_compatible,
    check_ids,
    check_int,
    check_reduction,
    check_same_size,
    check_tensor,
    shape_str,
)
from nce.functional._common import (
    as_scale,
    check_temperature,
    compute_dtype,
    finish,
    l2_normalize,
)
from nce.functional._gather import gather_rows, global_layout
from nce.functional._tiled_softmax import PairedSoftmaxCE, default_rows


def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    temperature: float | torch.Tensor = 0.1,
    normalize: bool = True,
    symmetric: bool = False,
    reduction: str = "mean",
    chunk_size: int | None = None,
    gather: bool = False,
    log_q: torch.Tensor | None = None,
    remove_accidental_hits: bool = False,
    key_ids: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""InfoNCE loss with in-batch, shared or per-query negatives.

    .. math:: \ell_i = \log\Big(e^{s_{ii}} + \sum_j e^{s_{ij} - \log Q_j}\Big) - s_{ii},
              \qquad s = \langle q, k\rangle / \tau.

    * ``negatives=None``: the other keys of the batch are the negatives (query i's positive is key
      i); the similarity matrix is never stored whole (see ``chunk_size``).
    * ``negatives`` of shape (M, D): shared by every query ("unpaired").
    * ``negatives`` of shape (N, K, D): K negatives per query ("paired").

    Args:
        query: queries (anchors).
        key: their positive keys.
        negatives: explicit negatives, replacing the in-batch ones.
        temperature: :math:`\tau > 0`, a number or a scalar tensor (e.g. learned).
        normalize: L2-normalize the embeddings first (cosine similarity); zero vectors stay finite.
        symmetric: CLIP's loss, the mean of the query→key and key→query losses (in-batch only).
        reduction: "mean" | "sum" | "none" (shape (N,)).
        chunk_size: the similarity matrix is computed in tiles of at most ``chunk_size`` rows,
            never whole: memory O(N·D + chunk_size·N). None (the default) lets the library
            choose the tile size. Any value gives the same result; only memory and speed change.
            (In-batch path; explicit negatives are scored whole.)
        gather: in-batch negatives from every rank of the torch.distributed process group
            (ranks may hold different N); gradients flow back to the rank owning each key. "mean"
            and "sum" are then scaled by the world size W — each rank returns
            :math:`\frac{W}{N_{global}}\sum_{i\,local}\ell_i` — so that DDP's gradient averaging
            gives exactly the gradient of the single-process loss on the global batch. A rank may
            hold no rows: it returns 0 (an empty (0,) tensor for "none") and its gradients still
            flow to the keys it gathered. Before any embedding moves, the ranks exchange their
            batch sizes, feature sizes and dtypes: a global batch below 2, a mismatch between
            ranks or a bad argument on any rank raises the same error on every rank. Without
            an initialized process group it is the plain local loss.
        log_q: log expected count of each negative under its sampler, subtracted from its logit:
            (M,) for shared negatives, (N, K) for per-query ones, (N,) for in-batch keys.
        remove_accidental_hits: mask negatives whose id equals the positive's id (sampled
            negatives can hit the positive). Needs ``key_ids`` and, with explicit negatives,
            ``negative_ids``. Masked logits get the dtype's finite minimum, never -inf.
        key_ids: class id of each positive key.
        negative_ids: class id of each negative, (M,) or (N, K).

    Shape:
        - query, key: (N, D)
        - negatives: (M, D) or (N, K, D)
        - output: () or (N,) for reduction="none"

    The in-batch path computes its gradient in a custom autograd function: first-order only.

    Half-precision inputs are computed in float32 and the result is returned in their dtype.
    Finite inputs never give inf or NaN: a result beyond the range of that dtype (float16 tops
    out at 65504, e.g. reduction="sum" over many rows, or a tiny temperature) or of the compute
    dtype raises ``ValueError`` naming the arguments; use float32 inputs or reduction="mean".

    Example:
        >>> import torch, nce
        >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
        >>> nce.info_nce(q, k, temperature=0.1).shape
        torch.Size([])
    """
    arguments = (query, key, negatives, temperature, symmetric, reduction, chunk_size, gather)
    extras = (log_q, remove_accidental_hits, key_ids, negative_ids)
    where = None
    if gather:
        where = global_layout(
            "query",
            query,
            min_total=2,
            check=lambda: _check_arguments(*arguments, *extras),
            gathered=(key, query) if symmetric else (key,),
            why="in-batch negatives need",
        )
        tau = check_temperature(temperature)
    else:
        tau = _check_arguments(*arguments, *extras)
    n = query.shape[0]

    out_dtype = query.dtype
    dtype = compute_dtype(query)
    q, k = query.to(dtype), key.to(dtype)

    def describe() -> str:
        return f"temperature={tau:.6g}, normalize={normalize}, {q.dtype} inputs"

    if negatives is None and log_q is None and not remove_accidental_hits:
        scale = torch.as_tensor(as_scale(temperature, q), dtype=dtype, device=q.device)
        if where is not None:
            loss = _gathered(q, k, scale, normalize, symmetric, chunk_size, where)
        else:
            targets = torch.arange(n, device=q.device)
            chunk = chunk_size or default_rows(n)
            loss = PairedSoftmaxCE.apply(q, k, scale, normalize, symmetric, chunk, targets, None)
        columns = n if where is None else where.total
        bound = _bound(normalize, tau, columns)
        return finish(loss, reduction, out_dtype, bound=bound, describe=describe, where=where)

    if normalize:
        q, k = l2_normalize(q), l2_normalize(k)
    q = q * as_scale(temperature, q)

    positive = (q * k).sum(-1)
    if negatives is None:
        logits = _masked_in_batch_logits(q, k, log_q, key_ids if remove_accidental_hits else None)
        loss = torch.logsumexp(logits, 1) - positive
        if symmetric:
            loss_t = torch.logsumexp(logits, 0) - positive
            loss = 0.5 * (loss + loss_t)
        bound = _bound(normalize and log_q is None, tau, n)
        return finish(loss, reduction, out_dtype, bound=bound, describe=describe)

    neg = negatives.to(dtype)
    if normalize:
        neg = l2_normalize(neg)
    neg_logits = q @ neg.T if neg.dim() == 2 else torch.einsum("nd,nkd->nk", q, neg)
    if log_q is not None:
        neg_logits = neg_logits - log_q.to(dtype)
    if remove_accidental_hits:
        ids = negative_ids if negative_ids.dim() == 2 else negative_ids.unsqueeze(0)
        hit = ids == key_ids.unsqueeze(1)
        neg_logits = neg_logits.masked_fill(hit, torch.finfo(dtype).min)
    logits = torch.cat([positive.unsqueeze(1), neg_logits], 1)
    loss = torch.logsumexp(logits, 1) - positive
    bound = _bound(normalize and log_q is None, tau, logits.shape[1])
    return finish(loss, reduction, out_dtype, bound=bound, describe=describe)


def _bound(unit_rows: bool, temperature: float, columns: int) -> float | None:
    r"""With unit rows every logit lies in :math:`[-1/\tau, 1/\tau]`, so each example's loss
    lies in :math:`[0, 2/\tau + \log M]` for M columns; otherwise no bound is known."""
    return 2.0 / temperature + math.log(max(columns, 1)) if unit_rows else None


def _check_arguments(
    query,
    key,
    negatives,
    temperature,
    symmetric,
    reduction,
    chunk_size,
    gather,
    log_q,
    remove_accidental_hits,
    key_ids,
    negative_ids,
) -> float:
    """Every argument check of :func:`info_nce`; returns the temperature as a float. With
    ``gather`` a rank may hold no rows: the global batch is checked by the caller."""
    check_reduction(reduction)
    tau = check_temperature(temperature)
    check_tensor("query", query, 2, nonempty=not gather)
    check_tensor("key", key, 2, nonempty=not gather)
    if query.shape != key.shape:
        raise ValueError(f"query has shape {shape_str(query)} but key has {shape_str(key)}")
    check_compatible(query=query, key=key)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    n = query.shape[0]
    if negatives is not None:
        check_tensor("negatives", negatives, (2, 3))
        check_compatible(query=query, negatives=negatives)
        check_same_size(-1, "dimension", query=query, negatives=negatives)
        if negatives.dim() == 3:
            check_same_size(0, "batch", query=query, negatives=negatives)
        if symmetric:
            raise ValueError("symmetric=True needs in-batch negatives (negatives=None)")
        if gather:
            raise ValueError(
                "gather=True gathers the in-batch keys; explicit negatives can be gathered with "
                "nce.distributed.gather_rows"
            )
    elif query.shape[1] == 0:
        raise ValueError(f"query is empty (shape {shape_str(query)})")
    elif n < 2 and not gather:
        raise ValueError(
            "in-batch negatives need a batch of at least 2 (with N = 1 the loss is identically 0), "
            f"got query of shape {shape_str(query)}"
        )
    neg_shape = _negative_shape(n, negatives)
    if log_q is not None:
        if symmetric:
            raise ValueError("log_q corrects sampled keys; it is undefined with symmetric=True")
        check_tensor("log_q", log_q, len(neg_shape))
        if log_q.shape != neg_shape:
            raise ValueError(
                f"log_q must have shape {tuple(neg_shape)} (one per negative), "
                f"got {shape_str(log_q)}"
            )
    if gather and (log_q is not None or remove_accidental_hits):
        raise ValueError("gather=True does not combine with log_q or remove_accidental_hits")
    if remove_accidental_hits:
        if key_ids is None or (negatives is not None and negative_ids is None):
            raise ValueError(
                "remove_accidental_hits=True needs key_ids"
                + (" and negative_ids" if negatives is not None else "")
            )
        check_ids("key_ids", key_ids, shape=torch.Size([n]))
        if negatives is not None:
            check_ids("negative_ids", negative_ids, shape=neg_shape)

    return tau


def _gathered(q, k, scale, normalize, symmetric, chunk_size, where) -> torch.Tensor:
    """Per-example in-batch InfoNCE of this rank's queries against every rank's keys (and,
    symmetric, back)."""
    keys, _ = gather_rows(k, where)
    targets = torch.arange(q.shape[0], device=q.device) + where.offset
    chunk = chunk_size or default_rows(where.total)
    loss = PairedSoftmaxCE.apply(q, keys, scale, normalize, False, chunk, targets, None)
    if symmetric:
        queries, _ = gather_rows(q, where)
        back = PairedSoftmaxCE.apply(k, queries, scale, normalize, False, chunk, targets, None)
        loss = 0.5 * (loss + back)
    return loss


def _negative_shape(n: int, negatives: torch.Tensor | None) -> torch.Size:
    """Shape of the per-negative tensors (log_q, negative_ids)."""
    if negatives is None:
        return torch.Size([n])
    if negatives.dim() == 2:
        return torch.Size([negatives.shape[0]])
    return negatives.shape[:2]


def _masked_in_batch_logits(
    q: torch.Tensor, k: torch.Tensor, log_q: torch.Tensor | None, key_ids: torch.Tensor | None
) -> torch.Tensor:
    """(N, N) logits with ``log_q`` subtracted off the diagonal and accidental hits masked."""
    logits = q @ k.T
    off_diagonal = ~torch.eye(q.shape[0], dtype=torch.bool, device=q.device)
    if log_q is not None:
        logits = logits - log_q.to(q.dtype).unsqueeze(0) * off_diagonal
    if key_ids is not None:
        hit = (key_ids.unsqueeze(0) == key_ids.unsqueeze(1)) & off_diagonal
        logits = logits.masked_fill(hit, torch.finfo(q.dtype).min)
    return logits
