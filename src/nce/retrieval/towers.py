r"""A two-tower text encoder over hashed word and character n-grams.

A text is lower-cased and split into words; each word :math:`w` contributes one *word feature*
and the character n-grams (``min_n`` to ``max_n`` characters) of ``<w>``, the word with boundary
marks, so that a prefix ``<jer`` differs from an inner ``jer``. Every feature string is hashed
into one of B buckets with CRC-32 (:func:`feature_bucket`: the same bucket in every process and
every run, unlike Python's salted ``hash``). The text's embedding is

.. math:: u = \mathrm{normalize}\Big(P_{side}\, \frac{1}{|F(t)|} \sum_{f \in F(t)} E_{h(f)}\Big),

the mean of the bucket rows E (an :class:`torch.nn.EmbeddingBag` of shape (B, H)) projected by a
side-specific :math:`P_{side}` (H → D) and L2-normalized, so that dot products are cosines.

Why one shared table with two projections: queries and documents are often in different languages
(English and Spanish here) that still share many character n-grams — names (``Jerusalem`` /
``Jerusalén``), numbers, cognates (``principio`` / ``principle``). A shared table gives such
features one row, learned from both sides, while the two projections let each side weight and
rotate the space its own way. Both projections start equal, so shared features start aligned.
When the two sides are the same kind of text, the two projections simply learn to agree.

Shape:
    - texts: N strings; features: a flat (F,) int64 tensor of bucket ids and (N + 1,) offsets;
      embeddings: (N, D)
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import torch
from torch import nn

from nce._validation import check_int

__all__ = [
    "ENCODER_DEFAULTS",
    "FeatureTable",
    "HashedNgramEncoder",
    "feature_bucket",
    "text_features",
]

_WORD = re.compile(r"\w+")
SIDES = ("query", "document")
ENCODER_DEFAULTS = {"buckets": 1 << 18, "width": 128, "dim": 128, "min_n": 3, "max_n": 5}


def feature_bucket(feature: str, buckets: int) -> int:
    r"""The bucket of a feature string: CRC-32 of its UTF-8 bytes modulo ``buckets``,
    :math:`h(f) = \mathrm{crc32}(\mathrm{utf8}(f)) \bmod B`.

    Example:
        >>> feature_bucket("w:beginning", 1 << 20)
        967688
    """
    return zlib.crc32(feature.encode("utf-8")) % buckets


def _word_features(word: str, buckets: int, min_n: int, max_n: int) -> list[int]:
    marked = f"<{word}>"
    out = [feature_bucket("w:" + word, buckets)]
    for n in range(min_n, max_n + 1):
        out.extend(feature_bucket(marked[i : i + n], buckets) for i in range(len(marked) - n + 1))
    return out


def text_features(
    texts: Sequence[str],
    buckets: int,
    min_n: int = 3,
    max_n: int = 5,
    cache: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Bucket ids of every text's features: (ids, offsets), text i's ids ``ids[offsets[i]:
    offsets[i+1]]``. A text without words gets one feature, the empty word's. Each feature
    string f (a word or a character n-gram of ``<word>``) becomes
    :math:`h(f) = \mathrm{crc32}(\mathrm{utf8}(f)) \bmod B`.

    Shape:
        - texts: N strings; ids: (F,) int64; offsets: (N + 1,) int64

    ``cache`` (a dict) keeps each word's ids between calls.

    Example:
        >>> ids, offsets = text_features(["In the", ""], 1000, 3, 3)
        >>> offsets.tolist(), len(ids)
        ([0, 7, 8], 8)
    """
    cache = {} if cache is None else cache
    flat: list[int] = []
    offsets = [0]
    for text in texts:
        words = _WORD.findall(text.lower()) or [""]
        for word in words:
            ids = cache.get(word)
            if ids is None:
                ids = cache[word] = _word_features(word, buckets, min_n, max_n)
            flat.extend(ids)
        offsets.append(len(flat))
    return torch.tensor(flat, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64)


