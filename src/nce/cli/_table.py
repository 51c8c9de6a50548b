"""Reading a user's numeric table (CSV, or .npy) with errors that name the file, row and column."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nce._validation import first_line


class InputError(ValueError):
    """Bad user input to a command: the CLI prints the message and exits with code 2."""


@dataclass(frozen=True)
class Table:
    """A numeric table: ``values`` (rows, columns) float64 and the column names."""

    path: Path
    columns: list[str]
    values: np.ndarray

    def select(self, names: list[str], option: str) -> np.ndarray:
        """The columns called ``names``; an unknown name raises, naming ``option``."""
        unknown = [n for n in names if n not in self.columns]
        if unknown:
            raise InputError(
                f"{option}: no column {', '.join(repr(n) for n in unknown)} in {self.path} "
                f"(columns: {', '.join(self.columns)})"
            )
        return self.values[:, [self.columns.index(n) for n in names]]


def read_table(path: str | Path) -> Table:
    """Read a CSV (header optional: a first row with any non-number is a header) or a 2-D .npy.

    Every cell must be a finite number written plainly (``1000``, ``1e3``; not Python's ``1_000``);
    rows must all have the same length. Column names default to ``x0, x1, ...`` when there is no
    header.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".npy":
        return _read_npy(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})"
        ) from err
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"{path}: the file has no rows")
    header = None
    if any(not _is_number(cell) for cell in rows[0]):
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
        if len(set(header)) != len(header):
            raise InputError(f"{path}: row 1 (header) repeats a column name")
    if not rows:
        raise InputError(f"{path}: the file has a header but no data rows")
    width = len(header) if header is not None else len(rows[0])
    first_data_row = 2 if header is not None else 1
    values = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        line = i + first_data_row
        if len(row) != width:
            raise InputError(f"{path}: row {line} has {len(row)} cells but the table has {width}")
        for j, cell in enumerate(row):
            name = header[j] if header is not None else f"column {j + 1}"
            try:
                value = _number(cell)
            except ValueError:
                hint = " (write it without the digit separator '_')" if "_" in cell else ""
                raise InputError(
                    f"{path}: row {line}, {name}: {cell.strip()!r} is not a number{hint}"
                ) from None
            if not math.isfinite(value):
                raise InputError(f"{path}: row {line}, {name}: {cell.strip()!r} is not finite")
            values[i, j] = value
    columns = header if header is not None else [f"x{j}" for j in range(width)]
    return Table(path, columns, values)


def _read_npy(path: Path) -> Table:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{path}: not a numeric .npy array ({first_line(err)})") from err
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(
            f"{path}: expected a 2-D numeric array, got shape {array.shape} of {array.dtype}"
        )
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        row, col = bad[0]
        raise InputError(f"{path}: row {row + 1}, column {col + 1} is not finite")
    return Table(path, [f"x{j}" for j in range(array.shape[1])], array.astype(np.float64))


def _number(cell: str) -> float:
    """``float(cell)`` without the digit separators Python accepts (``1_000``): a CSV number with
    an underscore is more likely a typo or a foreign format than a thousand."""
    if "_" in cell:
        raise ValueError(cell)
    return float(cell)


def _is_number(cell: str) -> bool:
    """Whether a header candidate cell reads as a number (``1_000`` does, so that a first data row
    holding one is reported rather than taken for a header)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True
