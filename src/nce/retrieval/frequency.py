r"""Streaming estimate of how often each item id appears in training batches, for the log-Q
correction of the in-batch softmax (Yi et al. 2019, "Sampling-bias-corrected neural modeling for
large corpus item recommendations", RecSys, Algorithm 1).

Each id is hashed into one of H buckets. Bucket h keeps :math:`A_h`, the last step at which it was
seen, and :math:`B_h`, a moving average of the number of steps between its occurrences. On an
occurrence at step t,

.. math:: B_h \leftarrow (1 - \alpha) B_h + \alpha (t - A_h), \qquad A_h \leftarrow t,

so :math:`B_h` tracks the mean gap and :math:`1/B_h` the expected number of occurrences of the item
in one batch. An id seen c times in one batch counts as c occurrences spread evenly over the steps
since it was last seen, each with gap :math:`(t - A_h)/c`: c sequential updates give

.. math:: B_h \leftarrow (1-\alpha)^c B_h + \big(1 - (1-\alpha)^c\big)\,(t - A_h)/c,

which is Yi et al.'s update for c = 1, does not depend on the order of the batch, and has the mean
gap as its fixed point on a stationary stream (an item drawn c times every step gets 1/c). It is
computed for every bucket of the batch at once.

The log-Q correction subtracts :math:`\log Q_j`, the log expected count of item j in the batch,
from item j's logit: ``info_nce(q, k, log_q=estimator.log_q(ids))``.
"""

from __future__ import annotations

import math

import torch

from nce._validation import check_ids, check_int, check_positive


class FrequencyEstimator(torch.nn.Module):
    r"""Expected count of each item id in a batch, estimated from the stream of batches.

    Args:
        num_buckets: H, the size of the hash table. Ids in ``[0, H)`` get a bucket of their own;
            larger ids share (bucket ``id % H``).
        lr: :math:`\alpha \in (0, 1)`, the step size of the moving average of the gaps.
            Smaller values average over more occurrences (less noise, slower to follow a drift).

    Attributes:
        last_step: (H,) :math:`A`, the step at which each bucket was last seen (-1: never).
        gap: (H,) :math:`B`, the estimated steps between occurrences; 0 for buckets never seen.
        first_step, steps, rows: the first step seen, the number of distinct steps and the number
            of ids seen (their ratio is the mean batch size). All five are buffers, saved by
            ``state_dict``.

    A bucket never seen is given the count of an item seen once over the steps so far.

    On an occurrence of bucket h at step t, :math:`B_h \leftarrow (1 - \alpha) B_h + \alpha (t -
    A_h)` and :math:`A_h \leftarrow t` (c occurrences in one batch: the order-free update of the
    module docstring); ``log_q`` is :math:`\log Q_h = -\log B_h`, the log expected count of the
    item in a batch of the mean size.

    Shape:
        - ``update`` ids: (N,) int64; ``log_q`` ids: (N,) -> (N,)

    References:
        Yi et al. 2019, Sampling-bias-corrected neural modeling for large corpus item
        recommendations (RecSys), Algorithm 1.

    Example:
        >>> import torch
        >>> from nce.retrieval.frequency import FrequencyEstimator
        >>> estimator = FrequencyEstimator(1000, lr=0.1)
        >>> for step in range(100):
        ...     estimator.update(torch.tensor([7, 7, 3]), step)
        >>> round(estimator.log_q(torch.tensor([7])).exp().item(), 1)  # seen twice per batch
        2.0
    """

    def __init__(self, num_buckets: int, lr: float = 0.01):
        super().__init__()
        check_int("num_buckets", num_buckets, minimum=1)
        check_positive("lr", lr)
        if lr >= 1:
            raise ValueError(f"lr must be in (0, 1), got {lr}")
        self.num_buckets, self.lr = num_buckets, float(lr)
        self.register_buffer("last_step", torch.full((num_buckets,), -1, dtype=torch.int64))
        self.register_buffer("gap", torch.zeros(num_buckets, dtype=torch.float64))
        self.register_buffer("first_step", torch.tensor(-1, dtype=torch.int64))
        self.register_buffer("latest_step", torch.tensor(-1, dtype=torch.int64))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("rows", torch.tensor(0, dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"num_buckets={self.num_buckets}, lr={self.lr}"

    def _buckets(self, ids) -> torch.Tensor:
        check_ids("ids", ids)
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"ids must be >= 0, got {int(ids.min())}")
        return ids.reshape(-1).to(self.gap.device, torch.int64).remainder(self.num_buckets)

    def update(self, ids: torch.Tensor, step: int) -> None:
        """Record one batch's item ids (any shape) seen at training step ``step``.

        Steps must not decrease; several calls with the same step (e.g. keys, then negatives)
        count as one batch.
        """
        check_int("step", step, minimum=0)
        latest = int(self.latest_step)
        if step < latest:
            raise ValueError(f"step must not decrease: got {step} after {latest}")
        buckets = self._buckets(ids)
        if self.first_step < 0:
            self.first_step.fill_(step)
        if step != latest:
            self.steps += 1
            self.latest_step.fill_(step)
        self.rows += buckets.numel()
        if buckets.numel() == 0:
            return
        unique, count = torch.unique(buckets, return_counts=True)
        seen = self.last_step[unique] >= 0
        # a bucket's first occurrence: the gap since the stream began, counting this step
        since = torch.where(seen, step - self.last_step[unique], step - self.first_step + 1).to(
            torch.float64
        )
        count = count.to(torch.float64)
        keep = (1.0 - self.lr) ** count
        old = torch.where(seen, self.gap[unique], since / count)
        self.gap[unique] = keep * old + (1.0 - keep) * since / count
        self.last_step[unique] = step

    def log_q(self, ids: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        r"""Log expected count of each id in a batch of ``batch_size`` ids (default: the mean
        batch size seen), :math:`\log(b / (B_h \bar b))` with :math:`\bar b` the mean batch size:
        the ``log_q`` of :func:`nce.info_nce`.

        Shape:
            - ids: any; output: the same, float32.
        """
        if int(self.steps) == 0:
            raise ValueError("the estimator has seen no batch yet: call update(ids, step) first")
        mean_batch = int(self.rows) / int(self.steps)
        if batch_size is None:
            scale = 0.0
        else:
            check_int("batch_size", batch_size, minimum=1)
            scale = math.log(batch_size / mean_batch)
        buckets = self._buckets(ids)
        span = float(int(self.latest_step) - int(self.first_step) + 1)
        gap = self.gap[buckets]
        gap = torch.where(self.last_step[buckets] >= 0, gap, torch.full_like(gap, span))
        return (scale - torch.log(gap)).to(torch.float32).reshape(ids.shape).to(ids.device)