class FeatureTable:
    """The features of a fixed list of texts, computed once; :meth:`rows` selects a batch.

    Example:
        >>> table = FeatureTable(["a b", "c", "d e f"], 97, 3, 3)
        >>> ids, offsets = table.rows(torch.tensor([2, 1]))
        >>> offsets.tolist(), len(ids) == len(table.rows(torch.tensor([2]))[0]) + 2
        ([0, 6], True)
    """

    def __init__(self, texts: Sequence[str], buckets: int, min_n: int, max_n: int):
        self.ids, self.offsets = text_features(texts, buckets, min_n, max_n)
        self.lengths = self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.lengths)

    def rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, offsets) of the texts ``rows``, in that order."""
        lengths = self.lengths[rows]
        starts = self.offsets[rows]
        batch_offsets = torch.cumsum(lengths, 0) - lengths
        index = torch.arange(int(lengths.sum())) + torch.repeat_interleave(
            starts - batch_offsets, lengths
        )
        return self.ids[index], batch_offsets


class HashedNgramEncoder(nn.Module):
    r"""Two towers sharing a hashed n-gram table, each with its own projection (module docstring).

    .. math:: u = \mathrm{normalize}\Big(P_{side}\, \frac{1}{|F(t)|}
              \sum_{f \in F(t)} E_{h(f)}\Big),

    the mean of the table rows of the text's hashed features :math:`F(t)`, projected by the
    query's or the document's :math:`P_{side}` and L2-normalized.

    Args:
        buckets: B, the number of hash buckets.
        width: H, the size of a bucket's row.
        dim: D, the size of the embeddings.
        min_n, max_n: lengths of the character n-grams of each word (with boundary marks).

    Shape:
        - :meth:`embed` texts: N strings -> (N, D) unit rows; :meth:`encode` (ids, offsets) ->
          (N, D)

    References:
        Bojanowski et al. 2017, Enriching Word Vectors with Subword Information (hashed
        character n-grams with boundary marks), arXiv:1607.04606.

    Example:
        >>> enc = HashedNgramEncoder(buckets=1000, width=8, dim=4)
        >>> enc.embed(["In the beginning", "En el principio"], "document").shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        buckets: int = ENCODER_DEFAULTS["buckets"],
        width: int = ENCODER_DEFAULTS["width"],
        dim: int = ENCODER_DEFAULTS["dim"],
        min_n: int = ENCODER_DEFAULTS["min_n"],
        max_n: int = ENCODER_DEFAULTS["max_n"],
    ):
        super().__init__()
        check_int("buckets", buckets, minimum=1)
        check_int("width", width, minimum=1)
        check_int("dim", dim, minimum=1)
        check_int("min_n", min_n, minimum=1)
        check_int("max_n", max_n, minimum=min_n)
        self.config = {
            "buckets": buckets,
            "width": width,
            "dim": dim,
            "min_n": min_n,
            "max_n": max_n,
        }
        self.table = nn.EmbeddingBag(buckets, width, mode="mean", sparse=True)
        self.query_projection = nn.Linear(width, dim, bias=False)
        self.document_projection = nn.Linear(width, dim, bias=False)
        self._cache: dict = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Table rows ~ N(0, 1); both projections the same random matrix."""
        self.table.reset_parameters()
        self.query_projection.reset_parameters()
        with torch.no_grad():
            self.document_projection.weight.copy_(self.query_projection.weight)

    def features(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, offsets) of ``texts`` for :meth:`encode`."""
        c = self.config
        ids, offsets = text_features(texts, c["buckets"], c["min_n"], c["max_n"], self._cache)
        return ids, offsets[:-1]

    def encode(
        self,
        ids: torch.Tensor,
        offsets: torch.Tensor,
        side: str,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unit embeddings (N, D) of the texts whose features are (ids, offsets).

        ``rows`` (U, H), when given, replaces the table and ``ids`` index into it: training
        gathers a batch's U distinct table rows once, so that their gradient is (U, H) rather
        than one row per feature occurrence."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        projection = self.query_projection if side == "query" else self.document_projection
        if rows is None:
            pooled = self.table(ids, offsets)
        else:
            pooled = nn.functional.embedding_bag(ids, rows, offsets, mode="mean")
        return nn.functional.normalize(projection(pooled), dim=-1)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], side: str, chunk_size: int = 4096) -> torch.Tensor:
        """Unit embeddings (N, D) of ``texts`` as queries or documents, in chunks, without grad."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        out = [
            self.encode(*self.features(texts[i : i + chunk_size]), side)
            for i in range(0, len(texts), chunk_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.config["dim"])
