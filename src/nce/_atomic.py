"""Output files written whole or not at all, with one policy for every kind of output path.

* A regular file (or a new name) is written to a temporary file beside it, then renamed onto it:
  a reader never sees a partial file, and an interrupted write leaves the old file (or none).
* A symbolic link is followed: the temporary file is made beside the link's final target and
  renamed onto the target, so the link stays a link and the file it names gets the new content.
* An existing file that is not a regular file (a character device such as ``/dev/null``, a FIFO,
  a terminal, ``/dev/stdout`` on a pipe) is opened for writing and written through, like a shell
  redirection; it is never replaced. A FIFO waits for its reader. A path naming this process's
  own standard output or error (``/dev/stdout`` redirected to a file) is written to that stream.

The temporary file is named ``.NAME.PID@HOST.RANDOM.nce-partial`` (NAME cut to 100 characters):
a write killed before its rename leaves such a file behind, recognisable by its suffix and by the
process id of its writer. The next write to the same path removes the leftovers whose writer, on
this host, is no longer alive.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import socket
import stat
import sys
from pathlib import Path

PARTIAL_SUFFIX = ".nce-partial"
_NAME_LIMIT = 100  # keeps ".NAME.PID@HOST.RANDOM.nce-partial" below a file system's 255 bytes


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` by the policy above, creating missing folders.

    A new or replaced regular file gets the usual mode (0666 less the umask), not the 0600 of a
    temporary file.

    Args:
        path: the output path; a symlink is followed, a non-regular file is written through.
        data: the whole content.
    """
    path = Path(path)
    existing = _stat(path)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        _write_through(path, existing, data)
        return
    if existing is not None and _standard_stream(existing) is not None:
        _write_through(path, existing, data)
        return
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    fd, tmp = _create_partial(target)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def partial_name(target: Path, pid: int | None = None) -> str:
    """The name of a temporary file for ``target`` written by process ``pid`` (default: this)."""
    pid = os.getpid() if pid is None else pid
    return f".{target.name[:_NAME_LIMIT]}.{pid}@{_host()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the temporary files left beside ``target`` by writers of this host that are gone.

    Returns the removed paths. Leftovers of live processes, of other hosts, and files that do not
    follow the temporary-name pattern are left alone.
    """
    pattern = re.compile(
        re.escape(f".{target.name[:_NAME_LIMIT]}.")
        + r"(\d+)@"
        + re.escape(_host())
        + r"\.[0-9a-f]+"
        + re.escape(PARTIAL_SUFFIX)
    )
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    removed = []
    for name in names:
        match = pattern.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            leftover = target.parent / name
            try:
                leftover.unlink()
            except OSError:
                continue
            removed.append(leftover)
    return removed


def _create_partial(target: Path) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = target.parent / partial_name(target)
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue


def _write_through(path: Path, existing: os.stat_result, data: bytes) -> None:
    """Write into an existing non-regular file (or this process's stdout/stderr) in place."""
    if stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(f"{path} is a folder, not a file")
    stream = _standard_stream(existing)
    if stream is not None:
        stream.flush()
        stream.buffer.write(data)
        stream.flush()
        return
    with open(path, "wb") as f:
        f.write(data)


def _standard_stream(existing: os.stat_result):
    """``sys.stdout`` or ``sys.stderr`` when ``existing`` is the file behind it, else None."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if os.path.samestat(existing, os.fstat(stream.fileno())) and hasattr(stream, "buffer"):
                return stream
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            continue
    return None


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OverflowError:
        return False
    return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
