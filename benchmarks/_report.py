"""Shared by the benchmarks: the measuring commit, and writing a section of BENCHMARKS.md."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """Short hash of HEAD, ``+dirty`` when tracked files other than the results have uncommitted
    changes (BENCHMARKS.md and benchmarks/results/ are what the benchmarks write)."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!BENCHMARKS.md",
        ":!benchmarks/results",
    )
    return head + ("+dirty" if dirty else "")


def machine() -> str:
    threads = torch.get_num_threads()
    return (
        f"{platform.machine()}, {threads} thread{'' if threads == 1 else 's'}, "
        f"torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def write_section(name: str, body: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
