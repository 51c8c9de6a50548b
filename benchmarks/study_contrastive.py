"""The contrastive-learning studies of nce.contrastive.studies, each a table and a PNG.

Digits, stratified 70/30 split with seed 0; an MLP encoder (64 → 256 → 128 with batch norm) and a
projection head (128 → 128 → 64) pretrained on the training images without labels, then frozen and
probed (logistic regression with all labels and with 10 per class, 5-NN). One seed per setting:
differences below about one point are within run-to-run noise. The tables and figures are drawn
by nce.cli._study_report (the figures need matplotlib: pip install nce[plot]).

    python benchmarks/study_contrastive.py all            # every study, updates BENCHMARKS.md
    python benchmarks/study_contrastive.py temperature    # one study
    python benchmarks/study_contrastive.py noise --epochs 5 --no-write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.cli._study_report import markdown_table, plot_study  # noqa: E402
from nce.contrastive import load_digits_split  # noqa: E402
from nce.contrastive.studies import STUDIES, StudyConfig, run_study  # noqa: E402

import _report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NOISE_POINTS = 1.0  # accuracy points: differences below this are within one seed's noise

DESCRIPTION = {
    "temperature": "SimCLR's NT-Xent at five temperatures. Alignment is the mean squared "
    "distance between the normalized embeddings of two views of a test image, uniformity "
    "log E exp(−2‖z − z′‖²) over test pairs (Wang & Isola 2020; lower is better for both).",
    "batch-size": "NT-Xent at batch sizes 16 … 1024. Gradient variance V(N) is the trace of the "
    "covariance of the full parameter gradient over 16 minibatches (fresh augmentations) at one "
    "parameter point (the encoder after 2 epochs at N = 256); t(N) is the median time of a "
    "forward+backward step. V(N)·t(N) is the gradient noise left after averaging for a fixed "
    "time, the quantity that balances noise against cost. Each N is then pretrained for the "
    "epochs that fit in the same wall-clock budget (from the measured t(N)) and probed.",
    "false-negatives": "In-batch negatives on digits share the query's class with probability "
    "≈ 0.1 (same_class_rate). Biased InfoNCE; the debiased loss of Chuang et al. 2020 with "
    "τ⁺ = 0.1; hard-negative weighting of Robinson et al. 2021 with τ⁺ = 0.1 and β in "
    "{0.5, 1, 2, 6}; an oracle InfoNCE that masks every same-class negative (it uses the labels).",
    "soft-labels": "A fraction x of each batch is grouped into ambiguous pairs whose key views "
    "are swapped (a tracker that swapped two objects). Hard targets trust the given pairing "
    "(InfoNCE); soft targets (soft_info_nce) put 1/2 on each of the two candidates of an "
    "ambiguous pair.",
    "noise": "InfoNCE with the batch's other samples as negatives, against InfoNCE whose N "
    "negatives per step are Gaussian noise images with the training pixels' mean and standard "
    "deviation (embedded with the running batch-norm statistics).",
    "features": "The same encoder trained with labels: cross-entropy through a linear classifier "
    "on h, and supervised_info_nce (SupCon) through the projection head. Effective rank "
    "(exp entropy of the normalized singular values of the centred test features) and sparsity "
    "(fraction of entries below 5% of their feature's maximum) of h.",
}


def summary(name: str, rows: list[dict]) -> str:
    """One honest sentence on what came out, computed from the rows."""

    def best(key="linear_probe_10"):
        return max(rows, key=lambda r: r[key])

    def spread(key="linear_probe_10", subset=None):
        values = [r[key] for r in (subset or rows)]
        return 100 * (max(values) - min(values))

    if name == "temperature":
        a, b = best("linear_probe"), best("linear_probe_10")
        ends = {rows[0]["temperature"], rows[-1]["temperature"]}
        if spread() < NOISE_POINTS:
            shape = (
                f"no clear place: all temperatures lie within {spread():.1f} points (seed noise)"
            )
        elif b["temperature"] not in ends:
            shape = "the peak lies at an intermediate temperature, as SimCLR reports"
        else:
            shape = "the peak lies at an end of the range, not inside it as SimCLR reports"
        return (
            f"Best probe with all labels at τ = {a['temperature']:g} "
            f"({100 * a['linear_probe']:.1f}%), with 10 labels per class at τ = "
            f"{b['temperature']:g} ({100 * b['linear_probe_10']:.1f}%): {shape}. "
            f"From τ = {rows[0]['temperature']:g} to {rows[-1]['temperature']:g} alignment goes "
            f"{rows[0]['alignment']:.3f} → {rows[-1]['alignment']:.3f} and uniformity "
            f"{rows[0]['uniformity']:.2f} → {rows[-1]['uniformity']:.2f}."
        )
    if name == "batch-size":
        balanced = min(rows, key=lambda r: r["noise_per_time"])
        b = best()
        ratio = rows[0]["grad_variance"] / rows[-1]["grad_variance"]
        size_ratio = rows[-1]["batch_size"] / rows[0]["batch_size"]
        return (
            f"From N = {rows[0]['batch_size']} to {rows[-1]['batch_size']} the gradient variance "
            f"falls {ratio:.0f}-fold (the batch grows {size_ratio:.0f}-fold). The gradient noise "
            f"per unit time V(N)·t(N) is lowest at N = {balanced['batch_size']}; at equal "
            f"wall-clock the best 10-labels probe is at N = {b['batch_size']} "
            f"({100 * b['linear_probe_10']:.1f}%). Timings were taken on a shared CPU."
        )
    if name == "false-negatives":
        by = {r["method"]: r for r in rows}
        biased = by["biased info_nce"]
        b = best()
        others = [r for r in rows if not r["method"].startswith("oracle")]
        return (
            f"Biased InfoNCE: {100 * biased['linear_probe_10']:.1f}% with 10 labels per class; "
            f"best: {b['method']} ({100 * b['linear_probe_10']:.1f}%). Without the oracle the "
            f"methods span {spread(subset=others):.1f} points (seed noise is about "
            f"{NOISE_POINTS:g}). Expected order: biased < debiased < hard (moderate β), too "
            "large β hurting."
        )
    if name == "soft-labels":
        parts = []
        for rate in sorted({r["corrupted"] for r in rows if r["corrupted"] > 0}):
            hard = next(r for r in rows if r["corrupted"] == rate and r["targets"] == "hard")
            soft = next(r for r in rows if r["corrupted"] == rate and r["targets"] == "soft")
            parts.append(
                f"at {100 * rate:.0f}% corrupted pairs, soft − hard = "
                f"{100 * (soft['linear_probe_10'] - hard['linear_probe_10']):+.1f} points "
                f"(10 labels per class), {100 * (soft['knn'] - hard['knn']):+.1f} (5-NN)"
            )
        text = "; ".join(parts)
        return (
            text[0].upper() + text[1:] + f" (differences below {NOISE_POINTS:g} point are noise)."
        )
    if name == "noise":
        data, noise = rows
        return (
            f"Data negatives: {100 * data['linear_probe_10']:.1f}% with 10 labels per class, "
            f"Gaussian-noise negatives: {100 * noise['linear_probe_10']:.1f}%"
            + (
                " — data-like negatives teach more, as the article claims."
                if data["linear_probe_10"] > noise["linear_probe_10"]
                else " — this run does not support the article's claim."
            )
        )
    ce, supcon = rows
    more = "lower" if supcon["effective_rank"] < ce["effective_rank"] else "higher"
    sparser = "sparser" if supcon["sparsity"] > ce["sparsity"] else "denser"
    return (
        f"SupCon features have {more} effective rank ({supcon['effective_rank']:.1f} vs "
        f"{ce['effective_rank']:.1f}) and are {sparser} ({supcon['sparsity']:.2f} vs "
        f"{ce['sparsity']:.2f}) than cross-entropy features."
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=[*STUDIES, "all"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_digits_split(test_size=0.3, random_state=0)
    config = StudyConfig(epochs=args.epochs, seed=args.seed)
    names = list(STUDIES) if args.study == "all" else [args.study]
    for name in names:
        t0 = time.perf_counter()
        rows = run_study(name, data, config)
        seconds = time.perf_counter() - t0
        table = markdown_table(rows)
        text = summary(name, rows)
        print(f"## {name} ({seconds:.0f} s)\n{table}\n{text}\n", flush=True)
        if args.no_write:
            continue
        RESULTS.mkdir(exist_ok=True)
        png = RESULTS / f"study_{name.replace('-', '_')}.png"
        plot_study(name, rows, png)
        body = "\n".join(
            [
                f"### Study: {name}",
                "",
                DESCRIPTION[name]
                + f" Setting: {args.epochs} epochs, batch 256 (unless varied), τ = 0.5 (unless "
                "varied), AdamW lr 3e-3 with a cosine schedule, one seed.",
                "",
                table,
                "",
                text,
                "",
                f"![{name}](benchmarks/results/{png.name})",
                "",
                f"`python benchmarks/study_contrastive.py {name} --epochs {args.epochs}` · "
                f"commit {_report.commit()} · {_report.machine()} · {seconds:.0f} s",
            ]
        )
        _report.write_section(f"study-{name}", body)


if __name__ == "__main__":
    main()
