"""Argument types shared by the commands: numbers bounded at parse time.

A size flag (``--dim``, ``--width``, ``--max-steps``, ...) with an absurd value would otherwise
reach an allocation or a C integer and end in a traceback; :func:`int_at_most` and
:func:`float_at_most` refuse it while parsing, with argparse's usual one-line error and exit 2.
Lower bounds stay with each command's checks.
"""

from __future__ import annotations

import argparse
import math

from nce.cli._table import InputError

SEED_MAX = 2**32 - 1  # what every random generator the commands use (torch, numpy) accepts


def int_at_most(high: int):
    """An argparse ``type`` for an integer no larger than ``high``.

    Args:
        high: the largest value accepted.
    """
    return _at_most(int, "an integer", high)


def float_at_most(high: float):
    """An argparse ``type`` for a number no larger than ``high`` (NaN refused).

    Args:
        high: the largest value accepted.
    """
    return _at_most(float, "a number", high)


def _at_most(kind, what: str, high):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(value, float) and math.isnan(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if value > high:
            limit = high if isinstance(high, int) else f"{high:g}"
            raise argparse.ArgumentTypeError(f"{text} is too large (at most {limit})")
        return value

    parse.__name__ = what.split()[-1]
    return parse


def refuse_below(*bounds: tuple[str, float, float]) -> None:
    """Each ``(flag, value, low)``: refuse ``value < low``, naming the flag (exit 2)."""
    for flag, value, low in bounds:
        if value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")


def refuse_non_positive(*values: tuple[str, float]) -> None:
    """Each ``(flag, value)``: refuse a value that is not a finite number > 0 (exit 2)."""
    for flag, value in values:
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{flag} must be a finite number > 0, got {value}")
