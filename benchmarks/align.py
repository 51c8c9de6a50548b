"""CLIP vs SigLIP in miniature on captioned digits: batch size, accuracy against training time.

For each loss and batch size N (16 … 1024) and each seed, trains :func:`nce.contrastive.align`
with its default settings otherwise (the settings of ``nce align``) and reports on the test images
with unseen caption wording: zero-shot accuracy (mean over the test templates, and the prompt
ensemble), retrieval recall@1/@5 (mean of image→text and text→image), the learned temperature
(and SigLIP's bias) against their initial values, epochs and training seconds. Accuracy against
training time: separate runs of 5, 10, 20 and the default 40 epochs at the default batch size
(each with its own full cosine schedule; the trainer has no per-epoch hook, and a shorter run is
not a prefix of a longer one), drawn as a PNG curve of accuracy against seconds for both losses.
One torch thread, as ``nce align`` uses.

    python benchmarks/align.py        # ~8 min on 2 cores; updates BENCHMARKS.md and results/
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from nce.contrastive import align
from nce.contrastive.captions import load_captioned_digits
from nce.contrastive.zero_shot import embed_images, embed_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report  # noqa: E402

DEFAULTS = {k: p.default for k, p in inspect.signature(align).parameters.items()}
RESULTS = _report.ROOT / "benchmarks" / "results"
TOP = 5


def top_k_same_digit(model, data) -> dict[str, float]:
    """Fraction of queries whose top-5 retrieved items all name the digit of the top-1 item."""
    similarity = embed_images(model, data.x_test) @ embed_texts(model, data.test_captions).T
    out = {}
    for name, scores in (("image_to_text", similarity), ("text_to_image", similarity.T)):
        order = scores.argsort(dim=1, descending=True, stable=True)[:, :TOP]
        digits = data.y_test[order]
        out[name] = float((digits == digits[:, :1]).all(1).float().mean())
    return out


def run(loss: str, epochs: int, batch_size: int, seed: int) -> dict:
    cpu = time.process_time()
    r = align(loss=loss, epochs=epochs, batch_size=batch_size, progress=False, random_state=seed)
    cpu = time.process_time() - cpu
    data = load_captioned_digits(DEFAULTS["test_size"], seed)
    row = {**r.as_dict(), "seed": seed, "cpu_seconds": cpu}
    row["top5_same_digit"] = top_k_same_digit(r.model, data)
    row["distinct_test_captions"] = len(set(data.test_captions))
    row["test_pairs"] = len(data.test_captions)
    row["train_images"] = len(data.x_train)
    print(
        f"{loss} N={batch_size} epochs={epochs} seed={seed}: zero-shot "
        f"{r.zero_shot_accuracy:.4f} ensemble {r.ensemble_accuracy:.4f} R@1 {r.recall_at_1:.4f} "
        f"R@5 {r.recall_at_5:.4f} τ {r.temperature:.4g} bias {r.bias} {r.seconds:.1f} s",
        flush=True,
    )
    return row


def mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def spread(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows]
    text = f"{statistics.fmean(values):.3f}"
    return text if len(values) == 1 else f"{text} ({min(values):.3f}–{max(values):.3f})"


def plot(curve: dict[str, list[tuple[int, float, float]]], path: Path, batch_size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for loss, points in curve.items():
        seconds = [s for _, s, _ in points]
        accuracy = [a for _, _, a in points]
        ax.plot(seconds, accuracy, marker="o", label=loss.upper() if loss == "clip" else "SigLIP")
        for epochs, s, a in points:
            ax.annotate(
                f"{epochs} ep", (s, a), textcoords="offset points", xytext=(4, -10), fontsize=7
            )
    ax.set_xlabel("training seconds (1 thread)")
    ax.set_ylabel("zero-shot accuracy, unseen wording")
    ax.set_title(f"Captioned digits, N = {batch_size}: accuracy against training time", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reading(table: dict, losses: list[str], batch_sizes: list[int], rows: list[dict]) -> list[str]:
    """Sentences computed from the numbers."""
    out = []

    def seed_range(group):
        values = [r["zero_shot_accuracy"] for r in group]
        return max(values) - min(values)

    if {"clip", "siglip"} <= set(losses):
        gaps = {
            n: mean(table["siglip", n], "zero_shot_accuracy")
            - mean(table["clip", n], "zero_shot_accuracy")
            for n in batch_sizes
        }
        beyond = [
            n
            for n, g in gaps.items()
            if abs(g) > max(seed_range(table["clip", n]), seed_range(table["siglip", n]))
        ]
        ahead = [n for n in beyond if gaps[n] > 0]
        behind = [n for n in beyond if gaps[n] < 0]
        gap_text = ", ".join(f"N = {n}: {g:+.3f}" for n, g in gaps.items())
        smallest = min(batch_sizes)
        verdict = (
            "consistent with SigLIP's claim of an advantage at small batches"
            if smallest in ahead
            else f"so these runs do not show SigLIP ahead at small batches (N = {smallest})"
        )
        out.append(
            f"SigLIP minus CLIP zero-shot accuracy (mean over seeds): {gap_text}. The gap exceeds "
            "the spread between the seeds of both losses only at "
            f"N ∈ {{{', '.join(map(str, beyond)) or '—'}}}, with SigLIP ahead at "
            f"N ∈ {{{', '.join(map(str, ahead)) or '—'}}} and behind at "
            f"N ∈ {{{', '.join(map(str, behind)) or '—'}}}, {verdict}."
        )
    n_train = rows[0]["train_images"]
    below = [
        f"{loss} at N = {n} ({mean(table[loss, n], 'zero_shot_accuracy'):.3f}, "
        f"{(n_train // n) * DEFAULTS['epochs']} steps)"
        for (loss, n) in table
        if mean(table[loss, n], "zero_shot_accuracy") < 0.9
    ]
    out.append(
        "Below the 90 % target (mean over seeds): "
        + ("; ".join(below) if below else "none")
        + f" — every run has the default {DEFAULTS['epochs']} epochs, so a larger N means fewer "
        f"optimizer steps ({n_train} training images give ⌊{n_train} / N⌋ steps per epoch)."
    )
    learned = []
    for loss in losses:
        group = [r for r in rows if r["loss"] == loss]
        taus = [r["temperature"] for r in group]
        text = f"{loss}'s τ goes from {group[0]['initial_temperature']:g} to "
        text += f"[{min(taus):.4g}, {max(taus):.4g}]"
        if group[0]["bias"] is not None:
            biases = [r["bias"] for r in group]
            text += f" and its bias from {group[0]['initial_bias']:g} to "
            text += f"[{min(biases):.3f}, {max(biases):.3f}]"
        learned.append(text)
    drift = [abs(r["bias"] - r["initial_bias"]) for r in rows if r["bias"] is not None]
    tail = f"; the bias moves by at most {max(drift):.3f} in any run" if drift else ""
    out.append("Over all runs " + "; ".join(learned) + tail + ".")

    directions = ("image_to_text", "text_to_image")
    pairs = [(r, d) for r in rows for d in directions]
    equal = [(r, d) for r, d in pairs if r["recall"][d]["1"] == r["recall"][d]["5"]]
    differ = sorted({(r["loss"], r["batch_size"]) for r, d in pairs if (r, d) not in equal})
    share = {}
    for d in directions:
        values = [r["top5_same_digit"][d] for r, e in equal if e == d]
        share[d] = statistics.fmean(values) if values else float("nan")
    consequence = (
        "so the next four items are correct exactly when the first one is"
        if all(v == 1.0 for v in share.values())
        else "so the next four items seldom change whether a query is answered"
    )
    exceptions = ", ".join(f"{loss} N = {n}" for loss, n in differ) or "none"
    out.append(
        f"Recall@5 equals recall@1 in {len(equal)} of {len(pairs)} (run, direction) pairs "
        f"(settings with a pair where it does not: {exceptions}) because a caption names only its "
        "digit: a retrieved item counts as correct when its digit is the query's, and the "
        f"{rows[0]['test_pairs']} test captions are only {rows[0]['distinct_test_captions']} "
        "distinct strings (test templates × 10 digits), so identical captions embed identically "
        "and a ranked list comes in blocks of one digit — where the two recalls are equal, the "
        f"top five items share the top-1 item's digit for {share['image_to_text']:.3f} of the "
        f"image queries and {share['text_to_image']:.3f} of the caption queries, {consequence}."
    )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", nargs="+", default=["clip", "siglip"])
    parser.add_argument(
        "--batch-sizes", nargs="+", type=int, default=[16, 32, 64, 128, 256, 512, 1024]
    )
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0 … seeds-1 for every run")
    parser.add_argument(
        "--curve-epochs",
        nargs="+",
        type=int,
        default=[5, 10, 20],
        help="shorter runs at the default batch size (the default epochs are added)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    epochs, default_n = DEFAULTS["epochs"], DEFAULTS["batch_size"]
    seeds = range(args.seeds)
    load_before = os.getloadavg()
    start = time.perf_counter()

    table = {
        (loss, n): [run(loss, epochs, n, seed) for seed in seeds]
        for loss in args.losses
        for n in args.batch_sizes
    }
    rows = [r for group in table.values() for r in group]
    curve, curve_rows = {}, []
    for loss in args.losses:
        points = []
        for e in sorted({*args.curve_epochs, epochs}):
            group = (
                table[loss, default_n]
                if e == epochs and (loss, default_n) in table
                else [run(loss, e, default_n, seed) for seed in seeds]
            )
            curve_rows += [r for r in group if r["epochs"] != epochs]
            points.append((e, mean(group, "seconds"), mean(group, "zero_shot_accuracy")))
        curve[loss] = points
    elapsed = time.perf_counter() - start
    load_after = os.getloadavg()

    command = "python benchmarks/align.py"
    lines = [
        "## Aligning two modalities: CLIP vs SigLIP (`nce.contrastive.align`, `nce align`)",
        "",
        "### CLIP vs SigLIP on captioned digits: batch size, and accuracy against training time",
        "",
        f"Command: `{command}` — commit `{_report.commit()}` — {_report.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs: load average (1 min) "
        f"{load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end, so the seconds "
        f"are inflated by the sharing. {elapsed:.0f} s in all. Every run uses the defaults of "
        f"`nce align` ({epochs} epochs, lr {DEFAULTS['lr']:g}, D = {DEFAULTS['dim']}, width "
        f"{DEFAULTS['width']}, word dropout {DEFAULTS['word_dropout']:g}, test size "
        f"{DEFAULTS['test_size']:g}) except the batch size N; each cell is the mean over seeds "
        f"{', '.join(map(str, seeds))} with (min–max). Test: 540 images, captions in wording "
        "never seen in training. Zero-shot: mean over the 6 test templates of one-caption-per-"
        "class accuracy; ensemble: mean embedding of the 6 captions per class. Recall: mean of "
        "image→text and text→image. τ and bias: learned values (start: CLIP τ 0.07; SigLIP τ 0.1, "
        "bias −10).",
        "",
        "| loss | N | epochs | zero-shot | ensemble | R@1 | R@5 | τ (start → learned) "
        "| bias (start → learned) | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for (loss, n), group in table.items():
        bias = (
            "—"
            if group[0]["bias"] is None
            else f"{group[0]['initial_bias']:g} → {mean(group, 'bias'):.3f}"
        )
        lines.append(
            f"| {loss} | {n} | {epochs} | {spread(group, 'zero_shot_accuracy')} "
            f"| {spread(group, 'ensemble_accuracy')} | {mean(group, 'recall_at_1'):.3f} "
            f"| {mean(group, 'recall_at_5'):.3f} "
            f"| {group[0]['initial_temperature']:g} → {mean(group, 'temperature'):.4f} | {bias} "
            f"| {mean(group, 'seconds'):.1f} |"
        )
    lines += [
        "",
        f"Accuracy against training time at N = {default_n} (separate runs, each with its own "
        "cosine schedule; mean over seeds; the curve is `benchmarks/results/align_time.png`):",
        "",
        "| loss | epochs | train s | zero-shot |",
        "|---|---:|---:|---:|",
    ]
    for loss, points in curve.items():
        for e, s, a in points:
            lines.append(f"| {loss} | {e} | {s:.1f} | {a:.3f} |")
    lines += ["", "![accuracy against training time](benchmarks/results/align_time.png)", ""]
    lines += reading(table, args.losses, args.batch_sizes, rows)
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot(curve, RESULTS / "align_time.png", default_n)
        payload = {
            "command": command,
            "commit": _report.commit(),
            "load_average": {"start": load_before, "end": load_after},
            "seconds": elapsed,
            "rows": rows,
            "curve_rows": curve_rows,
        }
        (RESULTS / "align.json").write_text(json.dumps(payload, indent=1) + "\n")
        _report.write_section("align", body)


if __name__ == "__main__":
    main()
