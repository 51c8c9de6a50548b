r"""Evaluation of frozen representations: linear probe and k-nearest-neighbour accuracy.

A self-supervised encoder is judged by how much of the label information its representation
:math:`h = f(x)` exposes to a simple classifier trained on top of it, with the encoder frozen
(the "linear evaluation protocol" of Zhang et al. 2016, Oord et al. 2018 and SimCLR):

* **linear probe**: a multinomial logistic regression (scikit-learn's ``LogisticRegression``) on
  standardized features, trained on all training labels or on only ``labels_per_class`` labels of
  each class (the mean over ``draws`` random draws of the labelled subset);
* **k-NN**: the majority label of the k nearest training representations under the cosine
  distance (Wu et al. 2018, arXiv:1805.01978), a probe with no training at all.

Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from nce._validation import check_int, check_positive

__all__ = ["ProbeResult", "evaluate_representation", "knn_accuracy", "linear_probe"]


def _features(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(x)).sum())} NaN or Inf value(s)")
    return x


def _labels(name: str, y, n: int, features: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match {features}, got {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and not (np.isfinite(y) & (y == np.round(y))).all():
        raise ValueError(f"{name} must hold class labels (whole numbers), got non-integer or NaN")
    return y


def _check(train_features, train_labels, test_features, test_labels):
    a = _features("train_features", train_features)
    b = _features("test_features", test_features)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"train_features has {a.shape[1]} features but test_features has {b.shape[1]}"
        )
    ya = _labels("train_labels", train_labels, a.shape[0], "train_features")
    yb = _labels("test_labels", test_labels, b.shape[0], "test_features")
    return a, ya, b, yb


def _fit_score(a, ya, b, yb, c: float, max_iter: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(a)
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit(scaler.transform(a), ya)
    return float(clf.score(scaler.transform(b), yb))


def linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    labels_per_class: int | None = None,
    draws: int = 5,
    c: float = 1.0,
    max_iter: int = 2000,
    random_state: int = 0,
) -> float:
    r"""Test accuracy of a logistic regression trained on frozen features.

    Features are standardized with the statistics of the labelled training samples, then a
    multinomial logistic regression with L2 penalty :math:`\frac{1}{2C}\lVert W\rVert^2` is fit.
    With ``labels_per_class = L`` only L random training samples of each class are labelled; the
    result is the mean accuracy over ``draws`` draws (draw ``d`` uses seed ``random_state + d``).

    Args:
        train_features, train_labels: the training representations and their labels.
        test_features, test_labels: the held-out representations and labels.
        labels_per_class: L, or ``None`` for all training labels.
        draws: number of labelled subsets averaged when ``labels_per_class`` is given.
        c: inverse regularization strength C.
        max_iter: iterations of the solver.
        random_state: seed of the labelled subsets.

    Shape:
        - train_features: (N, F), train_labels: (N,); test_features: (T, F), test_labels: (T,)

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(40) % 2
        >>> x = rng.normal(size=(40, 3)) + 3 * y[:, None]
        >>> linear_probe(x[:30], y[:30], x[30:], y[30:]) > 0.9
        True
    """
    a, ya, b, yb = _check(train_features, train_labels, test_features, test_labels)
    check_positive("c", c)
    check_int("max_iter", max_iter, minimum=1)
    if labels_per_class is None:
        return _fit_score(a, ya, b, yb, c, max_iter)
    check_int("labels_per_class", labels_per_class, minimum=1)
    check_int("draws", draws, minimum=1)
    classes, counts = np.unique(ya, return_counts=True)
    if counts.min() < labels_per_class:
        small = classes[counts.argmin()]
        raise ValueError(
            f"labels_per_class={labels_per_class} but class {small!r} has only "
            f"{counts.min()} training sample(s)"
        )
    scores = []
    for d in range(draws):
        rng = np.random.default_rng(random_state + d)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(ya == k), labels_per_class, replace=False) for k in classes]
        )
        scores.append(_fit_score(a[idx], ya[idx], b, yb, c, max_iter))
    return float(np.mean(scores))


def knn_accuracy(train_features, train_labels, test_features, test_labels, *, k: int = 5) -> float:
    r"""Test accuracy of k-nearest-neighbour voting under the cosine distance.

    Each test representation takes the most common label among its k training neighbours of
    highest cosine similarity :math:`\langle h, h'\rangle / (\lVert h\rVert \lVert h'\rVert)`
    (ties go to the smaller label); the accuracy is :math:`\frac1T \sum_t 1[\hat y_t = y_t]`.

    Shape:
        - train_features: (N, F), train_labels: (N,); test_features: (T, F), test_labels: (T,)

    Example:
        >>> import numpy as np
        >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> knn_accuracy(x, [0, 0, 1, 1], x, [0, 0, 1, 1], k=1)
        1.0
    """
    a, ya, b, yb = _check(train_features, train_labels, test_features, test_labels)
    check_int("k", k, minimum=1)
    if k > len(a):
        raise ValueError(f"k={k} exceeds the {len(a)} training samples")
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    nearest = np.argsort(-(bn @ an.T), axis=1, kind="stable")[:, :k]
    classes, coded = np.unique(ya, return_inverse=True)
    votes = np.zeros((len(b), len(classes)))
    np.add.at(votes, (np.arange(len(b))[:, None], coded[nearest]), 1)
    return float((classes[votes.argmax(1)] == yb).mean())


@dataclass(frozen=True)
class ProbeResult:
    """The three accuracies of :func:`evaluate_representation` (fractions in [0, 1])."""

    linear_probe_accuracy: float
    linear_probe_accuracy_10_per_class: float
    knn_accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate_representation(
    train_features, train_labels, test_features, test_labels, *, k: int = 5, random_state: int = 0
) -> ProbeResult:
    r"""Linear probe with all labels and with 10 per class (mean of 5 draws), and k-NN accuracy.

    Each accuracy is :math:`\frac1T \sum_t 1[\hat y_t = y_t]` over the T test rows, with
    :math:`\hat y_t` from :func:`linear_probe` or :func:`knn_accuracy`.

    Shape:
        - train_features: (N, F), train_labels: (N,); test_features: (T, F), test_labels: (T,)

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(200) % 2
        >>> x = 0.3 * rng.normal(size=(200, 2)) + np.eye(2)[y]
        >>> r = evaluate_representation(x[:100], y[:100], x[100:], y[100:])
        >>> r.knn_accuracy > 0.9
        True
    """
    args = (train_features, train_labels, test_features, test_labels)
    return ProbeResult(
        linear_probe_accuracy=linear_probe(*args, random_state=random_state),
        linear_probe_accuracy_10_per_class=linear_probe(
            *args, labels_per_class=10, draws=5, random_state=random_state
        ),
        knn_accuracy=knn_accuracy(*args, k=k),
    )
