"""One policy for every output path: regular files replaced atomically, symlinks followed,
devices and FIFOs written through (never replaced), leftovers of killed writers cleaned."""

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nce._atomic import PARTIAL_SUFFIX, atomic_write_bytes, partial_name


def _names(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.json"
    target.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["link.json", "real"]
    assert _names(tmp_path / "real") == ["out.json"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.pt"
    link.symlink_to(tmp_path / "made" / "model.pt")
    atomic_write_bytes(link, b"data")
    assert link.is_symlink()
    assert (tmp_path / "made" / "model.pt").read_bytes() == b"data"


def test_a_fifo_is_written_through_to_its_reader(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic_write_bytes(fifo, b"through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _names(tmp_path) == ["pipe"]


def _null_device(folder):
    """A character device like /dev/null, made in ``folder`` (root only)."""
    node = folder / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("cannot make a device node here (not root)")
    return node


def test_a_character_device_is_written_through_never_replaced(tmp_path):
    node = _null_device(tmp_path)
    atomic_write_bytes(node, b"discarded")
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert _names(tmp_path) == ["null"]
    link = tmp_path / "to-null"
    link.symlink_to(node)
    atomic_write_bytes(link, b"discarded")
    assert link.is_symlink() and stat.S_ISCHR(os.lstat(node).st_mode)


@pytest.mark.skipif(os.geteuid() == 0, reason="as root a broken policy would replace /dev/null")
def test_dev_null_is_written_through():
    atomic_write_bytes("/dev/null", b"discarded")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_killed_write_leaves_a_recognisable_leftover_that_the_next_write_removes(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    # A writer that dies between writing its temporary file and renaming it onto the target.
    code = (
        "import os, sys\n"
        "from nce import _atomic\n"
        "os.fsync = lambda fd: os._exit(9)\n"
        "_atomic.atomic_write_bytes(sys.argv[1], b'half')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", code, str(target)], env=env)
    assert child.wait(timeout=120) == 9
    leftovers = [n for n in _names(tmp_path) if n != "model.pt"]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(f".model.pt.{child.pid}@")
    assert leftovers[0].endswith(PARTIAL_SUFFIX)
    assert target.read_bytes() == b"old"
    live = tmp_path / partial_name(target)  # this process's own temporary file: alive
    live.write_bytes(b"in progress")
    foreign = tmp_path / ".model.pt.abcd1234.tmp"  # not our pattern: never touched
    foreign.write_bytes(b"someone else's")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == sorted([foreign.name, live.name, "model.pt"])


def test_leftover_names_carry_the_writers_pid(tmp_path):
    name = partial_name(tmp_path / "out.json", pid=12345)
    assert name.startswith(".out.json.12345@") and name.endswith(PARTIAL_SUFFIX)
    assert len(partial_name(tmp_path / ("x" * 250))) < 255


def test_a_regular_file_is_replaced_with_the_usual_mode(tmp_path):
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    atomic_write_bytes(target, b"new")
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~mask
    assert _names(tmp_path) == ["out.csv"]
