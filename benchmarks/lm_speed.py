"""Output-layer speed and memory at scale: NCE against the full softmax on synthetic Zipfian
vocabularies of V words (D = 256, N = 512) and on the KJV's.

Five tables, each cell measured in a fresh process:

* ``layer``: forward + backward of the output layer alone, NCE with k = 100 noise words shared by
  the batch; time is the median of repeats, and memory the growth of the peak resident set size
  over the process with its layer built. "nce, sparse" keeps sparse gradients (only the rows read).
* ``step``: the whole training step of the output layer (forward, backward, gradient clipping at
  norm 1 and the optimizer update) as ``nce lm train`` runs it by default — NCE with k = 25 noise
  words per target word, log Z fixed at 0, sparse gradients and :class:`nce.optim.LazyAdam` —
  against the full softmax with :class:`torch.optim.Adam`, and NCE with dense gradients and Adam.
* ``crossover``: per-word noise on the KJV vocabulary at N = 1120 (the LM's 32 × 35 tokens per
  step), forward + backward: the per-row sparse products against one dense product with the
  distinct classes drawn, over k; it sets ``NCEOutput.product_ratio``.
* ``rows``: the default step against its memory floor, the rows a lazy Adam step must read and
  write back.
* ``epoch``: one epoch of ``nce lm train --corpus kjv`` itself, by default and with k = 100,
  dense Adam and the full softmax.

Times are wall and CPU seconds of the process (the median of each).

    python benchmarks/lm_speed.py                       # all five; updates BENCHMARKS.md
    python benchmarks/lm_speed.py --tables step crossover
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.optim import LazyAdam, clip_grad_norm_  # noqa: E402
from nce.output import NCEOutput  # noqa: E402
from nce.text import Vocabulary, kjv_verses, split_lines, tokenize, zipf_corpus  # noqa: E402

import _report  # noqa: E402

D, N, K = 256, 512, 100
MODES = {
    "full": {"loss": "full"},
    "nce": {"loss": "nce"},
    "nce, sparse": {"loss": "nce", "sparse": True},
}
LM_TRAIN = {"loss": "nce", "num_samples": 25, "shared_noise": False, "log_z": 0.0}
STEP_MODES = {
    "full, Adam": ({"loss": "full", "num_samples": 25}, torch.optim.Adam),
    "nce, Adam": (LM_TRAIN, torch.optim.Adam),
    "nce lm train": (LM_TRAIN | {"sparse": True}, LazyAdam),
}
KJV_N, CROSSOVER_K = 32 * 35, (25, 100, 400, 1000, 2000, 4000)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def counts_of(v: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class counts (+1) of the vocabulary ``v`` ("kjv" or a size) and the token stream."""
    if v == "kjv":
        train_lines = split_lines([tokenize(x) for x in kjv_verses()], random_state=0)[0]
        vocab = Vocabulary.build(train_lines, min_count=2)
        stream = vocab.encode(train_lines)
        return torch.tensor(vocab.counts).double().clamp(min=1), stream
    size = int(v)
    stream = zipf_corpus(20 * size, size, generator=g)
    return torch.bincount(stream, minlength=size).double() + 1, stream


