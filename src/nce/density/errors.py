"""A fit that would not fit in memory: :class:`FitMemoryError` names the option to lower and
its value, so that a command line can name its own flag instead. (A fit that diverges raises
:class:`nce.DivergenceError`.)"""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "FitMemoryError", "NormalizationWarning"]


class FitMemoryError(MemoryError):
    """``what`` needs ``needed`` bytes (``rows`` rows) but ``available`` bytes are free; lower
    ``option`` (now ``value``)."""

    def __init__(
        self,
        what: str,
        rows: int,
        needed: float,
        available: float | None,
        option: str,
        value: float,
    ):
        self.what, self.rows, self.needed, self.available = what, rows, needed, available
        self.option, self.value = option, value
        super().__init__(self.describe())

    def describe(self, option: str | None = None) -> str:
        """The message, naming the option as ``option`` (e.g. a command-line flag)."""
        have = (
            f"{_size(self.available)} is available"
            if self.available is not None
            else "it ran out of memory"
        )
        return (
            f"{self.what} needs {self.rows:.3g} rows ({_size(self.needed)}) but {have}: lower "
            f"{option or self.option} (now {self.value:g})"
        )


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")


class ConvergenceWarning(UserWarning):
    """A fit stopped at its budget (``epochs``) before meeting its convergence criterion, as
    scikit-learn's ``ConvergenceWarning``: the message names the option to change."""


class NormalizationWarning(UserWarning):
    """A fit fails its own normalization check: the learned log Z is far from the
    importance-sampled one, or the importance sample is too unbalanced to check it (a small
    effective sample size). The message gives both numbers and what to change."""
