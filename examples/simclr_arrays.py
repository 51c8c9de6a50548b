r"""SimCLR on your arrays: pretrain an encoder without labels, then probe its frozen features.

    python examples/simclr_arrays.py                                # built-in: digits, 8x8 images
    python examples/simclr_arrays.py --x X.npy --y labels.npy --epochs 100

``X.npy`` holds vectors (N, D) or images (N, H, W) or (N, C, H, W); ``labels.npy`` (optional)
holds an integer class per row, used only to measure the features, never to train them.
:func:`nce.contrastive.pretrain` holds out a test part, trains an encoder :math:`f` and a
projection head :math:`g` on two random views of each training sample with SimCLR's loss
(:func:`nce.nt_xent`, Chen et al. 2020, arXiv:2002.05709): each view's positive is its twin and
the other :math:`2N - 2` views of the batch are its negatives,

.. math:: \ell_i = -\log \frac{e^{\cos(z_i, z_{i'})/\tau}}
          {\sum_{k \ne i} e^{\cos(z_i, z_k)/\tau}}, \qquad z = g(f(\text{view})).

Views are crops, shifts and small rotations for images, and masking plus Gaussian noise for
vectors. With labels, the frozen features :math:`f(x)` are probed on the held-out part: a
linear classifier with all training labels and with 10 per class, and 5-NN; the same probes on
the raw inputs are printed next to them as the baseline the encoder has to beat.
"""

from __future__ import annotations

import argparse

import numpy as np

from nce.contrastive import evaluate_representation, pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x", help="a .npy array of samples (default: scikit-learn's digits)")
    parser.add_argument("--y", help="a .npy array of integer labels, for the probes only")
    parser.add_argument("--loss", default="nt_xent", help="nt_xent, info_nce, debiased_info_nce")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=32, help="encoder width")
    parser.add_argument("--rows", type=int, help="a random subset of this many samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.x is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        X, y, source = digits.images, digits.target, "digits (8x8 images)"
    else:
        X, source = np.load(args.x), args.x
        y = None if args.y is None else np.load(args.y)
    if args.rows is not None and args.rows < len(X):
        keep = np.random.default_rng(args.seed).choice(len(X), args.rows, replace=False)
        X, y = X[keep], None if y is None else y[keep]
    print(
        f"{source}: {X.shape[0]} samples of shape {X.shape[1:]}"
        + ("" if y is None else f", {len(np.unique(y))} classes (probes only)")
    )

    result = pretrain(
        X,
        y,
        loss=args.loss,
        temperature=args.temperature,
        epochs=args.epochs,
        batch_size=args.batch_size,
        width=args.width,
        progress=False,
        random_state=args.seed,
    )
    history = result.loss_history
    print(
        f"{args.loss} loss {history[0]:.4f} -> {history[-1]:.4f} over {len(history)} epochs "
        f"({result.seconds:.1f} s)"
    )
    if y is not None:
        train, test = result.train_indices, result.test_indices
        raw = X.reshape(len(X), -1).astype(np.float64)
        baseline = evaluate_representation(raw[train], y[train], raw[test], y[test]).as_dict()
        print(f"{'held-out probe':<36}{'features':>10}{'raw input':>11}")
        for name, value in result.probes().items():
            print(f"{name:<36}{value:>10.4f}{baseline[name]:>11.4f}")


if __name__ == "__main__":
    main()