def timed(fn, repeats: int) -> dict:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` calls after one warm-up."""
    walls, cpus = [], []
    for _ in range(repeats + 1):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"seconds": statistics.median(walls[1:]), "cpu_seconds": statistics.median(cpus[1:])}


def layer_child(mode: str, v: str, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    counts, stream = counts_of(v, g)
    layer = NCEOutput(counts.numel(), D, counts, K, **MODES[mode])
    hidden = torch.randn(N, D, generator=g).requires_grad_()
    targets = stream[torch.randint(stream.numel(), (N,), generator=g)]
    base = peak_mib()

    def step():
        layer(hidden, targets, generator=g).backward()
        layer.zero_grad(set_to_none=True)
        hidden.grad = None

    return timed(step, repeats) | {"peak_growth_mib": peak_mib() - base}


def _step(mode: str, v: str, g: torch.Generator):
    """One whole training step of the output layer in ``mode`` over the vocabulary ``v``."""
    counts, stream = counts_of(v, g)
    kwargs, optimizer_class = STEP_MODES[mode]
    layer = NCEOutput(counts.numel(), D, counts, **kwargs)
    optimizer = optimizer_class(layer.parameters(), lr=2e-3)
    hidden = torch.randn(N, D, generator=g).requires_grad_()
    targets = stream[torch.randint(stream.numel(), (N,), generator=g)]

    def step():  # as nce.lm.train's loop: the hidden state's gradient flows on to the LSTM
        loss = layer(hidden, targets, generator=g)
        optimizer.zero_grad()
        hidden.grad = None
        loss.backward()
        clip_grad_norm_([hidden, *layer.parameters()], 1.0)
        optimizer.step()

    return step


def step_child(mode: str, v: str, repeats: int) -> dict:
    return timed(_step(mode, v, torch.Generator().manual_seed(0)), repeats)


def crossover_child(ratio: str, k: str, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    counts, stream = counts_of("kjv", g)
    layer = NCEOutput(counts.numel(), D, counts, **(LM_TRAIN | {"num_samples": int(k)}))
    layer.sparse = True
    layer.product_ratio = float(ratio)
    hidden = torch.randn(KJV_N, D, generator=g).requires_grad_()
    targets = stream[torch.randint(stream.numel(), (KJV_N,), generator=g)]
    noise = layer.noise.sample((KJV_N, int(k)), generator=torch.Generator().manual_seed(1))
    distinct = torch.unique(torch.cat([targets[:, None], noise], 1)).numel()

    def step():
        layer(hidden, targets, generator=g).backward()
        layer.zero_grad(set_to_none=True)
        hidden.grad = None

    return timed(step, repeats) | {"distinct": distinct}


def rows_child(mode: str, v: str, repeats: int) -> dict:
    """The default step and its memory floor, timed in turn in one process (so that both see
    the same machine): the floor gathers and scatters back the M distinct rows a step of
    `nce lm train` draws (its targets and their noise words), in the weights and both moments
    of the output embedding (V, D) and bias (V, 1), and does nothing else."""
    g = torch.Generator().manual_seed(0)
    step = _step("nce lm train", v, g)
    counts, stream = counts_of(v, g)
    layer = NCEOutput(counts.numel(), D, counts, **LM_TRAIN)
    draws = []  # a fresh batch per call, as in training: rows not left in cache by the last
    for _ in range(repeats + 1):
        targets = stream[torch.randint(stream.numel(), (N,), generator=g)]
        noise = layer.noise.sample((N, LM_TRAIN["num_samples"]), generator=g)
        draws.append(torch.unique(torch.cat([targets[:, None], noise], 1)))
    tables = [torch.randn(counts.numel(), width, generator=g) for width in (D, D, D, 1, 1, 1)]
    batches = iter(draws)

    def floor():  # as LazyAdam.step does for each table, without the update between
        rows = next(batches)
        for table in tables:
            table.index_copy_(0, rows, table.index_select(0, rows))

    samples = {"step": [], "rows": []}
    for i in range(repeats + 1):  # the first call of each is a warm-up
        for name, fn in (("step", step), ("rows", floor)):
            w, c = time.perf_counter(), time.process_time()
            fn()
            if i:
                samples[name].append((time.perf_counter() - w, time.process_time() - c))
    result = {
        name: {
            "seconds": statistics.median(t[0] for t in runs),
            "cpu_seconds": statistics.median(t[1] for t in runs),
        }
        for name, runs in samples.items()
    }
    return result | {"distinct": statistics.median(r.numel() for r in draws)}


CHILDREN = {
    "layer": layer_child,
    "step": step_child,
    "crossover": crossover_child,
    "rows": rows_child,
}


def run_child(table: str, a: str, b: str, repeats: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", table, a, b, "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def seconds(r: dict) -> str:
    return f"{r['seconds'] * 1e3:.1f} ms ({r['cpu_seconds'] * 1e3:.1f})"


def layer_table(sizes, repeats) -> tuple[str, str]:
    rows = []
    for v in sizes:
        row = {"v": v}
        for mode in MODES:
            row[mode] = run_child("layer", mode, str(v), repeats if v < 1_000_000 else 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "| V | weights (V×D + V) | full | nce (× faster) | nce, sparse (× faster) "
        "| peak growth: full | nce | nce, sparse |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        full = r["full"]["seconds"]
        weights = r["v"] * (D + 1) * 4 / 2**20
        lines.append(
            f"| {r['v']:,} | {weights:.0f} MiB | {full * 1e3:.1f} ms "
            f"| {r['nce']['seconds'] * 1e3:.1f} ms ({full / r['nce']['seconds']:.0f}×) "
            f"| {r['nce, sparse']['seconds'] * 1e3:.1f} ms "
            f"({full / r['nce, sparse']['seconds']:.0f}×) "
            + " ".join(f"| {r[m]['peak_growth_mib']:.0f} MiB" for m in MODES)
            + " |"
        )
    table = "\n".join(lines)
    print(table)
    return (
        "lm_speed",
        "### Output layer at scale: NCE vs full softmax (D = 256, N = 512, k = 100 shared)\n\n"
        f"Command: `python benchmarks/lm_speed.py --tables layer` — commit `{_report.commit()}` — "
        f"{_report.machine()}. Forward + backward of the output layer alone, median of "
        "repeats after one warm-up, each cell a fresh process. Peak growth is the rise of the "
        "peak resident set size over the process with its layer built.\n\n" + table,
    )


def vocab_label(v: str) -> str:
    """A table's row name for the vocabulary ``v`` ("kjv" or a size)."""
    return "KJV, 8,388" if v == "kjv" else f"{int(v):,}"


def step_table(sizes, repeats) -> tuple[str, str]:
    lines = [
        "| V | full + Adam | nce + Adam (× faster) | `nce lm train` default (× faster) |",
        "|---|---:|---:|---:|",
    ]
    for v in ["kjv", *map(str, sizes)]:
        reps = repeats if v != "1000000" else 3
        row = {m: run_child("step", m, v, reps) for m in STEP_MODES}
        print(v, json.dumps(row), flush=True)
        full = row["full, Adam"]
        cells = [seconds(full)]
        for mode in ("nce, Adam", "nce lm train"):
            r = row[mode]
            cells.append(
                f"{seconds(r)}: **{full['seconds'] / r['seconds']:.0f}×** "
                f"({full['cpu_seconds'] / r['cpu_seconds']:.0f}× CPU)"
            )
        name = vocab_label(v)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    return (
        "lm_step",
        "### The output layer's whole training step: NCE as `nce lm train` runs it vs the full "
        "softmax with Adam (D = 256, N = 512)\n\n"
        f"Command: `python benchmarks/lm_speed.py --tables step` — commit `{_report.commit()}` — "
        f"{_report.machine()}. One step: forward, backward (into the hidden states too), "
        "gradient clipping at norm 1 and the optimizer update, median wall time of repeats "
        "after one warm-up (CPU time of the process in parentheses), each cell a fresh "
        "process. `nce lm train` default: NCE, k = 25 noise words per target word, log Z = 0, "
        'sparse gradients and `nce.optim.LazyAdam`; "nce + Adam": the same loss with dense '
        "gradients and `torch.optim.Adam`; the full softmax with `torch.optim.Adam`. Targets "
        "drawn from the vocabulary's token stream (KJV training split; synthetic Zipf, s = 1)."
        "\n\n" + table,
    )


def rows_table(sizes, repeats) -> tuple[str, str]:
    lines = [
        "| V | `nce lm train` default step | rows moved: M distinct, time | step ÷ rows moved |",
        "|---|---:|---:|---:|",
    ]
    for v in ["kjv", *map(str, sizes)]:
        both = run_child("rows", "lazy", v, repeats)
        step, moved = both["step"], both["rows"]
        print(v, json.dumps(both), flush=True)
        name = vocab_label(v)
        lines.append(
            f"| {name} | {seconds(step)} | {both['distinct']:,.0f}, {seconds(moved)} "
            f"| {step['seconds'] / moved['seconds']:.2f}× "
            f"({step['cpu_seconds'] / moved['cpu_seconds']:.2f}× CPU) |"
        )
    table = "\n".join(lines)
    print(table)
    sizes_flag = " ".join(map(str, sizes))
    return (
        "lm_rows",
        "### The default step against its memory floor (D = 256, N = 512, k = 25 per word)\n\n"
        f"Command: `python benchmarks/lm_speed.py --tables rows --sizes {sizes_flag} "
        f"--repeats {repeats}` — commit "
        f"`{_report.commit()}` — {_report.machine()}. The whole step of the output layer as "
        "`nce lm train` runs it (as in the step table), against the row copies a lazy Adam step "
        "cannot avoid: the M distinct rows one step draws (median M over the calls, a fresh "
        "draw per call, as in training) gathered from and scattered back into the weights and "
        "both Adam moments of the output embedding (V, 256) and bias (V, 1), with nothing else; "
        "median wall time of repeats (CPU time in parentheses), the step and the floor timed in "
        "turn in one fresh process per row, so that a ratio compares calls that saw the same "
        "machine.\n\n" + table,
    )


