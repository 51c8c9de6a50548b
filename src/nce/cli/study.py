"""``nce study``: run one of the contrastive-learning studies on digits, write its table and PNG.

    nce study temperature --epochs 40 --out study-output
    nce study batch-size | false-negatives | soft-labels | noise | features

Each study pretrains small encoders on the digits training split (stratified 70/30, seed 0) and
probes their frozen features (see :mod:`nce.contrastive.studies`). The command prints a Markdown
table and writes ``study_<name>.md``, ``study_<name>.json`` (the rows) and ``study_<name>.png``
into ``--out``. The figure needs matplotlib (``pip install nce[plot]``); without it the command
stops with status 2 before any training.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from nce.cli._args import SEED_MAX, int_at_most, refuse_below
from nce.cli._output import (
    atomic_save_figure,
    atomic_write_bytes,
    atomic_write_json,
    check_output_folder,
    check_outputs,
)
from nce.cli._plot import pyplot
from nce.cli._study_report import markdown_table, plot_study
from nce.cli._table import InputError
from nce.contrastive import DigitsSplit, load_digits_split
from nce.contrastive.studies import STUDIES, StudyConfig, run_study

FORMATS = (".md", ".json", ".png")  # the files written into --out


def add_arguments(parser) -> None:
    parser.add_argument("study", choices=list(STUDIES), help="which study to run")
    parser.add_argument(
        "--epochs",
        type=int_at_most(10**5),
        default=40,
        help="pretraining epochs per run (the batch-size study trains each size for --budget "
        "seconds instead)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="batch-size study only: seconds of training per batch size, the same for every size "
        "(default 10)",
    )
    parser.add_argument("--batch-size", type=int_at_most(10**6), default=256)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--seed", type=int_at_most(SEED_MAX), default=0)
    parser.add_argument(
        "--max-train", type=int, help="use only the first N training images (quick runs)"
    )
    parser.add_argument("--out", default="study-output", help="folder for the table and PNG")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _data(max_train: int | None) -> DigitsSplit:
    data = load_digits_split(test_size=0.3, random_state=0)
    if max_train is None:
        return data
    if max_train < 100:
        raise InputError(
            f"--max-train must be >= 100 (the 10-labels-per-class probe), got {max_train}"
        )
    counts = data.y_train[:max_train].bincount(minlength=10)
    if int(counts.min()) < 10:
        raise InputError(
            f"--max-train {max_train}: the first {max_train} training images hold only "
            f"{int(counts.min())} of class {int(counts.argmin())}; the 10-labels-per-class probe "
            "needs 10 of each"
        )
    return DigitsSplit(data.x_train[:max_train], data.y_train[:max_train], data.x_test, data.y_test)


def run(args) -> int:
    refuse_below(("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 2))
    if not args.temperature > 0:
        raise InputError(f"--temperature must be > 0, got {args.temperature}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.budget is not None:
        if args.study != "batch-size":
            raise InputError(
                f"--budget applies only to the batch-size study (the {args.study} study trains "
                "for --epochs)"
            )
        if not (args.budget > 0 and math.isfinite(args.budget)):
            raise InputError(f"--budget must be a positive number of seconds, got {args.budget}")
    check_output_folder(args.out, "--out")
    stem = "study_" + args.study.replace("-", "_")
    written = {f"--out's {stem}{ext}": Path(args.out) / f"{stem}{ext}" for ext in FORMATS}
    check_outputs({**written, "--json": args.json})
    pyplot("nce study")  # the figure comes last: refuse before the training when it cannot be drawn
    data = _data(args.max_train)
    config = StudyConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        temperature=args.temperature,
        seed=args.seed,
        progress=not args.no_progress,
    )
    kw = {}
    if args.study == "batch-size" and args.max_train is not None:
        kw["sizes"] = tuple(n for n in (16, 32, 64, 128, 256, 512, 1024) if n <= args.max_train)
    if args.budget is not None:
        kw["budget_seconds"] = args.budget
    t0 = time.perf_counter()
    rows = run_study(args.study, data, config, **kw)
    seconds = time.perf_counter() - t0
    table = markdown_table(rows)
    print(f"study {args.study}: {seconds:.1f} s")
    print(table)
    out = Path(args.out)
    atomic_write_bytes(out / f"{stem}.md", (table + "\n").encode())
    atomic_write_json(out / f"{stem}.json", {"study": args.study, "rows": rows})
    plot_study(args.study, rows, out / f"{stem}.png", save=atomic_save_figure)
    print(f"wrote {out / (stem + '.md')}, {out / (stem + '.json')} and {out / (stem + '.png')}")
    if args.json:
        atomic_write_json(Path(args.json), {"study": args.study, "rows": rows})
        print(f"wrote {args.json}")
    return 0
