r"""Verse-aligned English–Spanish pairs from two public-domain Bibles, for retrieval.

The King James Version (1769 text) and the Reina-Valera 1909 share their versification almost
verse for verse, so a verse reference — book, chapter, verse — pairs an English sentence with its
Spanish translation: ~31,000 pairs of real parallel text, shipped as package data
(``nce/data/bible_en_es.tsv.gz``, built by ``tools/build_bible_pairs.py`` from Debian's SWORD
modules with :func:`parse_verses`).

Two properties matter for retrieval:

* **Held-out by chapter.** Neighbouring verses share names and phrasing, so a split by verse would
  leak; :func:`split_by_chapter` holds out whole chapters (the same chapters for both languages).
* **Real false negatives.** Some verses repeat word for word (Kings and Chronicles, the Psalms,
  the Gospels): in a batch, another pair with the same English text is not a true negative.
  :func:`repeated_verses` counts them.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

import torch

from nce._random import as_generator
from nce._validation import check_in_range

__all__ = ["BiblePairs", "load_bible_pairs", "parse_verses", "repeated_verses", "split_by_chapter"]

_VERSE = re.compile(r"^(?P<book>\S.*?) (?P<chapter>\d+):(?P<verse>\d+):(?: (?P<text>.*))?$")
_STRONGS = re.compile(r"\s*<[GH]\d+[a-z]?>")
_FOOTER = re.compile(r"^\([A-Za-z0-9_]+\)$")

Reference = tuple[str, int, int]


def parse_verses(lines: Iterable[str]) -> dict[Reference, str]:
    """Verses from ``diatheke -f plain`` output.

    Each verse starts on a line ``Book C:V: text``. Further lines continue the current verse
    (blank ones, or text that goes on), except a heading: a line directly followed by an indented
    verse line is that verse's heading (diatheke prints a Psalm's title this way, and repeats the
    last title before later indented verses), and is dropped. Strong's numbers such as ``<G5547>``
    are removed, whitespace is collapsed, the trailing ``(ModuleName)`` line is dropped, and verses
    whose text is empty are left out.

    Example:
        >>> parse_verses(["Psalms 3:1: LORD, how are they", "", "increased that trouble me!",
        ...               "A Psalm of David.", "   Psalms 3:2: Many there be <H7227>.", "(KJV)"])
        {('Psalms', 3, 1): 'LORD, how are they increased that trouble me!', ('Psalms', 3, 2): \
'Many there be.'}
    """
    lines = [raw.rstrip("\n") for raw in lines]
    verses: dict[Reference, list[str]] = {}
    current: list[str] | None = None
    for i, line in enumerate(lines):
        match = _VERSE.match(line.lstrip())
        if match:
            ref = (match["book"], int(match["chapter"]), int(match["verse"]))
            current = verses.setdefault(ref, [])
            current.append(match["text"] or "")
        elif _FOOTER.match(line.strip()):
            current = None
        elif current is not None and not _is_heading(lines, i):
            current.append(line)
    out = {}
    for ref, parts in verses.items():
        text = " ".join(_STRONGS.sub("", " ".join(parts)).split())
        if text:
            out[ref] = text
    return out


def _is_heading(lines: list[str], i: int) -> bool:
    """Line ``i`` is text directly followed by an indented verse line: that verse's heading."""
    following = lines[i + 1] if i + 1 < len(lines) else ""
    return (
        bool(lines[i].strip())
        and following[:1].isspace()
        and _VERSE.match(following.lstrip()) is not None
    )


@dataclass(frozen=True)
class BiblePairs:
    """Aligned verses: ``references[i]`` = (book, chapter, verse), ``english[i]`` and
    ``spanish[i]`` its two texts."""

    references: list[Reference]
    english: list[str]
    spanish: list[str]

    def __len__(self) -> int:
        return len(self.references)

    def subset(self, rows: Iterable[int]) -> BiblePairs:
        rows = list(rows)
        return BiblePairs(
            [self.references[i] for i in rows],
            [self.english[i] for i in rows],
            [self.spanish[i] for i in rows],
        )


def load_bible_pairs() -> BiblePairs:
    """The built-in English (KJV) – Spanish (RV1909) verse pairs, in canonical order.

    Example:
        >>> pairs = load_bible_pairs()
        >>> pairs.references[0], pairs.english[0][:16], pairs.spanish[0][:15]
        (('Genesis', 1, 1), 'In the beginning', 'EN el principio')
    """
    data = resources.files("nce").joinpath("data/bible_en_es.tsv.gz").read_bytes()
    refs, english, spanish = [], [], []
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        book, chapter, verse, en, es = line.split("\t")
        refs.append((book, int(chapter), int(verse)))
        english.append(en)
        spanish.append(es)
    return BiblePairs(refs, english, spanish)


def split_by_chapter(
    pairs: BiblePairs, test_fraction: float = 0.1, random_state=0
) -> tuple[BiblePairs, BiblePairs]:
    """(train, test): a random ``test_fraction`` of the chapters is held out whole, so that no
    held-out verse has a neighbour from its own chapter in training."""
    check_in_range("test_fraction", test_fraction, 0.0, 1.0)
    chapters = sorted({(book, chapter) for book, chapter, _ in pairs.references})
    order = torch.randperm(len(chapters), generator=as_generator(random_state)).tolist()
    held = {chapters[i] for i in order[: round(test_fraction * len(chapters))]}
    test = [i for i, (b, c, _) in enumerate(pairs.references) if (b, c) in held]
    held_rows = set(test)
    train = [i for i in range(len(pairs)) if i not in held_rows]
    return pairs.subset(train), pairs.subset(test)


def repeated_verses(texts: Iterable[str]) -> tuple[int, int]:
    """(groups, verses): how many distinct texts occur more than once, and how many verses those
    repeats cover — the false negatives a batch of this text can hold.

    Example:
        >>> repeated_verses(["a", "b", "a", "c", "a", "b"])
        (2, 5)
    """
    counts = Counter(texts)
    repeats = [c for c in counts.values() if c > 1]
    return len(repeats), sum(repeats)
