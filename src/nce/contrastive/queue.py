r"""A first-in first-out queue of negative keys (MoCo, He et al. 2020, arXiv:1911.05722).

InfoNCE wants many negatives, but in-batch negatives tie their number to the batch size. MoCo
decouples the two: the keys of the last :math:`M / N` batches, encoded by a slowly moving momentum
encoder, wait in a queue of size :math:`M` and serve as negatives for the current queries. Each
step the loss is computed against the queue *first*, then the current batch's keys are enqueued,
overwriting the oldest ones; a query therefore never meets its own positive key among the
negatives.

The queue also stores an integer id per key (the sample's index in the data set), so a later view
of the same sample that is still waiting in the queue can be masked out of the negatives
(``info_nce(..., remove_accidental_hits=True, key_ids=..., negative_ids=queue.ids)``).

Its whole state — keys, ids, write pointer and fill count — lives in buffers, so it is saved and
restored with the trainer's ``state_dict``.
"""

from __future__ import annotations

import torch
from torch import nn

from nce._validation import check_int, check_tensor, shape_str

__all__ = ["KeyQueue"]


class KeyQueue(nn.Module):
    r"""Ring buffer of the M most recent keys and their sample ids.

    ``enqueue(keys, ids)`` writes at the pointer and advances it modulo M; ``keys`` and ``ids``
    return the filled part in insertion order, oldest first.

    Args:
        size: M, the number of keys held.
        dim: D, the key dimension.

    Shape:
        - enqueue: keys (N, D), ids (N,), N <= M
        - ``keys``: (min(filled, M), D); ``ids``: (min(filled, M),)

    Example:
        >>> q = KeyQueue(size=4, dim=2)
        >>> q.enqueue(torch.ones(3, 2), torch.tensor([0, 1, 2]))
        >>> q.enqueue(torch.zeros(2, 2), torch.tensor([3, 4]))
        >>> q.ids.tolist()
        [1, 2, 3, 4]
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.size = check_int("size", size, minimum=1)
        self.dim = check_int("dim", dim, minimum=1)
        self.register_buffer("buffer", torch.zeros(size, dim))
        self.register_buffer("id_buffer", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.filled)

    @property
    def is_full(self) -> bool:
        """Whether the queue holds ``size`` keys."""
        return int(self.filled) == self.size

    def _order(self) -> torch.Tensor:
        n = len(self)
        if n < self.size:
            return torch.arange(n, device=self.buffer.device)
        return (torch.arange(self.size, device=self.buffer.device) + int(self.pointer)) % self.size

    @property
    def keys(self) -> torch.Tensor:
        """The queued keys, oldest first, shape (min(filled, M), D)."""
        return self.buffer[self._order()]

    @property
    def ids(self) -> torch.Tensor:
        """The queued keys' sample ids, oldest first, shape (min(filled, M),)."""
        return self.id_buffer[self._order()]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Write ``keys`` (N, D) and their ``ids`` (N,) over the oldest entries."""
        check_tensor("keys", keys, 2)
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (N, {self.dim}), got {shape_str(keys)}")
        n = keys.shape[0]
        if n > self.size:
            raise ValueError(f"cannot enqueue {n} keys into a queue of size {self.size}")
        if not isinstance(ids, torch.Tensor) or ids.shape != (n,):
            got = shape_str(ids) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must have shape ({n},) to match keys, got {got}")
        slots = (int(self.pointer) + torch.arange(n, device=self.buffer.device)) % self.size
        self.buffer[slots] = keys.detach().to(self.buffer.dtype)
        self.id_buffer[slots] = ids.to(self.id_buffer.device, torch.long)
        self.pointer.fill_((int(self.pointer) + n) % self.size)
        self.filled.fill_(min(int(self.filled) + n, self.size))
