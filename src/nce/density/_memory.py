"""Sizes checked before they are allocated: a request that cannot fit in the free memory of its
device is refused with :class:`~nce.density.errors.FitMemoryError`, naming the option to lower,
instead of failing inside the allocator (or being mistaken for a diverging fit)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from nce.density.errors import FitMemoryError


def available_bytes(device: torch.device) -> float | None:
    """Free memory of ``device`` in bytes (CPU: the kernel's MemAvailable), None if unknown."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(
    what: str, rows: int, row_bytes: int, device: torch.device, option: str, value: float
) -> None:
    """Raises :class:`FitMemoryError` when ``rows * row_bytes`` exceed the free memory."""
    needed = float(rows) * row_bytes
    available = available_bytes(device)
    if available is not None and needed > available:
        raise FitMemoryError(what, rows, needed, available, option, value)


@contextlib.contextmanager
def out_of_memory_as(
    what: str, rows: int, row_bytes: int, option: str, value: float
) -> Iterator[None]:
    """Turns an allocator's out-of-memory failure inside the block into :class:`FitMemoryError`."""
    try:
        yield
    except FitMemoryError:
        raise
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, (MemoryError, torch.OutOfMemoryError)) and not any(
            phrase in str(error) for phrase in ("out of memory", "can't allocate memory")
        ):
            raise
        raise FitMemoryError(what, rows, float(rows) * row_bytes, None, option, value) from error
