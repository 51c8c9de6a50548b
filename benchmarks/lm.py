"""Language modelling on the King James Bible: full softmax against NCE and ranking NCE.

The same LSTM (hidden 256) and epochs for every output loss; exact test perplexity (normalized over
the whole vocabulary), training time per epoch and tokens per second, and for the self-normalized
NCE models the mean and standard deviation of log Z(c) over test contexts. Writes a table into
BENCHMARKS.md and a plot of validation perplexity against wall-clock time.

    python benchmarks/lm.py                         # the study: every loss, 6 epochs
    python benchmarks/lm.py --max-lines 3000 --epochs 2 --no-write   # a quick look
    python benchmarks/lm.py --epochs 12 --runs full "nce k=25" --section lm_long   # longer training
    python benchmarks/lm.py --epochs 12 --runs gap --section lm_gap --jobs 2  # k = 25

A run's entry holds the model's settings (``LMConfig``) and, under "train", the training options
of ``nce.lm.train`` it changes (learning-rate schedule, a larger k late in training).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.lm import LanguageModel, LMConfig, log_partition_stats, perplexity, train  # noqa: E402
from nce.text import Vocabulary, kjv_verses, split_lines, tokenize  # noqa: E402

import _report  # noqa: E402

RUNS = {
    "full": {"loss": "full"},
    "nce k=1": {"loss": "nce", "num_samples": 1},
    "nce k=5": {"loss": "nce", "num_samples": 5},
    "nce k=25": {"loss": "nce", "num_samples": 25},
    "nce k=100": {"loss": "nce", "num_samples": 100},
    "nce k=25, shared noise": {"loss": "nce", "num_samples": 25, "shared_noise": True},
    "ranking k=100, shared noise": {"loss": "ranking", "num_samples": 100, "shared_noise": True},
    "full, lazy Adam": {"loss": "full", "train": {"optimizer": "lazy_adam"}},
    "full, cosine lr, lazy Adam": {
        "loss": "full",
        "train": {"lr_schedule": "cosine", "optimizer": "lazy_adam"},
    },
    "full, plateau lr, lazy Adam": {
        "loss": "full",
        "train": {"lr_schedule": "plateau", "optimizer": "lazy_adam"},
    },
    "full, cosine lr": {"loss": "full", "train": {"lr_schedule": "cosine"}},
    "nce k=25, dense Adam": {"loss": "nce", "num_samples": 25, "train": {"optimizer": "adam"}},
    "nce k=25, cosine lr, dense Adam": {
        "loss": "nce",
        "num_samples": 25,
        "train": {"lr_schedule": "cosine", "optimizer": "adam"},
    },
    "nce k=25, cosine lr": {"loss": "nce", "num_samples": 25, "train": {"lr_schedule": "cosine"}},
    "nce k=25, plateau lr": {
        "loss": "nce",
        "num_samples": 25,
        "train": {"lr_schedule": "plateau"},
    },
    "nce k=25, noise power 1": {"loss": "nce", "num_samples": 25, "noise_power": 1.0},
    "nce k=25, noise power 0.5": {"loss": "nce", "num_samples": 25, "noise_power": 0.5},
    "nce k=25, k=100 in the last third": {
        "loss": "nce",
        "num_samples": 25,
        "train": {"late_num_samples": 100, "late_epochs": "third"},
    },
    "nce k=25, learned log Z": {"loss": "nce", "num_samples": 25, "log_z": "learned"},
    "nce k=25, self-normalization 0.1": {
        "loss": "nce",
        "num_samples": 25,
        "self_normalization": 0.1,
    },
    "nce k=25, log Z(c) of the context": {"loss": "nce", "num_samples": 25, "log_z": "context"},
}
STUDY = list(RUNS)[:7]  # the losses compared at 6 epochs
GAP = [
    "full",
    "full, lazy Adam",
    "full, cosine lr, lazy Adam",
    "full, plateau lr, lazy Adam",
    "full, cosine lr",
    "nce k=25",
    "nce k=25, dense Adam",
    "nce k=25, cosine lr",
    "nce k=25, cosine lr, dense Adam",
    "nce k=25, plateau lr",
    "nce k=25, noise power 1",
    "nce k=25, k=100 in the last third",
    "nce k=25, learned log Z",
    "nce k=25, self-normalization 0.1",
]


def run(name: str, epochs: int, lr: float, max_lines: int | None, threads: int) -> tuple:
    """Train one run from a fresh model (seed 0); its results and its per-epoch history."""
    torch.set_num_threads(threads)
    streams, vocab = _streams(max_lines)
    settings = dict(RUNS[name])
    options = dict(settings.pop("train", {}))
    if options.get("late_epochs") == "third":
        options["late_epochs"] = max(1, epochs // 3)
    config = LMConfig(len(vocab), 256, 256, **settings)
    torch.manual_seed(0)
    model = LanguageModel(config, torch.tensor(vocab.counts))
    t0 = time.perf_counter()
    history = train(
        model, streams[0], epochs=epochs, lr=lr, valid_stream=streams[1], progress=False, **options
    )
    test_ppl = perplexity(model, streams[2])
    seconds = sum(r["seconds"] for r in history) / len(history)
    result = {
        "test_perplexity": test_ppl,
        "seconds_per_epoch": seconds,
        "tokens_per_second": streams[0].numel() / seconds,
        "log_z": log_partition_stats(model, streams[2]),
        "wall": time.perf_counter() - t0,
    }
    return name, result, history


def _streams(max_lines: int | None):
    lines = [tokenize(v) for v in kjv_verses()[:max_lines]]
    train_lines, valid_lines, test_lines = split_lines(lines, random_state=0)
    vocab = Vocabulary.build(train_lines, min_count=2)
    return [vocab.encode(s) for s in (train_lines, valid_lines, test_lines)], vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--max-lines", type=int, default=None)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=STUDY,
        choices=[*RUNS, "gap"],
        help="run names, or 'gap': the full softmax and the settings tried for k = 25",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once, one thread each (with > 1)"
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--x", choices=["time", "epochs"], default="time", help="the plot's horizontal axis"
    )
    parser.add_argument(
        "--json", help="also write every run's results and curves here (with --no-write too)"
    )
    parser.add_argument(
        "--reuse",
        nargs="+",
        default=[],
        help="JSON files written by --json (same --epochs): their runs are taken, not retrained",
    )
    parser.add_argument(
        "--section", default="lm", help="BENCHMARKS.md section (and plot name) to write"
    )
    args = parser.parse_args()
    requested = GAP if args.runs == ["gap"] else args.runs
    if requested != STUDY and args.section == "lm" and not args.no_write:
        parser.error("--runs with a subset of the losses needs --section NAME (or --no-write)")
    streams, vocab = _streams(args.max_lines)
    print(f"V = {len(vocab)}, train tokens = {streams[0].numel()}", flush=True)

    finished, commits = {}, {}
    for path in args.reuse:
        saved = json.loads(Path(path).read_text())
        if saved.get("max_lines", args.max_lines) != args.max_lines:
            parser.error(f"--reuse {path}: its runs were trained with another --max-lines")
        for name in set(requested) & set(saved["results"]):
            if len(saved["curves"][name]) != args.epochs:
                parser.error(f"--reuse {path}: {name!r} ran {len(saved['curves'][name])} epochs")
            finished[name] = (saved["results"][name], saved["curves"][name])
            commits[name] = saved.get("commits", {}).get(name, saved["commit"])
    threads = torch.get_num_threads() if args.jobs == 1 else 1
    jobs = [
        (name, args.epochs, args.lr, args.max_lines, threads)
        for name in requested
        if name not in finished
    ]
    if args.jobs == 1:
        outcomes = (run(*job) for job in jobs)
    else:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=context)
        outcomes = (f.result() for f in as_completed([pool.submit(run, *job) for job in jobs]))
    for name, result, history in outcomes:
        finished[name] = (result, history)
        commits[name] = _report.commit()
        print(name, result, flush=True)
    results = {name: finished[name][0] for name in requested}
    curves = {name: finished[name][1] for name in requested}
    record = {
        "results": results,
        "curves": curves,
        "commit": _report.commit(),
        "commits": {name: commits[name] for name in requested},
        "epochs": args.epochs,
        "max_lines": args.max_lines,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))

    full = results.get("full", {}).get("test_perplexity")
    lines_md = [
        "| loss | test perplexity | × full | × full, same training options | s / epoch "
        "| tokens / s | log Z(c) mean ± std |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        ratio = f"{r['test_perplexity'] / full:.3f}" if full else "—"
        twin = _full_twin(name, results)
        same = f"{r['test_perplexity'] / twin['test_perplexity']:.3f}" if twin else "—"
        lines_md.append(
            f"| {name} | {r['test_perplexity']:.2f} | {ratio} | {same} "
            f"| {r['seconds_per_epoch']:.0f} | {r['tokens_per_second']:.0f} "
            f"| {r['log_z'][0]:.3f} ± {r['log_z'][1]:.3f} |"
        )
    table = "\n".join(lines_md)
    print(table)
    if args.no_write:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, history in curves.items():
        clock = torch.tensor([r["seconds"] for r in history]).cumsum(0)
        x = clock if args.x == "time" else [r["epoch"] for r in history]
        ax.plot(x, [r["valid_perplexity"] for r in history], marker="o", label=name)
    xlabel = "training time (s)" if args.x == "time" else "epoch"
    ax.set(xlabel=xlabel, ylabel="validation perplexity", yscale="log")
    ax.legend()
    png = Path(__file__).resolve().parent / "results" / f"{args.section}_valid_perplexity.png"
    png.parent.mkdir(exist_ok=True)
    fig.savefig(png, dpi=120, bbox_inches="tight")
    png.with_name(f"{args.section}.json").write_text(json.dumps(record, indent=1))
    command = f"python benchmarks/lm.py --epochs {args.epochs}"
    if args.max_lines:
        command += f" --max-lines {args.max_lines}"
    if args.runs != STUDY:
        command += " --runs " + " ".join(f'"{r}"' if " " in r else r for r in args.runs)
    if args.jobs != 1:
        command += f" --jobs {args.jobs}"
    if args.lr != 2e-3:
        command += f" --lr {args.lr}"
    if args.section != "lm":
        command += f" --section {args.section}"
    if args.reuse:
        command += " --reuse " + " ".join(args.reuse)
    if args.x != "time":
        command += f" --x {args.x}"
    _report.write_section(
        args.section,
        f"### Word-level LM on the King James Bible: output losses compared, {args.epochs} "
        f"epochs\n\nCommand: `{command}` — {_commits(commits)} — {_report.machine()}"
        + (f", {args.jobs} runs at once, one thread each" if args.jobs > 1 else "")
        + ". "
        f"LSTM 256, Adam lr {args.lr}, V = {len(vocab)}, exact test perplexity.\n\n{table}\n\n"
        f"![validation perplexity against {'time' if args.x == 'time' else 'epochs'}]"
        f"(benchmarks/results/{png.name})",
    )


def _training(name: str) -> dict:
    """The training options of run ``name``, the optimizer resolved as ``nce.lm.train`` resolves
    its default (lazy Adam for the sampled losses, dense Adam for the full softmax)."""
    options = dict(RUNS[name].get("train", {}))
    options.setdefault("optimizer", "adam" if RUNS[name]["loss"] == "full" else "lazy_adam")
    return options


def _full_twin(name: str, results: dict) -> dict | None:
    """The results of the full-softmax run trained with the same options (schedule, optimizer)
    as the NCE run ``name``, if there is one."""
    if RUNS[name]["loss"] == "full":
        return None
    for other, result in results.items():
        if RUNS[other]["loss"] == "full" and _training(other) == _training(name):
            return result
    return None


def _commits(commits: dict) -> str:
    """'commit X', or which runs were measured at which commit when they differ."""
    by_commit = {}
    for name, commit in commits.items():
        by_commit.setdefault(commit, []).append(name)
    if len(by_commit) == 1:
        return f"commit `{next(iter(by_commit))}`"
    return "runs measured at " + "; ".join(
        f"commit `{c}`: " + ", ".join(f'"{n}"' for n in names) for c, names in by_commit.items()
    )


if __name__ == "__main__":
    main()