EPOCH_RUNS = {
    "`nce lm train` default: NCE, k = 25 per word, lazy Adam": [],
    "k = 100 per word (`--k 100`)": ["--k", "100"],
    "dense Adam (`--optimizer adam`)": ["--optimizer", "adam"],
    "full softmax (`--loss full`, dense Adam)": ["--loss", "full"],
}


def epoch_table() -> tuple[str, str]:
    """One epoch of `nce lm train --corpus kjv` per setting, each the real command in a fresh
    process with the machine's default threads; the epoch's seconds are read from its
    checkpoint (training only: the vocabulary, the validation pass and the saving excluded)."""
    from nce.lm import read_checkpoint

    lines = ["| setting | seconds per epoch | tokens / s | × the default |", "|---|---:|---:|---:|"]
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in EPOCH_RUNS.items():
            out = Path(tmp) / "lm.pt"
            argv = ["lm", "train", "--corpus", "kjv", "--epochs", "1", "--no-progress"]
            subprocess.run(
                [sys.executable, "-c", "import sys; from nce.cli.main import main; main()",
                 *argv, *flags, "-o", str(out)],
                check=True, capture_output=True,
            )  # fmt: skip
            records[name] = read_checkpoint(out)["history"][0]
            print(name, json.dumps(records[name]), flush=True)
    default = records[next(iter(EPOCH_RUNS))]["seconds"]
    for name, r in records.items():
        lines.append(
            f"| {name} | {r['seconds']:.0f} | {r['tokens_per_second']:,.0f} "
            f"| {r['seconds'] / default:.2f}× |"
        )
    table = "\n".join(lines)
    print(table)
    return (
        "lm_epoch",
        "### `nce lm train`'s epoch on the KJV (V = 8,388, 850k training tokens)\n\n"
        f"Command: `python benchmarks/lm_speed.py --tables epoch` — commit `{_report.commit()}` — "
        f"{_report.machine()}. One epoch of `nce lm train --corpus kjv --epochs 1` with every "
        "default but the flag named (LSTM 256, batch 32 × 35 tokens), each the real command in "
        "a fresh process on the machine's default threads; the epoch's training seconds as "
        "the checkpoint records them (vocabulary, validation pass and saving excluded).\n\n"
        + table,
    )


