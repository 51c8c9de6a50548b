"""``nce retrieve``: train, evaluate and query a two-tower text retriever.

Without a pairs file, the built-in English → Spanish Bible verses are used: ``train`` learns from
the training chapters and ``eval`` measures the held-out chapters (every held-out English verse
against every held-out Spanish verse). A pairs file holds ``query<TAB>document`` lines.

    nce retrieve train -o model.pt
    nce retrieve eval model.pt --json scores.json
    nce retrieve search model.pt "In the beginning God created the heaven" --top 5
    nce retrieve train my_pairs.tsv -o mine.pt --hard-negatives 3 --checkpoint ckpt.pt
    nce retrieve eval mine.pt my_test_pairs.tsv --json scores.json
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nce._checkpoint import build_module, load_checkpoint, save_checkpoint
from nce.cli._args import SEED_MAX, int_at_most, refuse_below, refuse_non_positive
from nce.cli._output import atomic_write_json, check_outputs
from nce.cli._table import InputError
from nce.retrieval.bible import load_bible_pairs, split_by_chapter
from nce.retrieval.evaluate import evaluate_pairs
from nce.retrieval.pairs_file import read_pairs
from nce.retrieval.search import top_k
from nce.retrieval.towers import ENCODER_DEFAULTS, HashedNgramEncoder
from nce.retrieval.trainer import DEFAULTS, LOSSES, RetrievalTrainer, hard_negatives_supported


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(
        dest="retrieve_command", required=True, metavar="{train,eval,search}"
    )
    train = sub.add_parser("train", help="train a retriever on pairs (default: built-in verses)")
    train.add_argument("pairs", nargs="?", help="a query<TAB>document file (default: built-in)")
    train.add_argument("-o", "--output", required=True, help="write the model to this file")
    train.add_argument("--loss", default=DEFAULTS["loss"], choices=LOSSES)
    train.add_argument(
        "--hard-negatives",
        type=int_at_most(10**4),
        default=DEFAULTS["hard_negatives"],
        help="mined negatives per query (info_nce only)",
    )
    train.add_argument(
        "--mine-every",
        type=int_at_most(10**6),
        default=DEFAULTS["mine_every"],
        help="epochs between two minings",
    )
    train.add_argument(
        "--false-negative-margin",
        type=float,
        default=None,
        help="drop mined candidates scoring above the positive's score - margin",
    )
    train.add_argument("--batch-size", type=int_at_most(10**6), default=DEFAULTS["batch_size"])
    train.add_argument("--temperature", type=float, default=DEFAULTS["temperature"])
    train.add_argument("--epochs", type=int_at_most(10**5), default=DEFAULTS["epochs"])
    train.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    train.add_argument(
        "--buckets",
        type=int_at_most(2**26),
        default=ENCODER_DEFAULTS["buckets"],
        help="hash buckets of the n-gram table",
    )
    train.add_argument(
        "--width",
        type=int_at_most(4096),
        default=ENCODER_DEFAULTS["width"],
        help="size of a bucket's row",
    )
    train.add_argument(
        "--dim",
        type=int_at_most(16384),
        default=ENCODER_DEFAULTS["dim"],
        help="size of the embeddings",
    )
    train.add_argument("--seed", type=int_at_most(SEED_MAX), default=0)
    train.add_argument("--checkpoint", help="checkpoint written after each epoch")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate = sub.add_parser("eval", help="recall@1, recall@10 and MRR of a model on pairs")
    evaluate.add_argument("model", help="a model written by nce retrieve train")
    evaluate.add_argument(
        "pairs", nargs="?", help="a query<TAB>document file (default: the built-in held-out verses)"
    )
    evaluate.add_argument("--json", help="write the scores to this JSON file")
    evaluate.add_argument("--no-progress", action="store_true", help="(nothing to show)")
    search = sub.add_parser("search", help="the documents that best match a query")
    search.add_argument("model", help="a model written by nce retrieve train")
    search.add_argument("query", help="the query text")
    search.add_argument(
        "--corpus", help="a file of documents, one per line (default: the built-in Spanish verses)"
    )
    search.add_argument(
        "--top", type=int_at_most(10**6), default=10, help="how many documents to show"
    )
    search.add_argument("--no-progress", action="store_true", help="(nothing to show)")


def _builtin_split():
    return split_by_chapter(load_bible_pairs())


def _check_training_options(args) -> None:
    refuse_below(
        ("--epochs", args.epochs, 1),
        ("--batch-size", args.batch_size, 2),
        ("--hard-negatives", args.hard_negatives, 0),
        ("--mine-every", args.mine_every, 1),
        ("--seed", args.seed, 0),
        ("--buckets", args.buckets, 1),
        ("--width", args.width, 1),
        ("--dim", args.dim, 1),
    )
    refuse_non_positive(("--lr", args.lr), ("--temperature", args.temperature))
    margin = args.false_negative_margin
    if margin is not None and not (math.isfinite(margin) and margin >= 0):
        raise InputError(f"--false-negative-margin must be a finite number >= 0, got {margin}")
    if args.hard_negatives and args.loss != "info_nce":
        raise InputError("--hard-negatives needs --loss info_nce")
    if args.hard_negatives and not hard_negatives_supported():
        raise InputError(
            "--hard-negatives needs nce.info_nce(..., in_batch=True), which this nce lacks"
        )
    if args.resume and not args.checkpoint:
        raise InputError("--resume needs --checkpoint")
    check_outputs({"-o": args.output, "--checkpoint": args.checkpoint}, {"PAIRS": args.pairs})


def _train(args) -> int:
    _check_training_options(args)
    if args.pairs:
        queries, documents = read_pairs(args.pairs, minimum=2)
        source = str(args.pairs)
    else:
        train, _ = _builtin_split()
        queries, documents, source = train.english, train.spanish, "built-in"
    if args.hard_negatives >= len(queries):
        raise InputError(
            f"--hard-negatives must be < the number of pairs ({len(queries)}), got "
            f"{args.hard_negatives}"
        )
    model = HashedNgramEncoder(buckets=args.buckets, width=args.width, dim=args.dim)
    trainer = RetrievalTrainer(
        model,
        loss=args.loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
        hard_negatives=args.hard_negatives,
        mine_every=args.mine_every,
        false_negative_margin=args.false_negative_margin,
        checkpoint=args.checkpoint,
        progress=not args.no_progress,
        random_state=args.seed,
    )
    trainer.fit(queries, documents, resume=args.resume)
    print(
        f"trained {args.loss} on {len(queries)} pairs ({source}) for {args.epochs} epochs in "
        f"{trainer.seconds_:.1f} s ({trainer.cpu_seconds_:.1f} CPU s); final loss "
        f"{trainer.history_[-1]:.4f}"
    )
    save_checkpoint(
        {
            "config": model.config,
            "state_dict": model.state_dict(),
            "training": {
                "pairs": source,
                "loss": args.loss,
                "epochs": args.epochs,
                "seed": args.seed,
            },
        },
        args.output,
        kind="retrieval",
    )
    print(f"wrote {args.output}")
    return 0


def load_model(path: str) -> HashedNgramEncoder:
    """The encoder saved by ``nce retrieve train -o``; a missing, damaged or foreign file raises a
    :class:`~nce._checkpoint.CheckpointError` naming it (exit 2)."""
    saved = load_checkpoint(path, kind="retrieval")
    model = build_module(
        saved,
        HashedNgramEncoder,
        saved.entry("config", dict),
        saved.entry("state_dict", dict),
        config_key="config",
        state_key="state_dict",
    )
    return model.eval()


def _eval(args) -> int:
    if args.json:
        check_outputs({"--json": args.json}, {"MODEL": args.model, "PAIRS": args.pairs})
    if args.pairs:
        queries, documents = read_pairs(args.pairs)
    else:
        _, test = _builtin_split()
        queries, documents = test.english, test.spanish
    model = load_model(args.model)
    scores = evaluate_pairs(model, queries, documents)
    print(
        f"{len(queries)} pairs, both directions averaged: recall@1 {scores['recall_at_1']:.4f}, "
        f"recall@10 {scores['recall_at_10']:.4f}, MRR {scores['mrr']:.4f} "
        f"(query→document recall@1 {scores['query_to_document']['recall_at_1']:.4f})"
    )
    if args.json:
        atomic_write_json(Path(args.json), {**scores, "pairs": len(queries)})
        print(f"wrote {args.json}")
    return 0


def _read_corpus(path: str) -> list[str]:
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"--corpus: {path} is not UTF-8 text (byte {err.start})") from err
    documents = [line.strip() for line in text.splitlines() if line.strip()]
    if not documents:
        raise InputError(f"--corpus: {path} holds no documents")
    return documents


def _search(args) -> int:
    if args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    if not args.query.strip():
        raise InputError("query: the query is empty")
    documents = _read_corpus(args.corpus) if args.corpus else load_bible_pairs().spanish
    model = load_model(args.model)
    q = model.embed([args.query], "query")
    x = model.embed(documents, "document")
    scores, best = top_k(q, x, min(args.top, len(documents)))
    print(f"documents best matching {args.query!r}:")
    for rank, (score, i) in enumerate(zip(scores[0].tolist(), best[0].tolist(), strict=True), 1):
        print(f"{rank:3d}. cosine {score:+.3f}  [{i}] {documents[i]}")
    return 0


def run(args) -> int:
    if args.retrieve_command == "eval":
        return _eval(args)
    if args.retrieve_command == "search":
        return _search(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # sparse rows and small matrices: extra threads only wait
    try:
        return _train(args)
    finally:
        torch.set_num_threads(threads)


def tfidf_scores(fit_texts, queries, documents) -> torch.Tensor:
    """Cosine similarities (N, M) of TF-IDF vectors over character 2–4-grams (scikit-learn's
    ``char_wb``, sublinear term frequency), the vocabulary fitted on ``fit_texts``: the baseline
    a learned retriever must beat."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    vectorizer.fit(fit_texts)
    q, x = vectorizer.transform(queries), vectorizer.transform(documents)
    return torch.from_numpy((q @ x.T).toarray()).float()  # rows are unit: cosines


