r"""Word-level text for language models: the built-in King James Bible, any UTF-8 text file, and a
synthetic Zipfian corpus for measuring speed at any vocabulary size.

The King James Bible (public domain; 31,102 verses, about 820k words and 12.9k word types, the
size of the Penn Treebank) ships with the package, one verse per line. Text is tokenized into
lowercase words and punctuation marks; a :class:`Vocabulary` maps the frequent ones to ids and the
rest to ``<unk>``; each line ends with ``<eos>``. Splits are by line (verse), fixed by a seed.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

from nce._deprecation import renamed_keywords
from nce._random import as_generator
from nce._validation import check_in_range, check_int

UNK, EOS = "<unk>", "<eos>"
# Words: letters and digits of any script, with one inner apostrophe (' or ’); else one mark.
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?|[^\w\s]|_")
_REFERENCE = re.compile(r"^\S+\d+:\d+\s+")


def tokenize(line: str) -> list[str]:
    """Lowercase words (letters and digits of any script, with inner apostrophes) and single
    punctuation marks.

    Example:
        >>> tokenize("And God said, Let there be light: and there was light.")[:5]
        ['and', 'god', 'said', ',', 'let']
        >>> tokenize("Naïve café, don’t")
        ['naïve', 'café', ',', 'don’t']
    """
    return _TOKEN.findall(line.lower())


def kjv_verses() -> list[str]:
    """The King James Bible, one verse per line, without the verse references."""
    with gzip.open(files("nce") / "data" / "kjv.txt.gz", "rt", encoding="utf-8") as f:
        return [_REFERENCE.sub("", line).strip() for line in f if line.strip()]


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; empty, binary or non-UTF-8 files raise ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"corpus {path}: no such file")
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError(f"corpus {path}: a binary file (it contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus {path}: not UTF-8 ({err.reason} at byte {err.start})") from err
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not any(tokenize(line) for line in lines):
        raise ValueError(f"corpus {path}: no words in the file")
    return lines


def read_corpus(corpus: str, max_lines: int | None = None) -> list[str]:
    """The lines of ``corpus``: ``"kjv"`` (the built-in King James Bible) or the path of a UTF-8
    text file; only the first ``max_lines`` when given."""
    lines = kjv_verses() if corpus == "kjv" else read_lines(corpus)
    if max_lines is not None:
        check_int("max_lines", max_lines, minimum=1)
        lines = lines[:max_lines]
    return lines


def corpus_checksum(lines: list[str]) -> str:
    """``"sha256:<hex>"`` of the lines joined by newlines: what a model was trained on, to verify
    later that the same text is read again."""
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def check_corpus(lines: list[str], expected: str, corpus: str, *, owner: str) -> None:
    """Refuse ``lines`` read from ``corpus`` unless their checksum is ``expected``, the one
    ``owner`` (e.g. a checkpoint) recorded; the message names both checksums and the corpus."""
    found = corpus_checksum(lines)
    if found != expected:
        raise ValueError(
            f"{owner} was trained on corpus {corpus} with checksum {expected}, but it now reads "
            f"as {found}: the text changed since training (its test split is no longer the "
            "held-out one); restore that text or train again"
        )


@dataclass(frozen=True)
class Vocabulary:
    """Tokens by id: ``<unk>`` is 0, ``<eos>`` is 1, then words by decreasing count.

    ``counts[i]`` is the training count of token i (``<unk>`` gathers the rare words), which is
    what a unigram noise needs.
    """

    tokens: tuple[str, ...]
    counts: tuple[int, ...]

    @classmethod
    def build(cls, lines: list[list[str]], *, min_count: int = 2, max_size: int | None = None):
        """From tokenized lines: words seen at least ``min_count`` times, at most ``max_size``."""
        check_int("min_count", min_count, minimum=1)
        counter = Counter(token for line in lines for token in line)
        kept = [(w, c) for w, c in counter.most_common() if c >= min_count]
        if max_size is not None:
            check_int("max_size", max_size, minimum=3)
            kept = kept[: max_size - 2]
        unk = sum(counter.values()) - sum(c for _, c in kept)
        return cls((UNK, EOS, *(w for w, _ in kept)), (unk, len(lines), *(c for _, c in kept)))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    def encode(self, lines: list[list[str]]) -> torch.Tensor:
        """One int64 stream: each line's ids followed by ``<eos>``; unknown words are ``<unk>``."""
        index = self.index
        ids = [i for line in lines for i in (*(index.get(t, 0) for t in line), 1)]
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]


@renamed_keywords(seed="random_state")
def split_lines(lines: list, *, random_state=0, fractions=(0.9, 0.05, 0.05)):
    """A random split of lines into (train, valid, test) by ``fractions``, fixed by
    ``random_state`` (None, an int or a :class:`torch.Generator`)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three numbers summing to 1, got {fractions}")
    for name, f in zip(("train", "valid", "test"), fractions, strict=True):
        check_in_range(f"fractions ({name})", float(f), 0.0, 1.0, closed_high=True)
    order = torch.randperm(len(lines), generator=as_generator(random_state)).tolist()
    n_train = round(fractions[0] * len(lines))
    n_valid = round(fractions[1] * len(lines))
    pick = [lines[i] for i in order]
    return pick[:n_train], pick[n_train : n_train + n_valid], pick[n_train + n_valid :]


def zipf_corpus(
    num_tokens: int, vocab_size: int, *, exponent: float = 1.0, generator=None
) -> torch.Tensor:
    r"""A synthetic token stream with Zipfian frequencies :math:`p(r) \propto r^{-s}` over ranks
    :math:`r = 1..V` (natural text has :math:`s \approx 1`), for speed measurements at any V.

    References:
        Zipf (1949), Human Behavior and the Principle of Least Effort.

    Shape:
        - output: (num_tokens,) int64 ids in [0, V)
    """
    check_int("num_tokens", num_tokens, minimum=1)
    check_int("vocab_size", vocab_size, minimum=2)
    check_in_range("exponent", exponent, 0.0, 10.0)
    probs = torch.arange(1, vocab_size + 1, dtype=torch.float64).pow(-exponent)
    return torch.multinomial(probs / probs.sum(), num_tokens, replacement=True, generator=generator)
