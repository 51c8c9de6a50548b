"""Output files are written whole or not at all: to a temporary name, then renamed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nce._atomic import atomic_write_bytes
from nce.cli._table import InputError


def check_output_path(path, flag: str) -> None:
    """Refuse, before any work, an output path that could not be written: a folder, or a place
    under a file or an unwritable folder. ``flag`` names the option in the message."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag}: {path} is a folder, not a file name")
    _check_creatable(path.parent, flag)


def check_output_folder(path, flag: str) -> None:
    """Refuse, before any work, a folder for outputs that is a file or cannot be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag}: {path} is a file, not a folder")
    _check_creatable(path, flag)


def _check_creatable(folder: Path, flag: str) -> None:
    """``folder`` exists and is writable, or its nearest existing ancestor is a writable folder."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: cannot write into {folder}: {existing} is not a writable folder")


def check_not_an_input(output, inputs, flag: str) -> None:
    """Refuse an output path that would overwrite one of the command's input files."""
    target = Path(output).resolve()
    for source in inputs:
        if source is not None and Path(source).resolve() == target:
            raise InputError(
                f"{flag}: {output} is an input of this command; it would be overwritten"
            )


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_save_figure(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
