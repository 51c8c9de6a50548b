r"""Contrastive losses over every rank's batch.

``nce.info_nce(..., gather=True)`` and ``nce.nt_xent(..., gather=True)`` score each rank's
examples against the in-batch keys of all ranks. This module exposes the pieces they use, for
losses of one's own:

* :func:`gather_rows` — all ranks' rows, stacked in rank order; ranks may hold different numbers
  of rows. Its gradient for this rank's rows is the sum of every rank's gradient for them (an
  all-reduce), neither dropping the other ranks' terms nor scaling them by 1/W.
* :func:`reduce_across_ranks` — "mean" as :math:`\frac{W}{N_{global}}\sum_{local}` and "sum" as
  :math:`W\sum_{local}`, so that DDP's averaging of gradients over the W ranks yields exactly the
  gradient of the single-process loss on the global batch.
* :func:`layout` — every rank's row count and this rank's offset.

Scale out with ``torchrun --nproc-per-node=W train.py`` and DDP; see ``examples/ddp_simclr.py``.
Without an initialized process group everything here is the single-process identity.
"""

from nce.functional._gather import Layout, gather_rows, is_initialized, layout, reduce_across_ranks

__all__ = ["Layout", "gather_rows", "is_initialized", "layout", "reduce_across_ranks"]
