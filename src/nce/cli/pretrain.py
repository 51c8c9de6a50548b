"""``nce pretrain``: contrastive pretraining of an encoder, judged by probes of its frozen features.

The data are the built-in digits (``--data digits``) or a ``.npy`` array: images (N, H, W) or
(N, C, H, W) get the convolutional encoder and image augmentations, vectors (N, D) an MLP with
feature masking and Gaussian noise. The samples are split into train and test (stratified when
labels are given); pretraining sees the training samples without labels. With labels (built in for
digits, ``--labels PATH.npy`` otherwise) the command prints and writes the linear-probe accuracy
with all labels and with 10 labels per class, and the 5-NN accuracy, as fractions in [0, 1].

    nce pretrain --data digits --loss nt_xent --epochs 100 --batch-size 256 \\
        --json probe.json -o encoder.pt
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import torch

from nce.cli._args import SEED_MAX, int_at_most
from nce.cli._output import atomic_write_bytes, atomic_write_json, check_outputs
from nce.cli._table import InputError
from nce.contrastive import (
    LOSSES,
    Compose,
    ContrastiveTrainer,
    ConvEncoder,
    GaussianNoise,
    MLPEncoder,
    ProjectionHead,
    RandomMask,
    digits_augmentation,
    evaluate_representation,
)


def add_arguments(parser) -> None:
    parser.add_argument("--data", default="digits", help="'digits' or a .npy array of samples")
    parser.add_argument("--labels", help="a .npy array of integer labels, one per sample")
    parser.add_argument("--loss", default="nt_xent", choices=LOSSES)
    parser.add_argument("--epochs", type=int_at_most(10**5), default=100)
    parser.add_argument("--batch-size", type=int_at_most(10**6), default=256)
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="τ (1.0 measured best on digits)"
    )
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tau-plus", type=float, default=0.1, help="debiased_info_nce's τ+")
    parser.add_argument("--beta", type=float, default=0.0, help="hard-negative concentration β")
    parser.add_argument("--moco", action="store_true", help="momentum encoder + queue (info_nce)")
    parser.add_argument("--queue-size", type=int_at_most(10**7), default=1024)
    parser.add_argument("--width", type=int_at_most(1024), default=32, help="width of the encoder")
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--seed", type=int_at_most(SEED_MAX), default=0)
    parser.add_argument("--checkpoint", help="checkpoint written after each epoch")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--json", help="write the probe accuracies to this JSON file")
    parser.add_argument("-o", "--output", help="write the trained encoder to this .pt file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _load_array(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if p.suffix != ".npy":
        raise InputError(f"{what}: {p} must be a .npy file")
    if not p.is_file():
        raise InputError(f"{what}: {p}: no such file")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{what}: {p}: not a numeric .npy array ({err})") from err


def load_data(data: str, labels: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Samples (float64), labels (int64 or None) and their kind: "images" or "vectors"."""
    if data == "digits":
        if labels is not None:
            raise InputError("--labels: the digits come with their own labels")
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return x.reshape(-1, 1, 8, 8) / 16.0, y.astype(np.int64), "images"
    x = _load_array(data, "--data")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(f"--data: {data}: expected a real numeric array, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise InputError(
            f"--data: {data}: expected vectors (N, D), images (N, H, W) or (N, C, H, W), "
            f"got shape {x.shape}"
        )
    if x.shape[0] < 4 or min(x.shape[1:]) < 1:
        raise InputError(f"--data: {data}: need at least 4 non-empty samples, got {x.shape}")
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        raise InputError(
            f"--data: {data}: {len(bad)} NaN or Inf value(s), first at index {tuple(bad[0])}"
        )
    x = x.astype(np.float64)
    kind = "vectors" if x.ndim == 2 else "images"
    if x.ndim == 3:
        x = x[:, None]
    if kind == "images" and min(x.shape[2:]) < 2:
        raise InputError(f"--data: {data}: images must be at least 2x2, got shape {x.shape}")
    y = None
    if labels is not None:
        y = _load_array(labels, "--labels")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise InputError(
                f"--labels: {labels} must have shape ({x.shape[0]},), one label per sample of "
                f"--data, got {y.shape}"
            )
        if np.issubdtype(y.dtype, np.floating):
            if not np.isfinite(y).all() or not (y == np.round(y)).all():
                raise InputError(f"--labels: {labels} must hold integer class labels")
        elif not np.issubdtype(y.dtype, np.integer):
            raise InputError(f"--labels: {labels} must hold integer labels, got {y.dtype}")
        y = y.astype(np.int64)
    return x, y, kind


def _split(x, y, test_size: float, seed: int):
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise InputError(f"--test-size must lie in (0, 1), got {test_size}")
    idx = np.arange(len(x))
    stratify = None
    if y is not None and np.unique(y, return_counts=True)[1].min() >= 2:
        stratify = y
    try:
        a, b = train_test_split(idx, test_size=test_size, stratify=stratify, random_state=seed)
    except ValueError as err:
        raise InputError(f"--test-size {test_size}: cannot split {len(x)} samples ({err})") from err
    return a, b


def _check_probe_labels(y_train: np.ndarray) -> None:
    """The probes need two classes and 10 training samples of each (checked before training)."""
    classes, counts = np.unique(y_train, return_counts=True)
    if len(classes) < 2:
        raise InputError("--labels: need at least 2 classes in the training split")
    if counts.min() < 10:
        raise InputError(
            f"--labels: class {int(classes[counts.argmin()])} has {int(counts.min())} training "
            "sample(s); the 10-labels-per-class probe needs at least 10 of each class"
        )


