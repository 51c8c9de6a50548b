"""The commands' output paths: checked together before any work, then written whole or not at all.

Every command calls :func:`check_outputs` once, before its work, with all its output paths and
all its input paths, each under the name of its flag. Writing follows :mod:`nce._atomic`'s policy:
a regular file is replaced atomically, a symlink is followed, and an existing non-regular file
(``/dev/null``, a FIFO, a terminal) is written through, never replaced.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from nce._atomic import atomic_write_bytes
from nce.cli._table import InputError


def check_outputs(
    outputs: Mapping[str, object], inputs: Mapping[str, object] | None = None
) -> None:
    """Refuse, before any work, outputs that cannot or must not be written.

    Each output must be writable (:func:`check_output_path`), must not be one of the inputs, and
    must not be another output. Two paths are the same file when they resolve to the same place
    (symlinks followed, ``./x`` and ``x``) or, where both exist, are the same file on disk (hard
    links). An output that exists and is not a regular file (``/dev/null``, a FIFO) is written
    through and never replaced, so it is not compared.

    Args:
        outputs: flag name -> output path (None: that output is not written).
        inputs: flag name (or argument name) -> input path (None: no such input file).

    Raises:
        InputError: one line naming both flags.
    """
    named = [(flag, Path(path)) for flag, path in outputs.items() if path is not None]
    sources = [(flag, Path(path)) for flag, path in (inputs or {}).items() if path is not None]
    for i, (flag, path) in enumerate(named):
        check_output_path(path, flag)
        if _written_through(path):
            continue
        for source_flag, source in sources:
            if same_file(path, source):
                raise InputError(
                    f"{flag} {path} is the same file as the input {source_flag} {source}; "
                    "it would be overwritten"
                )
        for other_flag, other in named[:i]:
            if same_file(path, other):
                raise InputError(
                    f"{flag} {path} and {other_flag} {other} name the same file; give each "
                    "output its own path"
                )


def check_output_path(path, flag: str) -> None:
    """Refuse, before any work, an output path that could not be written: a folder, a place under
    a file or an unwritable folder, or a non-regular file without write permission. ``flag``
    names the option in the message."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag}: {path} is a folder, not a file name")
    if _written_through(path):
        if not os.access(path, os.W_OK):
            raise InputError(f"{flag}: {path} is not writable")
        return
    _check_creatable(Path(os.path.realpath(path)).parent, flag)


def check_output_folder(path, flag: str) -> None:
    """Refuse, before any work, a folder for outputs that is a file or cannot be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag}: {path} is a file, not a folder")
    _check_creatable(path, flag)


def same_file(a, b) -> bool:
    """True when paths ``a`` and ``b`` name one file (resolved paths, or the same inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _written_through(path: Path) -> bool:
    """An existing file that is not a regular file: written in place, never replaced."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _check_creatable(folder: Path, flag: str) -> None:
    """``folder`` exists and is writable, or its nearest existing ancestor is a writable folder."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: cannot write into {folder}: {existing} is not a writable folder")


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_save_figure(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