# (training pairs, epochs, held-out verses) of nce demo's section, without and with --quick.
DEMO_SIZES = {False: (4000, 3, 500), True: (2500, 3, 300)}


def demo_section(out_dir: Path, progress: bool = True, quick: bool = False):
    """``nce demo``'s retrieval job: the two-tower retriever trained on a random subset of the
    built-in training verses (4000 pairs, or 2500 with ``quick``, for 3 epochs of batch 128 at
    lr 0.03; a smaller table than ``nce retrieve train``'s), then each of 500 held-out English
    verses (300 with ``quick``) as a query against those Spanish verses, next to TF-IDF character
    n-grams on the same subset. Returns a ``SectionResult``."""
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
    from nce.retrieval.mining import text_ids
    from nce.retrieval.search import ranks

    n_train, epochs, n_test = DEMO_SIZES[bool(quick)]
    train, test = _builtin_split()
    generator = torch.Generator().manual_seed(0)
    train = train.subset(torch.randperm(len(train), generator=generator)[:n_train].tolist())
    test = test.subset(torch.randperm(len(test), generator=generator)[:n_test].tolist())
    answers, groups = torch.arange(n_test), text_ids(test.spanish)
    with one_thread():
        with section_bar("retrieval", 2, progress) as bar:
            model = HashedNgramEncoder(buckets=1 << 16, width=64, dim=64)
            trainer = RetrievalTrainer(
                model, epochs=epochs, batch_size=128, lr=0.03, progress=False, random_state=0
            )
            trainer.fit(train.english, train.spanish)
            q, x = model.embed(test.english, "query"), model.embed(test.spanish, "document")
            learned = ranks(q, x, answers, groups)
            bar.update()
            scores = tfidf_scores(train.english + train.spanish, test.english, test.spanish)
            baseline = ranks(scores, torch.eye(n_test), answers, groups)
            bar.update()
    ks = list(range(1, 21))

    def recall(rank, k):
        return float((rank <= k).double().mean())

    plt = pyplot("nce demo")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(ks, [recall(learned, k) for k in ks], "o-", ms=3, label="two-tower (info_nce)")
    ax.plot(ks, [recall(baseline, k) for k in ks], "s--", ms=3, label="TF-IDF char 2–4-grams")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K, English → Spanish")
    ax.set_ylim(0, 1.02)
    ax.set_xticks([1, 5, 10, 15, 20])
    ax.set_title(f"{n_test} held-out verses against each other")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, Path(out_dir) / "retrieval.png")
    plt.close(fig)
    r1, r10 = recall(learned, 1), recall(learned, 10)
    b1, b10 = recall(baseline, 1), recall(baseline, 10)
    ahead = float((learned < baseline).double().mean())
    behind = float((learned > baseline).double().mean())
    f = format_number
    better = "above" if r1 > b1 else "below"
    return announce(
        SectionResult(
            measures=(
                Measure(
                    "recall_at_1",
                    "recall@1, English → Spanish",
                    r1,
                    b1,
                    "tfidf_recall_at_1",
                    "TF-IDF",
                ),
                Measure("recall_at_10", "recall@10", r10, b10, "tfidf_recall_at_10", "TF-IDF"),
                Measure("training_seconds", "training seconds", trainer.seconds_),
                Measure("training_pairs", "training pairs", n_train),
                Measure("epochs", "epochs", epochs),
                Measure("ahead_of_tfidf", "queries ranked higher than by TF-IDF", ahead),
                Measure("behind_tfidf", "queries ranked lower than by TF-IDF", behind),
            ),
            figure="retrieval.png",
            note=(
                f"retrieval: a hashed n-gram two-tower encoder trained with in-batch InfoNCE on "
                f"{n_train} English–Spanish verse pairs for {epochs} epochs; {n_test} verses of "
                f"held-out chapters searched against each other."
            ),
            reading=(
                f"After {f(trainer.seconds_)} s of training the retriever puts the right Spanish "
                f"verse first for {f(100 * r1)} % of the English ones, {better} TF-IDF's "
                f"{f(100 * b1)} %.",
                f"Within the top 10: {f(100 * r10)} % against TF-IDF's {f(100 * b10)} %; the "
                f"retriever ranks the right verse higher than TF-IDF for {f(100 * ahead)} % of "
                f"the queries, lower for {f(100 * behind)} %.",
            ),
        )
    )
