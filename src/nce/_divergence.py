"""Divergence is reported as divergence: a training loop whose loss, outputs or weights become NaN
or infinite from finite data raises :class:`DivergenceError`, naming the option to change, instead
of letting a later input check blame the data. Every trainer of the library raises this one error
(``nce.DivergenceError``), and the command line reports it in one line, naming its own flag."""

from __future__ import annotations

__all__ = ["DivergenceError"]


class DivergenceError(FloatingPointError):
    """Training diverged: the loss (or the network's outputs, or its weights) became NaN or
    infinite.

    Args:
        what: what was being trained ("contrastive training", "the fit").
        epoch: the epoch (from 1) in which it happened.
        detail: what became NaN or infinite.
        option: the option to lower, as the library names it ("lr"), or None.
        value: its current value.
        kept: what was kept on disk ("model.pt keeps epoch 3, the last good one"), if anything.
        also: another cure to suggest ("standardize X").

    Example:
        >>> err = DivergenceError("training", 3, option="lr", value=10.0)
        >>> str(err)
        'training diverged in epoch 3: the loss became NaN or infinite; lower lr (now 10)'
        >>> err.describe("--lr")
        'training diverged in epoch 3: the loss became NaN or infinite; lower --lr (now 10)'
    """

    def __init__(
        self,
        what: str,
        epoch: int,
        *,
        detail: str = "the loss became NaN or infinite",
        option: str | None = None,
        value: float | None = None,
        kept: str | None = None,
        also: str | None = None,
    ):
        self.what, self.epoch, self.detail = what, epoch, detail
        self.option, self.value, self.kept, self.also = option, value, kept, also
        super().__init__(self.describe())

    def describe(self, option: str | None = None) -> str:
        """The message, naming the option as the caller spells it (a command-line flag, say)."""
        parts = [f"{self.what} diverged in epoch {self.epoch}: {self.detail}"]
        if self.kept:
            parts.append(self.kept)
        advice = None
        if self.option is not None:
            advice = f"lower {option or self.option} (now {self.value:g})"
        if self.also:
            advice = f"{advice} or {self.also}" if advice else self.also
        if advice:
            parts.append(advice)
        return "; ".join(parts)
