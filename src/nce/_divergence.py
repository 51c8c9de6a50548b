"""Divergence is reported as divergence: a training loop whose loss, outputs or weights become NaN
or infinite from finite data raises :class:`DivergenceError`, naming the option to change, instead
of letting a later input check blame the data."""

from __future__ import annotations

__all__ = ["DivergenceError"]


class DivergenceError(FloatingPointError):
    """Training diverged: the loss (or the network's outputs, or its weights) became NaN or
    infinite.

    Args:
        what: what was being trained ("contrastive training").
        epoch: the epoch (from 1) in which it happened.
        option: the option to lower, as the library names it ("lr").
        value: its current value.

    Example:
        >>> err = DivergenceError("training", 3, "lr", 10.0)
        >>> str(err)
        'training diverged in epoch 3: the loss became NaN or infinite; lower lr (now 10)'
        >>> err.describe("--lr")
        'training diverged in epoch 3: the loss became NaN or infinite; lower --lr (now 10)'
    """

    def __init__(self, what: str, epoch: int, option: str, value: float):
        self.what, self.epoch, self.option, self.value = what, epoch, option, value
        super().__init__(self.describe(option))

    def describe(self, option: str) -> str:
        """The message, naming the option as the caller spells it (a command-line flag, say)."""
        return (
            f"{self.what} diverged in epoch {self.epoch}: the loss became NaN or infinite; "
            f"lower {option} (now {self.value:g})"
        )
