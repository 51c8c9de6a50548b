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
from dataclasses import dataclass

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
    PassedChecks,
    as_scale,
    check_finite,
    check_temperature,
    compute_dtype,
    finish,
    l2_normalize,
)
from nce.functional._dense_softmax import DensePairedCE, dense_ok
from nce.functional._gather import Layout, gather_rows, global_layout
from nce.functional._tiled_softmax import ColumnRule, PairedSoftmaxCE, default_rows


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
    in_batch: bool = False,
    log_q: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    remove_accidental_hits: bool = False,
    key_ids: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""InfoNCE loss with in-batch, shared or per-query negatives, or in-batch and given ones.

    .. math:: \ell_i = \log \sum_{c \in C_i} e^{s_{ic} - \log Q_c} - (s_{ii} - \log Q_i),
              \qquad s = \langle q, k\rangle / \tau,

    over the columns :math:`C_i` that query i scores (its positive key i among them):

    * ``negatives=None``: the N keys of the batch; key i is query i's positive, the other
      N−1 keys its negatives. The similarity matrix is stored whole only when ``chunk_size``
      allows it.
    * ``negatives`` of shape (M, D), ``in_batch=False``: the positive and the M shared
      negatives ("unpaired"), which replace the in-batch keys.
    * ``negatives`` of shape (N, K, D), ``in_batch=False``: the positive and query i's own K
      negatives ("paired").
    * ``in_batch=True``: the given negatives join the in-batch keys in one softmax. Query i
      scores all N keys and then the M shared negatives, or all N·K negatives of every query
      (sentence-transformers' MultipleNegativesRankingLoss with hard negatives): N + M or
      N + N·K columns, in tiles of rows as the in-batch path (see ``chunk_size``).

    Args:
        query: queries (anchors).
        key: their positive keys.
        negatives: explicit negatives; they replace the in-batch keys unless ``in_batch``.
        temperature: :math:`\tau > 0`, a number or a scalar tensor (e.g. learned).
        normalize: L2-normalize the embeddings first (cosine similarity); zero vectors stay finite.
        symmetric: CLIP's loss, the mean of the query→key and key→query losses. The key→query
            direction scores each key against the N queries only; given negatives (which need
            ``in_batch=True`` here) join the query→key direction.
        reduction: "mean" | "sum" | "none" (shape (N,)).
        chunk_size: the similarity matrix is computed in tiles of at most ``chunk_size`` rows,
            never whole: memory O(N·D + chunk_size·N). None (the default) lets the library
            choose the tile size. Any value gives the same result; only memory and speed change.
            (In-batch paths; explicit negatives without ``in_batch`` are scored whole.)
        gather: in-batch negatives from every rank of the torch.distributed process group
            (ranks may hold different N); gradients flow back to the rank owning each key. "mean"
            and "sum" are then scaled by the world size W — each rank returns
            :math:`\frac{W}{N_{global}}\sum_{i\,local}\ell_i` — so that DDP's gradient averaging
            gives exactly the gradient of the single-process loss on the global batch. A rank may
            hold no rows: it returns 0 (an empty (0,) tensor for "none") and its gradients still
            flow to the keys it gathered. Before any embedding moves, the ranks exchange their
            batch sizes, feature sizes, dtypes and options: a global batch below 2, a mismatch
            between ranks or a bad argument on any rank raises the same error on every rank.
            With ``in_batch=True`` the given negatives, ``log_q`` and the ids of every rank are
            gathered too (each rank may hold a different M). Without an initialized process
            group it is the plain local loss.
        in_batch: the given ``negatives`` join the in-batch keys instead of replacing them.
        log_q: :math:`\log Q`, the log expected count of each column's item in the batch under
            the process that drew it, subtracted from that column's logit (sampled-softmax
            correction; no gradient flows to it). Its shape follows the columns:

            * ``negatives=None``: (N,), one per key, subtracted from every column, the positive's
              included (Yi et al. 2019, "Sampling-bias-corrected neural modeling for large corpus
              item recommendations", RecSys). The batch softmax is a sampled softmax whose
              proposal is the batch's own item distribution: with :math:`Q_j` the expected count
              of item j in a batch, :math:`\sum_c e^{s_c - \log Q_c}` estimates the full
              softmax's normalizer, and the expected gradient with respect to each item's
              score approaches the full softmax's. Popular items get lower logits.
            * ``in_batch=True`` with negatives: a pair ``(key_log_q, negative_log_q)``, of shapes
              (N,) and (M,) or (N, K), subtracted from every column, the positive's included.
            * ``in_batch=False`` with negatives: (M,) or (N, K), for the negatives only; the
              positive keeps its logit (Jean et al., 2015, arXiv:1412.2007: the target term is
              exact, only the normalizer is sampled).
        remove_accidental_hits: drop from query i's softmax every column whose id equals the id
            of query i's positive (``key_ids[i]``), except the positive itself: duplicates of the
            positive in the batch and sampled negatives that hit it. Needs ``key_ids`` and, with
            negatives, ``negative_ids``. Dropped logits get :math:`-\infty` inside the tiles (the
            dtype's finite minimum on the dense path); the positive always stays, so the loss
            stays finite.
        key_ids: item id of each key, (N,).
        negative_ids: item id of each negative, (M,) or (N, K).

    Shape:
        - query, key: (N, D)
        - negatives: (M, D) or (N, K, D)
        - log_q: (N,); (M,) or (N, K); or a pair of (N,) and (M,) or (N, K) (see ``log_q``)
        - key_ids: (N,); negative_ids: (M,) or (N, K)
        - output: () or (N,) for reduction="none"

    The in-batch paths compute their gradient in a custom autograd function: first-order only.

    Half-precision inputs are computed in float32 and the result is returned in their dtype.
    Finite inputs never give inf or NaN: a result beyond the range of that dtype (float16 tops
    out at 65504, e.g. reduction="sum" over many rows, or a tiny temperature) or of the compute
    dtype raises ``ValueError`` naming the arguments; use float32 inputs or reduction="mean".

    Example:
        >>> import torch, nce
        >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
        >>> nce.info_nce(q, k, temperature=0.1).shape
        torch.Size([])
        >>> hard = torch.randn(8, 2, 16)  # two hard negatives per query, scored by every query
        >>> nce.info_nce(q, k, hard, in_batch=True, reduction="none").shape
        torch.Size([8])
    """
    arguments = (query, key, negatives, temperature, symmetric, reduction, chunk_size, gather)
    extras = (in_batch, log_q, remove_accidental_hits, key_ids, negative_ids)
    if (
        negatives is None
        and gather is False
        and normalize is True
        and in_batch is False
        and log_q is None
        and remove_accidental_hits is False
        and key_ids is None
        and negative_ids is None
    ):
        loss = _small_batch(query, key, temperature, symmetric, reduction, chunk_size)
        if loss is not None:
            return loss
    joined = negatives is not None and in_batch is True
    where = None
    if gather:
        where = global_layout(
            "query",
            query,
            min_total=2,
            check=lambda: _check_arguments(*arguments, *extras),
            gathered=(key, query) if symmetric else (key,),
            why="in-batch negatives need",
            agree={
                "symmetric": int(bool(symmetric)),
                "negatives.dim()": getattr(negatives, "ndim", -1) if joined else 0,
                "log_q": int(log_q is not None),
                "remove_accidental_hits": int(bool(remove_accidental_hits)),
            },
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

    if negatives is None or joined:
        scale = torch.as_tensor(as_scale(temperature, q), dtype=dtype, device=q.device)
        batch = _JointBatch.build(
            q, k, negatives, log_q, key_ids if remove_accidental_hits else None,
            negative_ids if remove_accidental_hits else None, where,
        )  # fmt: skip
        loss = batch.loss(scale, normalize, symmetric, chunk_size)
        bound = _bound(normalize and log_q is None, tau, batch.columns.shape[0])
        return finish(loss, reduction, out_dtype, bound=bound, describe=describe, where=where)

    if normalize:
        q, k = l2_normalize(q), l2_normalize(k)
    q = q * as_scale(temperature, q)
    positive = (q * k).sum(-1)
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


_PASSED = PassedChecks()


def _small_batch(query, key, temperature, symmetric, reduction, chunk_size):
    """In-batch InfoNCE of unit rows as one dense block (see :mod:`._dense_softmax`), or None
    where that path does not apply. The argument checks run once per signature; the values'
    finiteness is read from the loss."""
    tau = _PASSED.pair(
        query, key, temperature, reduction, chunk_size,
        lambda: _check_arguments(
            query, key, None, temperature, symmetric, reduction, chunk_size, False, False,
            None, False, None, None, finite=False,
        ),
    )  # fmt: skip
    if tau is None:
        return None
    n = query.shape[0]
    if not dense_ok(n, chunk_size, tau, query):
        return None
    loss = DensePairedCE.apply(query, key, as_scale(temperature, query), symmetric, reduction)
    check_finite(loss, query=query, key=key)

    def describe() -> str:
        return f"temperature={tau:.6g}, normalize=True, {query.dtype} inputs"

    bound = _bound(True, tau, n)
    return finish(loss, reduction, query.dtype, bound=bound, describe=describe, rows=n)


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
    in_batch,
    log_q,
    remove_accidental_hits,
    key_ids,
    negative_ids,
    *,
    finite: bool = True,
) -> float:
    """Every argument check of :func:`info_nce`; returns the temperature as a float. With
    ``gather`` a rank may hold no rows: the global batch is checked by the caller. Without
    ``finite`` the values of query and key are left for the caller to check."""
    check_reduction(reduction)
    tau = check_temperature(temperature)
    if not isinstance(in_batch, bool):
        raise TypeError(f"in_batch must be True or False, got {in_batch!r}")
    check_tensor("query", query, 2, nonempty=not gather, finite=finite)
    check_tensor("key", key, 2, nonempty=not gather, finite=finite)
    if query.shape != key.shape:
        raise ValueError(f"query has shape {shape_str(query)} but key has {shape_str(key)}")
    check_compatible(query=query, key=key)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    n = query.shape[0]
    joined = negatives is not None and in_batch
    if negatives is not None:
        check_tensor("negatives", negatives, (2, 3), nonempty=not gather)
        check_compatible(query=query, negatives=negatives)
        check_same_size(-1, "dimension", query=query, negatives=negatives)
        if negatives.dim() == 3:
            check_same_size(0, "batch", query=query, negatives=negatives)
        if symmetric and not in_batch:
            raise ValueError(
                "symmetric=True needs in-batch negatives (negatives=None, or in_batch=True)"
            )
        if gather and not in_batch:
            raise ValueError(
                "gather=True gathers the in-batch keys; pass in_batch=True to gather the given "
                "negatives with them (or gather them with nce.distributed.gather_rows)"
            )
    if negatives is None or joined:
        if query.shape[1] == 0:
            raise ValueError(f"query is empty (shape {shape_str(query)})")
        if n < 2 and not gather and not joined:
            raise ValueError(
                "in-batch negatives need a batch of at least 2 (with N = 1 the loss is "
                f"identically 0), got query of shape {shape_str(query)}"
            )
    neg_shape = _negative_shape(n, negatives)
    if log_q is not None:
        if symmetric:
            raise ValueError("log_q corrects sampled keys; it is undefined with symmetric=True")
        if joined:
            if not (isinstance(log_q, (tuple, list)) and len(log_q) == 2):
                got = shape_str(log_q) if isinstance(log_q, torch.Tensor) else type(log_q).__name__
                raise TypeError(
                    "with in_batch=True and negatives, log_q must be a pair (key_log_q of shape "
                    f"({n},), negative_log_q of shape {tuple(neg_shape)}), got " + got
                )
            _check_log_q("log_q[0] (the keys')", log_q[0], torch.Size([n]), query, "key")
            _check_log_q("log_q[1] (the negatives')", log_q[1], neg_shape, query, "negative")
        else:
            _check_log_q("log_q", log_q, neg_shape, query, "negative")
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


def _check_log_q(name, log_q, shape: torch.Size, query, what: str) -> None:
    if not isinstance(log_q, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(log_q).__name__}")
    if log_q.shape != shape:
        raise ValueError(
            f"{name} must have shape {shape_str(shape)} (one per {what}), got {shape_str(log_q)}"
        )
    check_tensor(name, log_q, len(shape), nonempty=False)
    if log_q.device != query.device:
        raise ValueError(f"device mismatch: query is on {query.device} but {name} is on "
                         f"{log_q.device}")  # fmt: skip


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


@dataclass
class _JointBatch:
    """The columns every query of this rank scores on the in-batch paths with ``log_q``, ids or
    ``in_batch`` negatives: the keys of every rank, then the negatives of every rank (flattened,
    query-major), with their log-Q values and ids; this rank's queries and their target columns.
    """

    query: torch.Tensor  # (n, D), this rank's
    key: torch.Tensor  # (n, D), this rank's
    columns: torch.Tensor  # (N + C, D): every rank's keys, then every rank's negatives
    targets: torch.Tensor  # (n,): each query's positive column
    where: Layout | None
    bias: torch.Tensor | None  # (N + C,): -log Q of each column
    key_ids: torch.Tensor | None  # (n,), this rank's
    column_ids: torch.Tensor | None  # (N + C,)
    all_key_ids: torch.Tensor | None  # (N,)

    @staticmethod
    def build(q, k, negatives, log_q, key_ids, negative_ids, where) -> _JointBatch:
        dtype = q.dtype
        keys = _gather(k, where)
        key_lq, neg_lq = (log_q if negatives is not None else (log_q, None)) if log_q is not None \
            else (None, None)  # fmt: skip
        key_lq = None if key_lq is None else _gather(key_lq.to(dtype), where)
        all_key_ids = None if key_ids is None else _gather(key_ids.long(), where)
        neg_ids = None if negative_ids is None else negative_ids.long()
        columns, lq_parts, id_parts = [keys], [key_lq], [all_key_ids]
        if negatives is not None:
            neg_where = where
            if where is not None and where.world_size > 1:
                neg_where = global_layout("negatives", negatives, gathered=(negatives,))
            neg = _gather(negatives.to(dtype), neg_where)
            columns.append(neg.reshape(-1, neg.shape[-1]))
            if neg_lq is not None:
                lq_parts.append(_gather(neg_lq.to(dtype), neg_where).reshape(-1))
            if neg_ids is not None:
                id_parts.append(_gather(neg_ids, neg_where).reshape(-1))
        offset = 0 if where is None else where.offset
        return _JointBatch(
            query=q,
            key=k,
            columns=torch.cat(columns) if len(columns) > 1 else keys,
            targets=torch.arange(q.shape[0], device=q.device) + offset,
            where=where,
            bias=None if key_lq is None else -torch.cat(lq_parts),
            key_ids=None if key_ids is None else key_ids.long(),
            column_ids=None if all_key_ids is None else torch.cat(id_parts),
            all_key_ids=all_key_ids,
        )

    def loss(self, scale, normalize: bool, symmetric: bool, chunk_size: int | None):
        """Per-example loss of this rank's queries, (n,)."""
        rule = ColumnRule(self.bias, self.key_ids, self.column_ids)
        chunk = chunk_size or default_rows(self.columns.shape[0])
        args = (scale, normalize, False, chunk, self.targets)
        loss = PairedSoftmaxCE.apply(self.query, self.columns, *args, rule)
        if symmetric:
            queries = _gather(self.query, self.where)
            back_rule = ColumnRule(None, self.key_ids, self.all_key_ids)
            chunk = chunk_size or default_rows(queries.shape[0])
            args = (scale, normalize, False, chunk, self.targets)
            loss = 0.5 * (loss + PairedSoftmaxCE.apply(self.key, queries, *args, back_rule))
        return loss


def _gather(x: torch.Tensor, where: Layout | None) -> torch.Tensor:
    return x if where is None else gather_rows(x, where)[0]
