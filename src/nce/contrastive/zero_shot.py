r"""Judging an image–text model without training a classifier: zero-shot labels and retrieval.

**Zero-shot classification** (CLIP, Radford et al. 2021, arXiv:2103.00020). Class c gets the
caption :math:`t_c` of a template filled with its name; an image is labeled by the caption
nearest to it, :math:`\hat y(x) = \arg\max_c \cos(u(x), v(t_c))`. The *prompt ensemble* averages
the normalized embeddings of several templates per class, :math:`\bar v_c = \mathrm{normalize}(
\frac{1}{T}\sum_t v(t_c)/\lVert v(t_c)\rVert)`, and labels by :math:`\bar v_c` instead.

**Retrieval recall@k** on paired test data, in both directions: image→text ranks every test
caption for each image, text→image every test image for each caption, and recall@k is the
fraction of queries with a correct item among the k best. A caption here names a digit and
nothing else, so every test image of that digit answers it equally well: an item is correct when
its digit is the query's (as the five reference captions of an image all count in COCO
retrieval). The reported recall is the mean of the two directions.

Shape:
    - image_embeddings: (N, D); text_embeddings: (N, D) (or (C, D) for class captions)
    - labels: (N,) int64
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nce.contrastive.captions import CaptionTemplate, class_captions
from nce.contrastive.towers import TwoTowerModel

__all__ = ["class_embeddings", "embed_images", "retrieval_recall", "zero_shot_predict"]


@torch.no_grad()
def embed_images(model: TwoTowerModel, images: torch.Tensor, batch_size: int = 1024):
    """Normalized image embeddings (N, D) in evaluation mode."""
    was_training = model.training
    model.eval()
    out = torch.cat(
        [model.embed_images(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )
    model.train(was_training)
    return F.normalize(out, dim=1)


@torch.no_grad()
def embed_texts(model: TwoTowerModel, captions: Sequence[str]) -> torch.Tensor:
    """Normalized caption embeddings (N, D) in evaluation mode."""
    was_training = model.training
    model.eval()
    out = model.embed_texts(list(captions))
    model.train(was_training)
    return F.normalize(out, dim=1)


def class_embeddings(model: TwoTowerModel, templates: Sequence[CaptionTemplate]) -> torch.Tensor:
    """The (prompt-ensemble) class embeddings :math:`\\bar v_c`, shape (10, D): the normalized mean
    of each template's normalized caption of class c; one template gives its captions alone."""
    if not templates:
        raise ValueError("templates must name at least one caption template")
    per_template = torch.stack([embed_texts(model, class_captions(t)) for t in templates])
    return F.normalize(per_template.mean(0), dim=1)


def zero_shot_predict(image_embeddings: torch.Tensor, class_embedding: torch.Tensor):
    """The label of each image: its nearest class embedding by cosine, shape (N,)."""
    return (F.normalize(image_embeddings, dim=1) @ F.normalize(class_embedding, dim=1).T).argmax(1)


def retrieval_recall(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    labels: torch.Tensor,
    ks: Sequence[int] = (1, 5),
) -> dict[str, dict[int, float]]:
    """Recall@k for image→text and text→image retrieval over paired items; an item is correct
    when its label equals the query's.

    Returns:
        ``{"image_to_text": {k: recall}, "text_to_image": {k: recall}}``, fractions in [0, 1].

    Example:
        >>> e = torch.eye(3)
        >>> retrieval_recall(e, e, torch.tensor([0, 1, 2]), ks=(1,))["image_to_text"]
        {1: 1.0}
    """
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError(
            f"image_embeddings has shape {tuple(image_embeddings.shape)} but text_embeddings "
            f"has {tuple(text_embeddings.shape)}"
        )
    if labels.shape != (len(image_embeddings),):
        raise ValueError(
            f"labels must have shape ({len(image_embeddings)},), got {tuple(labels.shape)}"
        )
    similarity = F.normalize(image_embeddings, dim=1) @ F.normalize(text_embeddings, dim=1).T
    same = labels[:, None] == labels[None, :]
    result = {}
    for name, scores, correct in (
        ("image_to_text", similarity, same),
        ("text_to_image", similarity.T, same.T),
    ):
        order = scores.argsort(dim=1, descending=True, stable=True)
        hits = correct.gather(1, order)
        result[name] = {
            k: float(hits[:, : min(k, hits.shape[1])].any(1).float().mean()) for k in ks
        }
    return result
