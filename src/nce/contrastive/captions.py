r"""Digits with captions: scikit-learn's 8x8 digits paired with short English sentences.

The image–text data of :func:`~nce.contrastive.image_text.align`, small enough to train CLIP in
miniature on a CPU. Each image gets a caption built from a *template* (a carrier phrase with one
slot) and the name of its digit, written either as a word ("seven") or as a numeral ("7"):
``"a handwritten seven"``, ``"the number 7"``, ``"digit seven, written by hand"``.

Design, so that zero-shot transfer is possible but not trivial:

* The images are split by image (stratified by digit, fixed seed): no test image is seen in
  training.
* Training captions come from :data:`TRAIN_TEMPLATES`, test captions from :data:`TEST_TEMPLATES`.
  The two sets share no template, and no *word* of a test carrier phrase occurs anywhere in a
  training caption: at test time every word except the digit's name is new. A text encoder whose
  vocabulary is built from training captions meets them as unknown words; it must have learned
  that the digit's name carries the meaning and the phrase around it does not.
* Both forms of every name are taught: about half the training templates take the word, the
  others the numeral, and the test templates use both forms in new phrases. Nothing in the
  training text ties "7" to "seven"; the images do, since both kinds of caption describe the same
  pictures. A model that learned only one form per class fails on the test templates of the other.
* One caption per test image (its template drawn with a fixed seed) gives the test *pairs* for
  retrieval; zero-shot classification builds class captions from the test templates alone.

Shape:
    - images: (N, 1, 8, 8) float32 in [0, 1]; labels: (N,) int64 in 0..9
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nce._random import as_generator
from nce.contrastive.data import load_digits_split
from nce.text import tokenize

__all__ = [
    "NUMERALS",
    "TEST_TEMPLATES",
    "TRAIN_TEMPLATES",
    "WORDS",
    "CaptionTemplate",
    "CaptionedDigits",
    "caption",
    "class_captions",
    "load_captioned_digits",
    "sample_captions",
]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMERALS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class CaptionTemplate:
    """A carrier phrase with one ``{}`` slot for the digit's name, and the name's form.

    Example:
        >>> CaptionTemplate("a handwritten {}", "word").fill(7)
        'a handwritten seven'
    """

    phrase: str
    form: str  # "word" or "numeral"

    def __post_init__(self):
        if self.form not in ("word", "numeral"):
            raise ValueError(f"form must be 'word' or 'numeral', got {self.form!r}")
        if self.phrase.count("{}") != 1:
            raise ValueError(f"phrase must have exactly one '{{}}' slot, got {self.phrase!r}")

    def fill(self, digit: int) -> str:
        return self.phrase.format((WORDS if self.form == "word" else NUMERALS)[digit])

    @property
    def carrier_words(self) -> set[str]:
        """The words of the phrase without its slot."""
        return set(tokenize(self.phrase.replace("{}", " ")))


TRAIN_TEMPLATES = (
    CaptionTemplate("a handwritten {}", "word"),
    CaptionTemplate("the number {}", "numeral"),
    CaptionTemplate("digit {}, written by hand", "word"),
    CaptionTemplate("an image of the digit {}", "numeral"),
    CaptionTemplate("a scan of a {}", "word"),
    CaptionTemplate("{} in ink", "numeral"),
    CaptionTemplate("a small picture of {}", "word"),
    CaptionTemplate("the figure {}", "numeral"),
    CaptionTemplate("a blurry {} on paper", "word"),
    CaptionTemplate("a photo of a {}", "numeral"),
)

TEST_TEMPLATES = (
    CaptionTemplate("somebody drew {} here", "numeral"),
    CaptionTemplate("{} sketched quickly", "word"),
    CaptionTemplate("my scribbled {}", "numeral"),
    CaptionTemplate("pencil doodle showing {}", "word"),
    CaptionTemplate("looks like {} to me", "numeral"),
    CaptionTemplate("this is {}", "word"),
)


def caption(digit: int, template: CaptionTemplate) -> str:
    """The caption of ``digit`` in ``template``."""
    return template.fill(int(digit))


def class_captions(template: CaptionTemplate) -> list[str]:
    """One caption per class 0..9 in ``template`` (the zero-shot classifier's prompts)."""
    return [template.fill(d) for d in range(10)]


def sample_captions(
    labels: torch.Tensor, templates: Sequence[CaptionTemplate], generator: torch.Generator
) -> list[str]:
    """A caption for each label, its template drawn uniformly from ``templates``.

    Shape:
        - labels: (N,) int64 in 0..9; output: N strings
    """
    choice = torch.randint(len(templates), (len(labels),), generator=generator)
    return [templates[int(t)].fill(int(y)) for t, y in zip(choice, labels, strict=True)]


@dataclass(frozen=True)
class CaptionedDigits:
    """Train and test images with their labels, and one caption per test image.

    Training captions are drawn afresh by the trainer (:func:`sample_captions` over
    ``TRAIN_TEMPLATES``); ``test_captions[i]`` describes ``x_test[i]``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    test_captions: tuple[str, ...]

    @property
    def train_captions(self) -> list[str]:
        """Every distinct training caption (each template filled with each class)."""
        return [t.fill(d) for t in TRAIN_TEMPLATES for d in range(10)]


def load_captioned_digits(test_size: float = 0.3, random_state: int = 0) -> CaptionedDigits:
    """The digits split of :func:`~nce.contrastive.data.load_digits_split`, with a caption for
    each test image.

    Args:
        test_size: fraction of the images held out.
        random_state: seed of the split and of the test captions' templates.

    Example:
        >>> data = load_captioned_digits()
        >>> tuple(data.x_train.shape), len(data.test_captions)
        ((1257, 1, 8, 8), 540)
    """
    split = load_digits_split(test_size, random_state)
    captions = sample_captions(split.y_test, TEST_TEMPLATES, as_generator(random_state))
    return CaptionedDigits(
        split.x_train, split.y_train, split.x_test, split.y_test, tuple(captions)
    )
