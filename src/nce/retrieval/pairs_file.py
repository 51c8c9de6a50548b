"""Reading ``query<TAB>document`` pairs files, whole or not at all.

Each non-blank line holds one pair: a query, one tab, a document. A UTF-8 byte-order mark and
Windows line ends (CRLF) are accepted; blank lines are skipped. A line without a tab, with more
than one tab, or with an empty (or all-blank) side makes the whole file refused, with the line
numbers of the first few such lines and their count: a file is never half-read.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PairsFileError", "read_pairs"]

_SHOWN = 5


class PairsFileError(ValueError):
    """A pairs file that cannot be used; the one-line message names the file and the lines."""


def read_pairs(path: str | Path, *, minimum: int = 1) -> tuple[list[str], list[str]]:
    """(queries, documents) of a pairs file, in file order.

    Args:
        path: the file.
        minimum: the fewest pairs the caller can use.

    Example:
        >>> import tempfile, os
        >>> f = tempfile.NamedTemporaryFile("wb", suffix=".tsv", delete=False)
        >>> _ = f.write(b"\\xef\\xbb\\xbfhello\\thola\\r\\n\\r\\ngood night\\tbuenas noches\\r\\n")
        >>> f.close(); read_pairs(f.name)
        (['hello', 'good night'], ['hola', 'buenas noches'])
        >>> os.unlink(f.name)
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PairsFileError(f"{path}: not UTF-8 text (byte {err.start})") from err
    queries, documents, bad = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) == 1:
            bad.append((number, "no tab"))
        elif len(parts) > 2:
            bad.append((number, f"{len(parts) - 1} tabs"))
        elif not parts[0].strip():
            bad.append((number, "empty query"))
        elif not parts[1].strip():
            bad.append((number, "empty document"))
        else:
            queries.append(parts[0].strip())
            documents.append(parts[1].strip())
    if bad:
        shown = ", ".join(f"line {n} ({why})" for n, why in bad[:_SHOWN])
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise PairsFileError(
            f"{path}: {len(bad)} malformed line{'s' if len(bad) > 1 else ''}, each must be "
            f"query<TAB>document: {shown}{more}; nothing was read"
        )
    if len(queries) < minimum:
        raise PairsFileError(f"{path}: {len(queries)} pairs, at least {minimum} needed")
    return queries, documents
