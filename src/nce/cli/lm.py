"""``nce lm train | eval | generate``: a word-level language model with an NCE output layer.

nce lm train --corpus kjv --loss nce --k 25 --epochs 3 -o lm.pt
nce lm train --corpus kjv --loss nce --k 25 --epochs 6 -o lm.pt --resume
nce lm eval lm.pt --json out.json
nce lm generate lm.pt --prompt "in the beginning" -n 30
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from nce._random import seeded
from nce.cli._args import SEED_MAX, int_at_most, refuse_below, refuse_non_positive
from nce.cli._output import atomic_write_json, check_outputs
from nce.cli._table import InputError
from nce.lm import (
    EVAL_BATCH,
    SELF_NORMALIZATION_ROWS,
    LanguageModel,
    LMConfig,
    generate,
    load_model,
    log_partition_stats,
    perplexity,
    train,
)
from nce.text import (
    Vocabulary,
    check_corpus,
    corpus_checksum,
    read_corpus,
    split_lines,
    tokenize,
)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="lm_command", required=True)
    tr = sub.add_parser("train", help="train on the built-in KJV or a text file")
    tr.add_argument("--corpus", default="kjv", help="'kjv' or the path of a UTF-8 text file")
    tr.add_argument("--loss", choices=["nce", "ranking", "full"], default="nce")
    tr.add_argument(
        "--k",
        type=int_at_most(10**6),
        default=25,
        help="noise words per target word (per batch with --shared-noise)",
    )
    tr.add_argument(
        "--shared-noise",
        action="store_true",
        help="one set of k noise words for the whole batch instead of k per word (faster; "
        "suits --loss ranking with a large k, slows NCE's learning)",
    )
    tr.add_argument(
        "--noise-power",
        type=float,
        default=0.75,
        help="noise distribution q(w) ∝ count(w)^power (1: the unigram distribution)",
    )
    tr.add_argument(
        "--self-normalization",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="weight of the self-normalization term ALPHA·(log Z(h))², over the exact log Z of "
        f"{SELF_NORMALIZATION_ROWS} contexts per step (Devlin et al. 2014; 0: none, the default)",
    )
    tr.add_argument(
        "--log-z",
        default="0",
        help="log Z the NCE loss subtracts: a number (0: self-normalized, the default), "
        "'learned' (one scalar) or 'context' (a linear function of the hidden state)",
    )
    tr.add_argument(
        "--late-k",
        type=int_at_most(10**6),
        default=None,
        help="noise words per target word in the last --late-epochs epochs (a larger k late)",
    )
    tr.add_argument("--late-epochs", type=int_at_most(10**5), default=0)
    tr.add_argument("--epochs", type=int_at_most(10**5), default=1)
    tr.add_argument("--batch-size", type=int_at_most(10**5), default=32)
    tr.add_argument("--bptt", type=int_at_most(10**5), default=35)
    tr.add_argument("--dim", type=int_at_most(2**14), default=256)
    tr.add_argument("--hidden", type=int_at_most(2**14), default=256)
    tr.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    tr.add_argument("--tied", action="store_true")
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument(
        "--optimizer",
        choices=["lazy_adam", "adam"],
        default=None,
        help="lazy_adam: Adam on the embedding rows each step reads, O(rows read) (the default "
        "for --loss nce and ranking); adam: dense Adam over every row of the vocabulary at every "
        "step (the default for --loss full, whose step reads every row anyway)",
    )
    tr.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine", "plateau"],
        default="constant",
        help="cosine: decay to 0 over all steps; plateau: divide by 4 when the validation "
        "perplexity does not improve",
    )
    tr.add_argument("--min-count", type=int, default=2, help="rarer words become <unk>")
    tr.add_argument("--seed", type=int_at_most(SEED_MAX), default=0)
    tr.add_argument("--max-lines", type=int, default=None, help="use only the first lines")
    tr.add_argument("-o", "--output", required=True, help="checkpoint path")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    tr.add_argument("--no-progress", action="store_true")
    ev = sub.add_parser("eval", help="exact test perplexity of a checkpoint")
    ev.add_argument("checkpoint")
    ev.add_argument("--json", help="write test_perplexity (and log Z statistics) here")
    gen = sub.add_parser("generate", help="sample text from a checkpoint")
    gen.add_argument("checkpoint")
    gen.add_argument("--prompt", default="")
    gen.add_argument("-n", type=int_at_most(10**6), default=30)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--seed", type=int_at_most(SEED_MAX), default=0)


def _corpus(name: str, max_lines: int | None):
    return [tokenize(line) for line in read_corpus(name, max_lines)]


def _load(path: str):
    """The model of a checkpoint, its vocabulary, and the checkpoint."""
    model, saved = load_model(path)
    tokens = saved.entry("vocab", list)
    if len(tokens) != model.config.vocab_size or not all(isinstance(t, str) for t in tokens):
        raise saved.error(
            f"entry 'vocab' must list the {model.config.vocab_size} words of the model as strings"
        )
    vocab = Vocabulary(tuple(tokens), tuple(int(c) for c in saved["counts"]))
    return saved, vocab, model


def _log_z(text: str) -> str | float:
    if text in ("learned", "context"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"--log-z must be a finite number, 'learned' or 'context', got {text!r}")
    return value


def _train(args) -> int:
    if args.k < 1:
        raise InputError(f"--k must be >= 1, got {args.k}")
    check_outputs({"-o": args.output}, {"--corpus": None if args.corpus == "kjv" else args.corpus})
    checks = {
        "--dim": args.dim,
        "--hidden": args.hidden,
        "--epochs": args.epochs,
        "--batch-size": args.batch_size,
        "--bptt": args.bptt,
        "--min-count": args.min_count,
    }
    refuse_below(*((flag, value, 1) for flag, value in checks.items()))
    if args.max_lines is not None and args.max_lines < 1:
        raise InputError(f"--max-lines must be >= 1, got {args.max_lines}")
    refuse_non_positive(("--lr", args.lr))
    log_z = _log_z(args.log_z)
    if not (math.isfinite(args.noise_power) and args.noise_power >= 0):
        raise InputError(f"--noise-power must be a finite number >= 0, got {args.noise_power}")
    if not (math.isfinite(args.self_normalization) and args.self_normalization >= 0):
        raise InputError(
            f"--self-normalization must be a finite number >= 0, got {args.self_normalization}"
        )
    if args.late_k is None and args.late_epochs:
        raise InputError(f"--late-epochs {args.late_epochs} needs --late-k")
    if args.late_k is not None and not 1 <= args.late_epochs <= args.epochs:
        raise InputError(
            f"--late-k needs --late-epochs between 1 and --epochs ({args.epochs}), "
            f"got {args.late_epochs}"
        )
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    text = read_corpus(args.corpus, args.max_lines)
    lines = [tokenize(line) for line in text]
    train_lines, valid_lines, test_lines = split_lines(lines, random_state=0)
    vocab = Vocabulary.build(train_lines, min_count=args.min_count)
    if args.loss != "full" and args.k >= len(vocab):
        raise InputError(f"--k {args.k} must be below the vocabulary size {len(vocab)}")
    if args.late_k is not None:
        if args.loss == "full":
            raise InputError("--late-k applies to --loss nce or ranking, not full")
        if not 1 <= args.late_k < len(vocab):
            raise InputError(
                f"--late-k {args.late_k} must be >= 1 and below the vocabulary size {len(vocab)}"
            )
    config = LMConfig(
        len(vocab),
        args.dim,
        args.hidden,
        args.cell,
        args.tied,
        loss=args.loss,
        num_samples=args.k,
        shared_noise=args.shared_noise,
        log_z=log_z,
        noise_power=args.noise_power,
        self_normalization=args.self_normalization,
    )
    valid_stream = vocab.encode(valid_lines)
    for name, stream in (("validation", valid_stream), ("test", vocab.encode(test_lines))):
        if stream.numel() < 2 * EVAL_BATCH:
            raise InputError(
                f"--corpus {args.corpus}: the {name} split has {stream.numel()} tokens; at least "
                f"{2 * EVAL_BATCH} are needed (use a longer corpus)"
            )
    with seeded(args.seed):
        model = LanguageModel(config, torch.tensor(vocab.counts))
    history = train(
        model,
        vocab.encode(train_lines),
        epochs=args.epochs,
        batch_size=args.batch_size,
        bptt=args.bptt,
        lr=args.lr,
        random_state=args.seed,
        checkpoint=args.output,
        resume=args.resume,
        extra={
            "vocab": list(vocab.tokens),
            "corpus": args.corpus if args.corpus == "kjv" else str(Path(args.corpus).resolve()),
            "max_lines": args.max_lines,
            "corpus_checksum": corpus_checksum(text),
        },
        valid_stream=valid_stream,
        progress=not args.no_progress,
        optimizer=args.optimizer,
        lr_schedule=args.lr_schedule,
        late_num_samples=args.late_k,
        late_epochs=args.late_epochs,
    )
    for record in history:
        print(
            f"epoch {record['epoch']}: train loss {record['loss']:.4f}, valid perplexity "
            f"{record['valid_perplexity']:.2f}, {record['tokens_per_second']:.0f} tokens/s"
        )
    print(f"wrote {args.output}")
    return 0


def _eval(args) -> int:
    saved, vocab, model = _load(args.checkpoint)
    corpus, max_lines = saved.entry("corpus", str), saved.get("max_lines")
    check_outputs(
        {"--json": args.json},
        {"CHECKPOINT": args.checkpoint, "its corpus": None if corpus == "kjv" else corpus},
    )
    text = read_corpus(corpus, max_lines)
    if "corpus_checksum" in saved:
        check_corpus(text, saved["corpus_checksum"], corpus, owner=args.checkpoint)
    else:
        print(
            f"warning: {args.checkpoint} was written by an earlier version of nce without a "
            f"corpus checksum: the text of {corpus} cannot be verified to be the training corpus",
            file=sys.stderr,
        )
    _, _, test_lines = split_lines([tokenize(line) for line in text], random_state=0)
    stream = vocab.encode(test_lines)
    result = {"test_perplexity": perplexity(model, stream)}
    result["log_z_mean"], result["log_z_std"] = log_partition_stats(model, stream)
    print(
        f"test perplexity {result['test_perplexity']:.2f}; log Z(c) over test contexts: "
        f"mean {result['log_z_mean']:.3f}, std {result['log_z_std']:.3f}"
    )
    if args.json:
        atomic_write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    return 0


def _generate(args) -> int:
    refuse_non_positive(("--temperature", args.temperature))
    _, vocab, model = _load(args.checkpoint)
    if args.n < 1:
        raise InputError(f"-n must be >= 1, got {args.n}")
    index = vocab.index
    prompt = [index.get(t, 0) for t in tokenize(args.prompt)] or [index["<eos>"]]
    ids = generate(
        model, prompt, args.n, args.temperature, torch.Generator().manual_seed(args.seed)
    )
    print(" ".join([*tokenize(args.prompt), *vocab.decode(ids)]))
    return 0


def run(args) -> int:
    return {"train": _train, "eval": _eval, "generate": _generate}[args.lm_command](args)


def demo_section(out_dir: Path, progress: bool, quick: bool = False):
    """``nce demo``'s language model: the full softmax and NCE (k = 25) trained on the same slice
    of the KJV (the first 4,000 verses for 2 epochs; 1,000 verses for 1 epoch with ``quick``),
    compared by exact validation perplexity and training time. Returns a ``SectionResult``.

    Runs on one torch thread: the model is small enough that more threads only wait.
    """
    from nce.cli._output import atomic_save_figure
    from nce.cli._plot import pyplot
    from nce.cli._report_page import (
        Measure,
        SectionResult,
        announce,
        format_number,
        one_thread,
        section_bar,
    )

    verses, epochs = (1000, 1) if quick else (4000, 2)
    lines = _corpus("kjv", verses)
    train_lines, valid_lines, _ = split_lines(lines, random_state=0)
    vocab = Vocabulary.build(train_lines, min_count=2)
    records = {}
    with one_thread():
        with section_bar("language model", 2, progress) as bar:
            for loss in ("full", "nce"):
                config = LMConfig(len(vocab), 64, 64, loss=loss, num_samples=25)
                with seeded(0):
                    model = LanguageModel(config, torch.tensor(vocab.counts))
                records[loss] = train(
                    model,
                    vocab.encode(train_lines),
                    epochs=epochs,
                    batch_size=16,
                    bptt=20,
                    valid_stream=vocab.encode(valid_lines),
                    progress=False,
                )
                bar.update()
    seconds = {loss: sum(r["seconds"] for r in history) for loss, history in records.items()}
    records = {loss: history[-1] | {"seconds": seconds[loss]} for loss, history in records.items()}
    full, nce = records["full"], records["nce"]
    plt = pyplot("nce demo")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    names = ["full softmax", "NCE, k = 25"]
    axes[0].bar(names, [full["valid_perplexity"], nce["valid_perplexity"]], color=["C0", "C1"])
    axes[0].axhline(len(vocab), color="gray", ls="--", lw=1, label=f"uniform, V = {len(vocab)}")
    axes[0].set_ylabel("validation perplexity (exact)")
    axes[0].legend()
    axes[1].bar(names, [full["seconds"], nce["seconds"]], color=["C0", "C1"])
    axes[1].set_ylabel(f"training seconds ({epochs} epoch{'s' if epochs > 1 else ''})")
    fig.suptitle(f"LSTM language model on {verses} KJV verses")
    fig.tight_layout()
    path = Path(out_dir) / "lm.png"
    atomic_save_figure(fig, path)
    plt.close(fig)
    f = format_number
    ratio = nce["valid_perplexity"] / full["valid_perplexity"]
    speed = full["seconds"] / nce["seconds"]
    worst = max(nce["valid_perplexity"], full["valid_perplexity"])
    return announce(
        SectionResult(
            measures=(
                Measure(
                    "nce_perplexity",
                    "validation perplexity, NCE",
                    nce["valid_perplexity"],
                    full["valid_perplexity"],
                    "softmax_perplexity",
                    "full softmax",
                ),
                Measure(
                    "nce_seconds",
                    "training seconds, NCE",
                    nce["seconds"],
                    full["seconds"],
                    "softmax_seconds",
                    "full softmax",
                ),
                Measure(
                    "nce_tokens_per_second",
                    "tokens per second, NCE",
                    nce["tokens_per_second"],
                    full["tokens_per_second"],
                    "softmax_tokens_per_second",
                    "full softmax",
                ),
                Measure("vocab_size", "vocabulary size V (uniform perplexity)", len(vocab)),
                Measure("epochs", "epochs", epochs),
            ),
            figure=path.name,
            note=(
                f"language model: an LSTM (64 units) trained {epochs} epoch"
                f"{'s' if epochs > 1 else ''} on {verses} KJV verses "
                f"with the full softmax, then with NCE (k = 25); exact validation perplexity."
            ),
            reading=(
                f"NCE reached validation perplexity {f(nce['valid_perplexity'])} against "
                f"{f(full['valid_perplexity'])} for the full softmax ({f(ratio)} times), both "
                f"{'below' if worst < len(vocab) else 'not both below'} the uniform {len(vocab)}.",
                f"NCE trained in {f(nce['seconds'])} s against {f(full['seconds'])} s "
                f"({f(max(speed, 1 / speed))} times {'faster' if speed >= 1 else 'slower'}), "
                f"scoring k + 1 = 26 words per token where the softmax scores V = {len(vocab)}.",
            ),
        )
    )
