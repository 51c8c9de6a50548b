"""``nce align``: CLIP or SigLIP in miniature on captioned digits, and queries of a trained model.

Trains an image tower and a text tower on scikit-learn's digits paired with English captions,
then prints and writes the zero-shot accuracy on test images whose captions use wording never
seen in training, the prompt-ensemble accuracy, and retrieval recall@1 and @5 (fractions in
[0, 1]; recall is the mean of image→text and text→image).

    nce align --loss clip --json align.json -o align.pt
    nce align --loss siglip --checkpoint ckpt.pt
    nce align --loss siglip --checkpoint ckpt.pt --resume     # after an interruption
    nce align query align.pt "a handwritten three" --top 8 --out grid.png
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nce._checkpoint import build_module, load_checkpoint, save_checkpoint
from nce.cli._args import SEED_MAX, int_at_most, refuse_below, refuse_non_positive
from nce.cli._output import (
    atomic_save_figure,
    atomic_write_json,
    check_outputs,
)
from nce.cli._plot import pyplot
from nce.cli._table import InputError
from nce.contrastive.captions import load_captioned_digits
from nce.contrastive.image_text import ALIGN_LOSSES, align
from nce.contrastive.towers import TwoTowerModel
from nce.contrastive.zero_shot import embed_images, embed_texts


def add_arguments(parser) -> None:
    parser.add_argument("--loss", default="clip", choices=ALIGN_LOSSES)
    parser.add_argument("--epochs", type=int_at_most(10**5), default=40)
    parser.add_argument("--batch-size", type=int_at_most(10**6), default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--dim", type=int_at_most(16384), default=32, help="size of the shared embedding space"
    )
    parser.add_argument(
        "--width", type=int_at_most(1024), default=16, help="width of the image encoder"
    )
    parser.add_argument(
        "--word-dropout", type=float, default=0.3, help="chance of hiding a caption word"
    )
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--seed", type=int_at_most(SEED_MAX), default=0)
    parser.add_argument("--checkpoint", help="checkpoint written after each epoch")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--json", help="write the accuracies and recalls to this JSON file")
    parser.add_argument("-o", "--output", help="write the trained model to this .pt file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sub = parser.add_subparsers(dest="align_command", metavar="{query}")
    query = sub.add_parser("query", help="the test images that best match a caption")
    query.add_argument("model", help="a model written by nce align -o")
    query.add_argument("text", help='a caption, e.g. "a handwritten three"')
    query.add_argument("--top", type=int_at_most(10**6), default=8, help="how many images to show")
    query.add_argument("--out", help="write the images as a PNG grid to this file")
    query.add_argument("--no-progress", action="store_true", help="(nothing to show)")


def _check_training_options(args) -> None:
    refuse_below(
        ("--epochs", args.epochs, 1),
        ("--batch-size", args.batch_size, 2),
        ("--dim", args.dim, 1),
        ("--width", args.width, 1),
        ("--seed", args.seed, 0),
    )
    refuse_non_positive(("--lr", args.lr))
    if not 0 <= args.word_dropout < 1:
        raise InputError(f"--word-dropout must lie in [0, 1), got {args.word_dropout}")
    if not 0 < args.test_size < 1:
        raise InputError(f"--test-size must lie in (0, 1), got {args.test_size}")
    if args.resume and not args.checkpoint:
        raise InputError("--resume needs --checkpoint")
    if args.loss == "siglip":
        import nce

        if not hasattr(nce, "pairwise_nce"):
            raise InputError("--loss siglip needs nce.pairwise_nce, which this nce lacks")
    check_outputs({"-o": args.output, "--json": args.json, "--checkpoint": args.checkpoint})


def _align(args):
    return align(
        loss=args.loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        dim=args.dim,
        width=args.width,
        word_dropout=args.word_dropout,
        test_size=args.test_size,
        checkpoint=args.checkpoint,
        resume=args.resume,
        progress=not args.no_progress,
        random_state=args.seed,
    )


def _train(args) -> int:
    _check_training_options(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small towers: extra threads only wait on each other
    try:
        result = _align(args)
    finally:
        torch.set_num_threads(threads)

    bias = "" if result.bias is None else f", bias {result.initial_bias:g} -> {result.bias:.3f}"
    print(
        f"trained {args.loss} for {args.epochs} epochs in {result.seconds:.1f} s; "
        f"temperature {result.initial_temperature:.4g} -> {result.temperature:.4g}{bias}"
    )
    print(
        f"zero-shot accuracy on unseen wording: {result.zero_shot_accuracy:.4f} "
        f"(prompt ensemble {result.ensemble_accuracy:.4f}); retrieval recall@1 "
        f"{result.recall_at_1:.4f}, recall@5 {result.recall_at_5:.4f}"
    )
    if args.output:
        model = result.model
        save_checkpoint(
            {
                "loss": args.loss,
                "config": model.config,
                "state_dict": model.state_dict(),
                "split": result.config,
                "temperature": result.temperature,
                "bias": result.bias,
            },
            args.output,
            kind="align_model",
        )
        print(f"wrote {args.output}")
    if args.json:
        atomic_write_json(Path(args.json), {**result.as_dict(), "seed": args.seed})
        print(f"wrote {args.json}")
    return 0


def load_model(path: str) -> tuple[TwoTowerModel, dict]:
    """The towers saved by ``nce align -o`` and the saved entries; a missing, damaged or foreign
    file raises a :class:`~nce._checkpoint.CheckpointError` naming it (exit 2)."""
    saved = load_checkpoint(path, kind="align_model")
    model = build_module(
        saved,
        TwoTowerModel,
        saved.entry("config", dict),
        saved.entry("state_dict", dict),
        config_key="config",
        state_key="state_dict",
    )
    saved.entry("split", dict)
    return model.eval(), saved


def _query(args) -> int:
    if args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    if not args.text.strip():
        raise InputError("text: the caption is empty")
    if args.out:
        check_outputs({"--out": args.out}, {"MODEL": args.model})
    model, saved = load_model(args.model)
    data = load_captioned_digits(**saved["split"])
    scores = (embed_images(model, data.x_test) @ embed_texts(model, [args.text]).T).squeeze(1)
    best = scores.argsort(descending=True, stable=True)[: args.top]
    print(f"test images best matching {args.text!r}:")
    for rank, i in enumerate(best.tolist(), start=1):
        print(f"{rank:3d}. image {i:4d}  label {int(data.y_test[i])}  cosine {scores[i]:+.3f}")
    if args.out:
        _save_grid(data.x_test[best], data.y_test[best], scores[best], args.text, Path(args.out))
        print(f"wrote {args.out}")
    return 0


def _save_grid(images, labels, scores, text: str, path: Path) -> None:
    plt = pyplot("nce align query --out")

    columns = min(len(images), 8)
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(1.3 * columns, 1.5 * rows + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, score in zip(axes.flat, images, labels, scores, strict=False):
        ax.imshow(image[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{int(label)} ({float(score):.2f})", fontsize=8)
    fig.suptitle(f"best matches for {text!r}", fontsize=9)
    try:
        atomic_save_figure(fig, path)
    finally:
        plt.close(fig)


def run(args) -> int:
    if args.align_command == "query":
        return _query(args)
    return _train(args)


def demo_section(out_dir: Path, progress: bool, quick: bool = False):
    """``nce demo``'s alignment job: CLIP on captioned digits for 10 epochs (3 with ``quick``;
    ``nce align`` trains 40 by default), zero-shot accuracy on unseen caption wording against
    chance, and retrieval recall. Returns a ``SectionResult``."""
    from nce.cli._report_page import (
        Measure,
        SectionResult,
        announce,
        format_number,
        one_thread,
        section_bar,
    )

    epochs = 3 if quick else 10
    default_epochs = 40
    with one_thread():
        with section_bar("alignment", 1, progress) as bar:
            result = align(loss="clip", epochs=epochs, progress=False, random_state=0)
            bar.update()
    plt = pyplot("nce demo")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot(range(1, len(result.loss_history) + 1), result.loss_history, "o-")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("CLIP loss")
    names = ["zero-shot", "prompt ensemble", "recall@1", "recall@5"]
    values = [
        result.zero_shot_accuracy,
        result.ensemble_accuracy,
        result.recall_at_1,
        result.recall_at_5,
    ]
    axes[1].bar(names, values, color=["C0", "C0", "C1", "C1"])
    axes[1].axhline(0.1, color="gray", ls="--", lw=1, label="chance (10 digits)")
    axes[1].set_ylim(0, 1.2)
    axes[1].legend(loc="upper right")
    axes[1].tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "align.png"
    atomic_save_figure(fig, path)
    plt.close(fig)
    f = format_number
    lift = result.zero_shot_accuracy / 0.1
    return announce(
        SectionResult(
            measures=(
                Measure(
                    "zero_shot_accuracy",
                    "zero-shot accuracy, unseen wording",
                    result.zero_shot_accuracy,
                    0.1,
                    "chance",
                    "chance",
                ),
                Measure("ensemble_accuracy", "prompt-ensemble accuracy", result.ensemble_accuracy),
                Measure("recall_at_1", "retrieval recall@1", result.recall_at_1),
                Measure("recall_at_5", "retrieval recall@5", result.recall_at_5),
                Measure("temperature", "learned temperature", result.temperature),
                Measure("epochs", "epochs", epochs, default_epochs, "default_epochs", "default"),
                Measure("training_seconds", "training seconds", result.seconds),
            ),
            figure=path.name,
            note=(
                f"alignment: CLIP in miniature, digit images and English captions, {epochs} epochs "
                f"(fewer than nce align's {default_epochs}, for the demo); test captions use "
                f"wording never seen in training."
            ),
            reading=(
                f"Zero-shot accuracy on unseen wording is {f(result.zero_shot_accuracy)}, "
                f"{f(lift)} times chance (0.1); the prompt ensemble gives "
                f"{f(result.ensemble_accuracy)}.",
                f"Retrieval recall@1 is {f(result.recall_at_1)} and recall@5 "
                f"{f(result.recall_at_5)}, after {epochs} epochs in {f(result.seconds)} s; the "
                f"temperature went from {f(result.initial_temperature)} to "
                f"{f(result.temperature)}.",
            ),
        )
    )
