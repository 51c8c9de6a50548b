r"""Contrastive batches beyond memory: cached embedding gradients (GradCache, Gao et al. 2021,
arXiv:2101.06983).

An in-batch contrastive loss couples every example of the batch, so the batch cannot simply be
split into accumulated sub-batches. But the loss depends on the encoder only through the
embeddings :math:`z = f_\theta(x)`, and

.. math:: \nabla_\theta L = \sum_i \Big(\frac{\partial L}{\partial z_i}\Big)^{\!\top}
          \frac{\partial z_i}{\partial \theta}.

So: (1) embed the batch in sub-batches without autograd graphs; (2) compute the loss on all the
embeddings and its gradient :math:`\partial L/\partial z` — cheap, the encoder is not in this
graph; (3) re-embed each sub-batch with its graph and backpropagate its slice of
:math:`\partial L/\partial z`. Peak memory is one sub-batch's activations plus the embeddings. The
random state is replayed in (3), so dropout draws the same masks as in (1).

The losses' own ``chunk_size=`` bounds the memory of the similarity matrix; this bounds the
memory of the encoder's activations. They combine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from nce._validation import check_int


class _RandomState:
    """The CPU generator's state and, once CUDA is in use, every CUDA generator's."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


class _Buffers:
    """A copy of the buffers of the encoders that are modules, to put back later."""

    def __init__(self, encoders):
        modules = {id(e): e for e in encoders if isinstance(e, torch.nn.Module)}.values()
        self.saved = [(b, b.detach().clone()) for m in modules for b in m.buffers()]

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, copy in self.saved:
                buffer.copy_(copy)


def grad_cache(
    loss_fn: Callable[..., torch.Tensor],
    encoders: Sequence[tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]],
    *,
    sub_batch_size: int,
) -> torch.Tensor:
    r"""Backpropagate ``loss_fn`` over a whole batch, holding one sub-batch's activations at a time.

    The gradient is assembled from the embeddings' gradients, sub-batch by sub-batch:

    .. math:: \nabla_\theta L = \sum_i \Big(\frac{\partial L}{\partial z_i}\Big)^{\!\top}
              \frac{\partial z_i}{\partial \theta}.

    Args:
        loss_fn: takes one embedding tensor per ``encoders`` entry, returns a scalar loss
            (e.g. ``lambda z1, z2: nce.nt_xent(z1, z2)``).
        encoders: ``(encoder, inputs)`` pairs; an encoder may appear in several pairs (two views
            through one network). Inputs are split along dimension 0.
        sub_batch_size: rows embedded at once.

    Returns:
        The loss, detached. Parameter gradients are accumulated in ``.grad`` as by
        ``loss.backward()`` on the full batch.

    Shape:
        - inputs: (N, ...) per pair; embeddings: (N, D)

    References:
        Gao et al. 2021, Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup
        (GradCache), arXiv:2101.06983.

    Example:
        >>> import torch, nce
        >>> from nce.chunked import grad_cache
        >>> net = torch.nn.Linear(8, 4)
        >>> x1, x2 = torch.randn(32, 8), torch.randn(32, 8)
        >>> loss = grad_cache(lambda a, b: nce.nt_xent(a, b), [(net, x1), (net, x2)],
        ...                   sub_batch_size=8)
        >>> net.weight.grad.shape
        torch.Size([4, 8])
    """
    check_int("sub_batch_size", sub_batch_size, minimum=1)
    if not encoders:
        raise ValueError("encoders is empty: give at least one (encoder, inputs) pair")
    for index, pair in enumerate(encoders):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and callable(pair[0])):
            raise TypeError(f"encoders[{index}] must be an (encoder, inputs) pair")
        if not isinstance(pair[1], torch.Tensor) or pair[1].dim() == 0 or len(pair[1]) == 0:
            raise ValueError(f"encoders[{index}] inputs must be a non-empty batch tensor")

    # (1) embed without graphs, remembering the random state before each sub-batch; buffers
    # (batch-norm running statistics) are put back afterwards, so that only pass (3) updates them
    buffers = _Buffers(encoder for encoder, _ in encoders)
    states, embeddings = [], []
    with torch.no_grad():
        for encoder, inputs in encoders:
            parts = []
            for chunk in inputs.split(sub_batch_size):
                states.append(_RandomState())
                parts.append(encoder(chunk))
            embeddings.append(torch.cat(parts).detach().requires_grad_())
    buffers.restore()
    # (2) the loss and its gradient with respect to the embeddings
    loss = loss_fn(*embeddings)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor")
    loss.backward()
    after = _RandomState()
    # (3) re-embed each sub-batch with its graph, replaying its random state. Inputs computed by
    # an upstream graph are cut from it per chunk; their gradient goes up once, whole.
    replay = iter(states)
    for (encoder, inputs), cached in zip(encoders, embeddings, strict=True):
        chunks = [
            c.detach().requires_grad_(inputs.requires_grad) for c in inputs.split(sub_batch_size)
        ]
        grads = [None] * len(chunks) if cached.grad is None else cached.grad.split(sub_batch_size)
        for chunk, grad in zip(chunks, grads, strict=True):
            state = next(replay)
            if grad is None:  # loss_fn did not use these embeddings
                continue
            state.restore()
            out = encoder(chunk)
            if out.requires_grad:
                out.backward(grad)
        if inputs.requires_grad and all(c.grad is not None for c in chunks):
            inputs.backward(torch.cat([c.grad for c in chunks]))
    after.restore()
    return loss.detach()