def _prepare(x: np.ndarray, kind: str, train: np.ndarray):
    """Scale with training statistics: images to [0, 1], vectors to zero mean, unit variance."""
    if kind == "images":
        lo, hi = x[train].min(), x[train].max()
        return (x - lo) / (hi - lo if hi > lo else 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = x[train].mean(0), x[train].std(0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise InputError("--data: values too large to standardize (their variance overflows)")
    return (x - mean) / np.where(std > 0, std, 1.0)


def pretrain(args, *, quiet: bool = False) -> dict:
    """Run the command's work and return its results (also used by ``nce demo``)."""
    for name, value, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 2)):
        if value < low:
            raise InputError(f"{name} must be >= {low}, got {value}")
    if args.width < 1:
        raise InputError(f"--width must be >= 1, got {args.width}")
    if args.moco and args.loss != "info_nce":
        raise InputError(f"--moco trains with --loss info_nce, got --loss {args.loss}")
    if args.resume and not args.checkpoint:
        raise InputError("--resume needs --checkpoint")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise InputError(f"--lr must be a finite number > 0, got {args.lr}")
    check_outputs(
        {"-o": args.output, "--json": args.json, "--checkpoint": args.checkpoint},
        {"--data": None if args.data == "digits" else args.data, "--labels": args.labels},
    )
    x, y, kind = load_data(args.data, args.labels)
    if args.loss == "supervised_info_nce" and y is None:
        raise InputError("--loss supervised_info_nce needs labels (--labels)")
    train, test = _split(x, y, args.test_size, args.seed)
    if y is not None:
        _check_probe_labels(y[train])
    x = torch.as_tensor(_prepare(x, kind, train), dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise InputError(
            f"--data: {args.data}: values too large for float32 once scaled "
            f"({int((~torch.isfinite(x)).sum())} become Inf or NaN)"
        )
    if kind == "images":
        encoder = ConvEncoder(in_channels=x.shape[1], width=args.width)
        encoder_spec = {"class": "ConvEncoder", "in_channels": x.shape[1], "width": args.width}
        augment = digits_augmentation()
    else:
        hidden = (8 * args.width, 4 * args.width)
        encoder = MLPEncoder(x.shape[1], hidden)
        encoder_spec = {"class": "MLPEncoder", "in_features": x.shape[1], "hidden": hidden}
        augment = Compose([RandomMask(0.1), GaussianNoise(0.1)])
    options = {}
    if args.loss == "debiased_info_nce":
        options = {"tau_plus": args.tau_plus, "beta": args.beta}
    trainer = ContrastiveTrainer(
        encoder,
        ProjectionHead(encoder.out_features, 128, 64),
        loss=args.loss,
        temperature=args.temperature,
        loss_options=options,
        augment=augment,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        moco=args.moco,
        queue_size=args.queue_size,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
        random_state=args.seed,
    )
    t0 = time.perf_counter()
    trainer.fit(x[train], None if y is None else y[train], resume=args.resume)
    seconds = time.perf_counter() - t0
    results = {
        "data": args.data,
        "samples": int(len(x)),
        "train_samples": int(len(train)),
        "test_samples": int(len(test)),
        "loss": args.loss,
        "moco": bool(args.moco),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "temperature": args.temperature,
        "seed": args.seed,
        "loss_history": trainer.history_,
        "pretraining_seconds": seconds,
    }
    if not quiet:
        print(
            f"pretrained {encoder_spec['class']} with {args.loss}{' (MoCo)' if args.moco else ''} "
            f"on {len(train)} samples for {args.epochs} epochs in {seconds:.1f} s; "
            f"loss {trainer.history_[0]:.4f} -> {trainer.history_[-1]:.4f}"
        )
    if y is not None:
        probe = evaluate_representation(
            trainer.transform(x[train]), y[train], trainer.transform(x[test]), y[test]
        )
        results.update(probe.as_dict())
        if not quiet:
            print(
                f"linear probe accuracy: {probe.linear_probe_accuracy:.4f} (all labels), "
                f"{probe.linear_probe_accuracy_10_per_class:.4f} (10 labels per class); "
                f"5-NN accuracy: {probe.knn_accuracy:.4f}"
            )
    if args.output:
        buffer = io.BytesIO()
        torch.save({"encoder": encoder_spec, "state_dict": encoder.state_dict()}, buffer)
        atomic_write_bytes(Path(args.output), buffer.getvalue())
        if not quiet:
            print(f"wrote {args.output}")
    return results


def run(args) -> int:
    results = pretrain(args)
    if args.json:
        atomic_write_json(Path(args.json), results)
        print(f"wrote {args.json}")
    return 0


def demo_section(out_dir: Path, progress: bool) -> dict:
    """A short SimCLR pretraining on digits (seconds) for ``nce demo``.

    Runs on one torch thread: the model is so small that more threads only add overhead.
    """
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--epochs", "15", "--width", "16", "--temperature", "0.2"]
    argv += ["-o", str(Path(out_dir) / "encoder.pt")]
    args = parser.parse_args(argv + ([] if progress else ["--no-progress"]))
    print("contrastive: SimCLR (nt_xent, τ = 0.2) on digits, 15 epochs, frozen-feature probes")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = pretrain(args)
    finally:
        torch.set_num_threads(threads)
    return {
        key: results[key]
        for key in (
            "linear_probe_accuracy",
            "linear_probe_accuracy_10_per_class",
            "knn_accuracy",
            "pretraining_seconds",
        )
    }
