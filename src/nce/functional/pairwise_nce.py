r"""Pairwise NCE: SigLIP's sigmoid loss (Zhai et al., 2023, arXiv:2303.15343).

Binary NCE (Gutmann & Hyvärinen, 2012) applied to every pair of a batch: each of the N² pairs
:math:`(q_i, k_j)` is classified on its own as matched (:math:`z_{ij} = +1`) or not
(:math:`z_{ij} = -1`) by the logistic regression on the score
:math:`s_{ij} = q_i \cdot k_j/\tau + b`:

.. math:: \mathcal L = -\frac1N \sum_{i,j} \log \sigma(z_{ij} s_{ij}).

In binary NCE the logit is :math:`\log p_m - \log Z - \log \nu - \log p_n`. Here the learned
similarity plays :math:`\log p_m/p_n` and the bias :math:`b` plays :math:`-\log Z - \log \nu`: the
prior log-odds that a pair is positive. With one positive among N keys per query, an
uninformative score gives the best :math:`b = -\log(N - 1)`. Unlike InfoNCE, no row is normalized
over the batch, so no term couples the pairs: each rank can score its queries against other ranks'
keys one block at a time, in any order (see ``gather``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from nce._validation import (
    check_compatible,
    check_ids,
    check_int,
    check_reduction,
    check_tensor,
    shape_str,
)
from nce.functional._common import (
    as_scale,
    check_temperature,
    compute_dtype,
    finish,
    first_order_only,
)
from nce.functional._gather import Layout, exchange_device, global_layout
from nce.functional._ring import Shift, owner
from nce.functional._sigmoid_tiles import KeyBlock, block_grad, block_loss
from nce.functional._tiled_softmax import _UnitRows, default_rows


def pairwise_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.1,
    bias: float | torch.Tensor = -10.0,
    labels: torch.Tensor | None = None,
    normalize: bool = True,
    reduction: str = "mean",
    chunk_size: int | None = None,
    gather: bool = False,
) -> torch.Tensor:
    r"""SigLIP's pairwise sigmoid loss over every query–key pair of the batch.

    .. math:: \ell_i = -\sum_{j=1}^{N} \log\sigma\big(z_{ij}\,(q_i \cdot k_j/\tau + b)\big),
              \qquad \text{mean} = \frac1N \sum_i \ell_i,

    with :math:`z_{ij} = +1` for positive pairs — the diagonal (query i's positive is key i), or,
    given ``labels``, every pair with equal labels — and :math:`-1` otherwise. "mean" divides the
    sum over the N² pairs by N, as the paper does (not by N²).

    Args:
        query: queries (e.g. image embeddings).
        key: their positive keys (e.g. text embeddings), row i paired with query row i.
        temperature: :math:`\tau > 0`, a number or a scalar tensor (e.g. learned).
        bias: :math:`b`, a finite number or a scalar tensor (e.g. learned); the prior log-odds of
            a positive pair. The paper starts at -10 with :math:`\tau = 0.1`.
        labels: integer label of each pair (N,): query i and key j are positive when
            ``labels[i] == labels[j]`` (several positives per row). Default: the diagonal.
        normalize: L2-normalize the embeddings first (cosine similarity); zero vectors stay finite.
        reduction: "mean" (sum over pairs / N) | "sum" | "none" (each query's row sum, (N,)).
        chunk_size: key columns per tile: memory O(N·D + N·chunk_size), the (N, N) matrix is
            never held, in the forward or the backward pass. Changes memory, never the result.
            Default: a tile of at most about 2M values.
        gather: score this rank's queries against the keys of every rank of the
            torch.distributed process group (ranks may hold different N; ``labels`` travel with
            their keys). The keys go around the ranks in a ring, one block at a time, in the
            forward and again in the backward pass, where each block's gradient travels with it
            back to its owner: memory per rank stays flat in the world size W. As for
            :func:`nce.info_nce`, "mean" and "sum" are scaled by W — each rank returns
            :math:`\frac{W}{N_{global}}\sum_{i\,local}\ell_i` — so that DDP's gradient averaging
            gives exactly the gradient of the single-process loss on the global batch. Without an
            initialized process group it is the plain local loss.

    Shape:
        - query, key: (N, D)
        - labels: (N,)
        - output: () or (N,) for reduction="none"

    Computed by a custom autograd function: first-order gradients only.

    References:
        Zhai et al. 2023, Sigmoid Loss for Language Image Pre-Training, arXiv:2303.15343.

    Example:
        >>> import torch, nce
        >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
        >>> nce.pairwise_nce(q, k, temperature=0.1, bias=-10.0).shape
        torch.Size([])
    """
    arguments = (query, key, temperature, bias, labels, reduction, chunk_size, gather)
    if gather:
        where = global_layout(
            "query",
            query,
            min_total=1,
            check=lambda: _check_arguments(*arguments),
            gathered=(key,),
            why="the pairwise loss needs",
        )
        where = _check_labels_everywhere(labels, query, where)
    else:
        _check_arguments(*arguments)
        where = None

    out_dtype = query.dtype
    dtype = compute_dtype(query)
    q, k = query.to(dtype), key.to(dtype)
    scale = torch.as_tensor(as_scale(temperature, q), dtype=dtype, device=q.device)
    b = (
        bias.to(dtype=dtype, device=q.device).reshape(())
        if isinstance(bias, torch.Tensor)
        else torch.tensor(float(bias), dtype=dtype, device=q.device)
    )
    labels = None if labels is None else labels.to(torch.int64)
    loss = PairwiseSigmoid.apply(q, k, scale, b, labels, normalize, chunk_size, where)
    columns = query.shape[0] if where is None else where.total
    bound = None
    if normalize:
        # every pair's term is softplus(±s) <= |s| + log 2 with |s| <= scale + |b| for unit rows
        bound = columns * (float(scale.detach().abs()) + float(b.detach().abs()) + 1.0)

    def describe() -> str:
        return (
            f"temperature={float(1 / scale.detach()):.3g}, bias={float(b.detach()):.3g}, "
            f"normalize={normalize}, reduction={reduction!r}, N={columns}, {out_dtype}"
        )

    return finish(loss, reduction, out_dtype, bound=bound, describe=describe, where=where)


def _check_arguments(query, key, temperature, bias, labels, reduction, chunk_size, gather) -> None:
    check_reduction(reduction)
    check_temperature(temperature)
    _check_bias(bias)
    # with gather=True a rank may hold no rows; the global batch is checked across ranks
    check_tensor("query", query, 2, nonempty=not gather)
    check_tensor("key", key, 2, nonempty=not gather)
    if query.shape != key.shape:
        raise ValueError(f"query has shape {shape_str(query)} but key has {shape_str(key)}")
    check_compatible(query=query, key=key)
    n = query.shape[0]
    if labels is not None:
        check_ids("labels", labels, shape=torch.Size([n]))
        if labels.device != query.device:
            raise ValueError(
                f"device mismatch: query is on {query.device} but labels is on {labels.device}"
            )
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)


def _check_bias(bias) -> None:
    """A finite number, or a scalar tensor (possibly learnable) with a finite value."""
    if isinstance(bias, torch.Tensor):
        if bias.numel() != 1:
            raise ValueError(f"bias must be a scalar, got shape {shape_str(bias)}")
        if not bias.is_floating_point():
            raise TypeError(f"bias must have a floating dtype, got {bias.dtype}")
        value = float(bias.detach())
    elif isinstance(bias, (int, float)) and not isinstance(bias, bool):
        value = float(bias)
    else:
        raise TypeError(f"bias must be a number or a scalar tensor, got {type(bias).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"bias must be a finite number, got {value}")


def _check_labels_everywhere(labels, query, where: Layout) -> Layout | None:
    """After :func:`~nce.functional._gather.global_layout` has checked sizes, feature shapes and
    dtypes on every rank, check that ``labels`` travel from every rank or from none (a ring with
    labels on some ranks only would wait forever). None for a single rank."""
    if where.world_size == 1:
        return None
    mine = torch.tensor([labels is not None], dtype=torch.int64, device=exchange_device(query))
    parts = [torch.empty_like(mine) for _ in range(where.world_size)]
    dist.all_gather(parts, mine)
    given = [bool(p) for p in parts]
    if len(set(given)) > 1:
        shown = ["labels" if flag else "None" for flag in given]
        raise ValueError(f"gather=True: labels must be given on every rank or none, got {shown}")
    return where


class PairwiseSigmoid(torch.autograd.Function):
    r"""Each query's pairwise sigmoid loss against every key: returns (n,).

    ``apply(query, key, scale, bias, labels, normalize, chunk_size, where)``: with
    :math:`\hat Q, \hat K` the (optionally) unit rows, :math:`S = s\hat Q\hat K^\top + b` and
    :math:`\ell_i = \sum_j \operatorname{softplus}(-z_{ij} S_{ij})`. With a :class:`Layout`
    ``where`` of several ranks, the keys (and labels) of every rank go around the ring. The
    gradient flows to query, key, the scale and the bias (0-dim tensors).
    """

    @staticmethod
    def forward(ctx, query, key, scale, bias, labels, normalize, chunk_size, where):
        q, k = _UnitRows(query, normalize), _UnitRows(key, normalize)
        a = q.unit * scale
        chunk = chunk_size or default_rows(a.shape[0])
        ctx.q, ctx.k, ctx.labels, ctx.chunk, ctx.where = q, k, labels, chunk, where
        # The backward reads key (and, unnormalized, query) as given: saving them makes autograd
        # refuse a backward after an in-place change to either.
        if where is not None:
            ctx.save_for_backward(a, scale, bias, query, key)
            return _ring_loss(a, k.unit, bias, labels, chunk, where)
        block = KeyBlock(k.unit, labels, diagonal=True)
        if not any(ctx.needs_input_grad[:4]):
            return block_loss(a, block, bias, labels, chunk)
        # The gradient of the unit-weighted loss comes from the same sweep as the loss.
        da = torch.zeros_like(a)
        ones = a.new_ones(a.shape[0])
        db, d_bias, loss = block_grad(a, block, bias, labels, chunk, ones, da, with_loss=True)
        ctx.save_for_backward(a, scale, bias, query, key, da, db, d_bias)
        return loss

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        g = g.contiguous()
        q, k, labels, chunk, where = ctx.q, ctx.k, ctx.labels, ctx.chunk, ctx.where
        if where is not None:
            a, scale, bias, _, _ = ctx.saved_tensors
            da, db, d_bias = _ring_grad(a, k.unit, bias, labels, chunk, where, g)
        else:
            a, scale, bias, _, _, da, db, d_bias = ctx.saved_tensors
            if bool((g == g[0]).all()):
                da, db, d_bias = da * g[0], db * g[0], d_bias * g[0]
            else:
                da = torch.zeros_like(a)
                block = KeyBlock(k.unit, labels, diagonal=True)
                db, d_bias, _ = block_grad(a, block, bias, labels, chunk, g, da)
        # da is dℓ/dA for A = s·Q̂: dℓ/ds = <da, Q̂>, dℓ/dQ̂ = s·da.
        d_scale = None
        if ctx.needs_input_grad[2]:
            d_scale = torch.dot(da.reshape(-1), q.unit.reshape(-1)).reshape(scale.shape)
        d_query = q.backward(da.mul_(scale)) if ctx.needs_input_grad[0] else None
        d_key = k.backward(db) if ctx.needs_input_grad[1] else None
        d_bias = d_bias.reshape(bias.shape) if ctx.needs_input_grad[3] else None
        return d_query, d_key, d_scale, d_bias, None, None, None, None


def _travelling(keys, labels) -> list[torch.Tensor]:
    return [keys] if labels is None else [keys, labels]


def _arrived(received, labels) -> tuple[torch.Tensor, torch.Tensor | None]:
    return received[0], (None if labels is None else received[1])


def _ring_loss(a, keys, bias, labels, chunk, where: Layout) -> torch.Tensor:
    """This rank's queries against every rank's keys, one block in hand and the next in flight."""
    loss = a.new_zeros(a.shape[0])
    block_keys, block_labels = keys, labels
    for shift in range(where.world_size):
        pending = None
        if shift + 1 < where.world_size:
            rows = where.sizes[owner(where, shift + 1)]
            pending = Shift(_travelling(block_keys, block_labels), rows, where)
        block = KeyBlock(block_keys, block_labels, diagonal=shift == 0)
        loss += block_loss(a, block, bias, labels, chunk)
        if pending is not None:
            block_keys, block_labels = _arrived(pending.wait(), labels)
    return loss


def _ring_grad(a, keys, bias, labels, chunk, where: Layout, g):
    r"""Gradients of :math:`\sum_{i\,local} g_i\ell_i` for this rank's queries, the bias, and —
    gathered from every rank — this rank's keys.

    The keys go around the ring again, each block followed by its gradient accumulator: every rank
    adds its queries' contribution :math:`G^\top A` to the block it holds and passes both on; after
    W shifts the accumulator is home holding the sum over all ranks.
    """
    world = where.world_size
    da = torch.zeros_like(a)
    d_bias = a.new_zeros(())
    block_keys, block_labels = keys, labels
    accumulated = None
    for shift in range(world):
        pending = None
        if shift + 1 < world:
            rows = where.sizes[owner(where, shift + 1)]
            pending = Shift(_travelling(block_keys, block_labels), rows, where)
        block = KeyBlock(block_keys, block_labels, diagonal=shift == 0)
        db, d_bias_block, _ = block_grad(a, block, bias, labels, chunk, g, da)
        d_bias += d_bias_block
        if accumulated is not None:
            db += accumulated.wait()[0]
        # Pass this block's gradient on; after the last shift it reaches the block's owner.
        accumulated = Shift([db], where.sizes[owner(where, shift + 1)], where, tag=2)
        if pending is not None:
            block_keys, block_labels = _arrived(pending.wait(), labels)
    return da, accumulated.wait()[0], d_bias
