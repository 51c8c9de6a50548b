r"""Blocks of rows passed around the ranks in a ring, with point-to-point sends.

Rank :math:`r` sends to :math:`r + 1` and receives from :math:`r - 1` (mod W). After :math:`t`
shifts, rank :math:`r` holds the block owned by rank :math:`r - t`; after W shifts every block is
home again. Each rank holds one block and one in flight at a time, so memory stays flat in W —
unlike an all-gather, whose result holds every rank's rows.

Without an initialized process group nothing here is called (a single rank needs no ring).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from nce.functional._gather import Layout


def owner(where: Layout, shifts: int) -> int:
    """The rank whose block this rank holds after ``shifts`` shifts."""
    return (where.rank - shifts) % where.world_size


class Shift:
    """One shift in flight: ``tensors`` go to the next rank while tensors of the same kinds, with
    ``rows`` rows, arrive from the previous one; :meth:`wait` returns them."""

    def __init__(self, tensors: Sequence[torch.Tensor], rows: int, where: Layout, tag: int = 0):
        world = where.world_size
        to_next, from_previous = (where.rank + 1) % world, (where.rank - 1) % world
        self.received = [t.new_empty((rows, *t.shape[1:])) for t in tensors]
        ops = []
        for index, (out, into) in enumerate(zip(tensors, self.received, strict=True)):
            ops.append(dist.P2POp(dist.isend, out.contiguous(), to_next, tag=tag + index))
            ops.append(dist.P2POp(dist.irecv, into, from_previous, tag=tag + index))
        self.requests = dist.batch_isend_irecv(ops)

    def wait(self) -> list[torch.Tensor]:
        for request in self.requests:
            request.wait()
        return self.received