def crossover_table(ks, repeats) -> tuple[str, str]:
    lines = [
        "| k | distinct classes M | M / (k + 1) | per-row products | one product (÷ per-row) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k in ks:
        rows = run_child("crossover", "0", str(k), repeats)
        product = run_child("crossover", "inf", str(k), repeats)
        print(k, json.dumps({"rows": rows, "product": product}), flush=True)
        m = rows["distinct"]
        lines.append(
            f"| {k} | {m:,} | {m / (k + 1):.1f} | {seconds(rows)} | {seconds(product)} "
            f"({product['cpu_seconds'] / rows['cpu_seconds']:.2f}× CPU) |"
        )
    table = "\n".join(lines)
    print(table)
    return (
        "lm_crossover",
        "### Per-word noise: per-row products or one product with the distinct classes "
        "(KJV, N = 1120, D = 256)\n\n"
        f"Command: `python benchmarks/lm_speed.py --tables crossover --ks {' '.join(map(str, ks))} "
        f"--repeats {repeats}` — commit "
        f"`{_report.commit()}` — {_report.machine()}. Forward + backward of `NCEOutput` (NCE, "
        "noise per target word, sparse gradients) at N = 32 × 35 tokens, the LM's step, over "
        "k: the N·(k + 1) scores as sparse products that read each context's rows in place, "
        "against one (N, D) × (D, M) product with the M distinct classes drawn; median wall "
        "time (CPU time in parentheses). The ratio of CPU times is the column to read on a "
        f"loaded machine. `NCEOutput.product_ratio` = {NCEOutput.product_ratio:g}: the product "
        "is taken when M ≤ product_ratio · (k + 1).\n\n" + table,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("TABLE", "MODE", "V"))
    parser.add_argument(
        "--tables", nargs="+", choices=[*CHILDREN, "epoch"], default=[*CHILDREN, "epoch"]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--ks", type=int, nargs="+", default=list(CROSSOVER_K))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.child:
        table, a, b = args.child
        print(json.dumps(CHILDREN[table](a, b, args.repeats)))
        return
    sections = []
    if "layer" in args.tables:
        sections.append(layer_table(args.sizes, args.repeats))
    if "step" in args.tables:
        sections.append(step_table([v for v in args.sizes if v >= 100_000], args.repeats))
    if "crossover" in args.tables:
        sections.append(crossover_table(args.ks, args.repeats))
    if "rows" in args.tables:
        sections.append(rows_table([v for v in args.sizes if v >= 100_000], args.repeats))
    if "epoch" in args.tables:
        sections.append(epoch_table())
    if not args.no_write:
        for name, body in sections:
            _report.write_section(name, body)


if __name__ == "__main__":
    main()
