"""Probe benchmark: frozen self-supervised features of digits against raw pixels.

scikit-learn's digits, stratified 70/30 split with seed 0. Contrastive pretraining sees the
training images only, without labels; then the encoder is frozen and three probes read its
representation: logistic regression with all training labels, logistic regression with 10 labels
per class (mean of 5 draws), and 5-NN under the cosine distance. The reference is the same probes
on the raw pixels. Targets for the frozen features: >= 98% with all labels, >= 95% with 10 per
class.

    python benchmarks/contrastive.py                 # prints and updates BENCHMARKS.md
    python benchmarks/contrastive.py --quick         # short runs, prints only
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.contrastive import (  # noqa: E402
    ContrastiveTrainer,
    ConvEncoder,
    ProjectionHead,
    digits_augmentation,
    evaluate_representation,
    load_digits_split,
)
from nce.contrastive.pretraining import pretrain as library_pretrain  # noqa: E402

import _report  # noqa: E402

TARGET_ALL, TARGET_FEW = 0.98, 0.95
# The protocol is the default of nce.contrastive.pretrain (and of `nce pretrain`).
DEFAULTS = {
    name: p.default for name, p in inspect.signature(library_pretrain).parameters.items()
}


def pretrain(data, *, loss, epochs, seed, temperature, moco=False, width=32, progress=True):
    encoder = ConvEncoder(width=width)
    trainer = ContrastiveTrainer(
        encoder,
        ProjectionHead(encoder.out_features, 128, 64),
        loss=loss,
        temperature=temperature,
        augment=digits_augmentation(),
        epochs=epochs,
        batch_size=256,
        lr=3e-3,
        moco=moco,
        momentum=0.99,
        queue_size=1024,
        random_state=seed,
        progress=progress,
    )
    t0 = time.perf_counter()
    trainer.fit(data.x_train)
    seconds = time.perf_counter() - t0
    result = evaluate_representation(
        trainer.transform(data.x_train), data.y_train, trainer.transform(data.x_test), data.y_test
    )
    return result, seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=DEFAULTS["temperature"])
    parser.add_argument("--quick", action="store_true", help="10 epochs, one seed, no write")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on a shared CPU)"
    )
    args = parser.parse_args(argv)
    epochs, seeds = (10, 1) if args.quick else (args.epochs, args.seeds)
    torch.set_num_threads(args.threads)
    data = load_digits_split(test_size=0.3, random_state=0)

    rows = []
    flat = (data.x_train.flatten(1), data.x_test.flatten(1))
    raw = evaluate_representation(flat[0], data.y_train, flat[1], data.y_test)
    rows.append(("raw pixels (64)", [raw], 0.0))
    print("raw pixels", raw)
    methods = [
        (f"SimCLR, nt_xent τ={args.temperature}", {"loss": "nt_xent"}),
        (
            f"MoCo, info_nce τ={args.temperature}, queue 1024, m=0.99",
            {"loss": "info_nce", "moco": True},
        ),
    ]
    for name, kw in methods:
        results, seconds = [], []
        for seed in range(seeds):
            r, s = pretrain(
                data,
                epochs=epochs,
                seed=seed,
                temperature=args.temperature,
                progress=not args.no_progress,
                **kw,
            )
            print(name, f"seed {seed}", r, f"{s:.1f} s", flush=True)
            results.append(r)
            seconds.append(s)
        rows.append((name, results, float(np.mean(seconds))))

    def cell(results, key):
        values = [getattr(r, key) for r in results]
        if len(values) == 1:
            return f"{100 * values[0]:.1f}"
        return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"

    lines = [
        "| features | linear probe, all labels (%) | linear probe, 10 labels/class (%) "
        "| 5-NN (%) | pretraining (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, results, seconds in rows:
        lines.append(
            f"| {name} | {cell(results, 'linear_probe_accuracy')} "
            f"| {cell(results, 'linear_probe_accuracy_10_per_class')} "
            f"| {cell(results, 'knn_accuracy')} | {seconds:.0f} |"
        )
    best = max(rows[1:], key=lambda row: np.mean([r.linear_probe_accuracy for r in row[1]]))
    best_all = np.mean([r.linear_probe_accuracy for r in best[1]])
    best_few = max(
        np.mean([r.linear_probe_accuracy_10_per_class for r in row[1]]) for row in rows[1:]
    )
    verdict = (
        f"Targets: all labels >= 98% — {'met' if best_all >= TARGET_ALL else 'not met'} "
        f"(best {100 * best_all:.1f}%); 10 labels per class >= 95% — "
        f"{'met' if best_few >= TARGET_FEW else 'not met'} (best {100 * best_few:.1f}%)."
    )
    print("\n".join(lines))
    print(verdict)
    if args.quick:
        return
    body = "\n".join(
        [
            "### Contrastive pretraining on digits: frozen-feature probes",
            "",
            "Digits (1797 8x8 images), stratified 70/30 split with seed 0. The encoder (three 3x3 "
            "convolutions, width 32, 128-d representation) is pretrained on the 1257 training "
            f"images without labels for {epochs} epochs (batch 256, AdamW lr 3e-3, cosine "
            "schedule, augmentation: ±15° rotation, ±10% scale, ±1 px shift, 10% pixel dropout, "
            "noise σ=0.05), then frozen. Probes: logistic regression on standardized features "
            "with all training labels and with 10 labels per class (mean of 5 draws), and 5-NN "
            f"under the cosine distance. Mean ± std over {seeds} pretraining seed(s); the raw-"
            "pixel row is the same probes on the 64 pixels.",
            "",
            *lines,
            "",
            verdict,
            "",
            f"`python benchmarks/contrastive.py --epochs {epochs} --seeds {seeds} --temperature "
            f"{args.temperature}` · commit "
            f"{_report.commit()} · {_report.machine()}",
        ]
    )
    _report.write_section("contrastive-probe", body)


if __name__ == "__main__":
    main()
