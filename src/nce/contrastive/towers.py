r"""The two towers of CLIP in miniature: an image encoder and a text encoder into one space.

An image :math:`x` and a caption :math:`t` are embedded as :math:`u = P_I f(x)` and
:math:`v = g(t)`, both of dimension D; contrastive training makes :math:`\cos(u_i, v_i)` of a
paired image and caption larger than :math:`\cos(u_i, v_j)` for the other captions of the batch
(Radford et al. 2021, arXiv:2103.00020). The image tower is the
:class:`~nce.contrastive.encoders.ConvEncoder` with a linear projection.

The text tower is a bag of words over a vocabulary built from the *training* captions, with one
``<unk>`` id for every other word: :math:`g(t) = \mathrm{MLP}(\frac{1}{|t|}\sum_{w \in t} E_w)`.
Why words and not characters: the captions' meaning is the name of one digit, a whole word that
training teaches ("seven", "7"), while the unseen test phrases are words that should carry no
meaning. Mapping each of them to ``<unk>`` states exactly that, and *word dropout* in training
(each word replaced by ``<unk>`` with probability p) teaches the encoder that ``<unk>`` is
uninformative and that the name alone decides. A character model would instead see new words as
new spellings and could read digit names into them ("seventy", "ones"); it pays off when test
captions misspell or inflect the names, which these do not.

Shape:
    - images: (N, 1, 8, 8) (or (N, C, H, W)); captions: N strings; embeddings: (N, D)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nce._validation import check_in_range, check_int
from nce.contrastive.encoders import ConvEncoder
from nce.text import UNK, tokenize

__all__ = ["BagOfWordsEncoder", "TwoTowerModel", "build_vocabulary"]


def build_vocabulary(captions: Sequence[str]) -> tuple[str, ...]:
    """``<unk>`` (id 0) followed by the sorted words of ``captions``.

    Example:
        >>> build_vocabulary(["a handwritten seven", "the number 7"])
        ('<unk>', '7', 'a', 'handwritten', 'number', 'seven', 'the')
    """
    return (UNK, *sorted({w for c in captions for w in tokenize(c)}))


class BagOfWordsEncoder(nn.Module):
    r"""Mean of word embeddings, then a two-layer MLP: :math:`\mathrm{MLP}(\mathrm{mean}_w E_w)`.

    Args:
        vocabulary: the words, ``<unk>`` first (:func:`build_vocabulary`).
        embedding_dim: size of the word embeddings.
        out_features: D, size of the caption embedding.

    Shape:
        - captions: N strings (tokenized by :func:`nce.text.tokenize`); output: (N, D)

    Example:
        >>> enc = BagOfWordsEncoder(build_vocabulary(["a handwritten seven"]), 8, 4)
        >>> enc(["a handwritten seven", "an unseen phrase"]).shape
        torch.Size([2, 4])
    """

    def __init__(self, vocabulary: Sequence[str], embedding_dim: int = 64, out_features: int = 32):
        super().__init__()
        self.vocabulary = tuple(vocabulary)
        if not self.vocabulary or self.vocabulary[0] != UNK:
            raise ValueError(f"vocabulary must start with {UNK!r}, got {self.vocabulary[:3]}")
        check_int("embedding_dim", embedding_dim, minimum=1)
        check_int("out_features", out_features, minimum=1)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.embedding = nn.EmbeddingBag(len(self.vocabulary), embedding_dim, mode="mean")
        self.mlp = nn.Sequential(
            nn.Linear(embedding_dim, embedding_dim),
            nn.ReLU(),
            nn.Linear(embedding_dim, out_features),
        )

    def encode(
        self,
        captions: Sequence[str],
        word_dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Word ids (all captions concatenated) and each caption's offset, as ``EmbeddingBag``
        takes them; a caption without words becomes one ``<unk>``. With ``word_dropout`` p, each
        word is replaced by ``<unk>`` with probability p (drawn from ``generator``)."""
        if isinstance(captions, str):
            raise TypeError("captions must be a sequence of strings, got one string")
        check_in_range("word_dropout", word_dropout, 0.0, 1.0)
        ids, offsets = [], []
        for text in captions:
            if not isinstance(text, str):
                raise TypeError(f"captions must be strings, got {type(text).__name__}")
            offsets.append(len(ids))
            ids.extend([self.index.get(w, 0) for w in tokenize(text)] or [0])
        ids_t = torch.tensor(ids, dtype=torch.long)
        if word_dropout > 0:
            drop = torch.rand(len(ids), generator=generator) < word_dropout
            ids_t = ids_t.masked_fill(drop, 0)
        device = self.embedding.weight.device
        return ids_t.to(device), torch.tensor(offsets, dtype=torch.long, device=device)

    def forward(
        self,
        captions: Sequence[str],
        word_dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        ids, offsets = self.encode(captions, word_dropout, generator)
        return self.mlp(self.embedding(ids, offsets))


class TwoTowerModel(nn.Module):
    """An image tower (:class:`ConvEncoder` + linear projection) and a text tower
    (:class:`BagOfWordsEncoder`) that both embed into D dimensions.

    Args:
        vocabulary: the text tower's words, ``<unk>`` first.
        dim: D, the shared embedding size.
        width: width of the ConvEncoder (its features have 4·width dimensions).
        text_width: word-embedding size of the text tower.
        in_channels: channels of the images.

    Shape:
        - ``embed_images``: (N, C, H, W) -> (N, D); ``embed_texts``: N strings -> (N, D)

    Example:
        >>> m = TwoTowerModel(build_vocabulary(["a handwritten seven"]), dim=8, width=4)
        >>> m.embed_images(torch.rand(3, 1, 8, 8)).shape, m.embed_texts(["seven"]).shape
        (torch.Size([3, 8]), torch.Size([1, 8]))
    """

    def __init__(
        self,
        vocabulary: Sequence[str],
        dim: int = 32,
        width: int = 16,
        text_width: int = 64,
        in_channels: int = 1,
    ):
        super().__init__()
        check_int("dim", dim, minimum=1)
        self.config = {
            "vocabulary": list(vocabulary),
            "dim": dim,
            "width": width,
            "text_width": text_width,
            "in_channels": in_channels,
        }
        self.image_encoder = ConvEncoder(in_channels, width)
        self.image_projection = nn.Linear(self.image_encoder.out_features, dim)
        self.text_encoder = BagOfWordsEncoder(vocabulary, text_width, dim)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_projection(self.image_encoder(images))

    def embed_texts(
        self,
        captions: Sequence[str],
        word_dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.text_encoder(captions, word_dropout, generator)
