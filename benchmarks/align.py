"""CLIP vs SigLIP in miniature on captioned digits: zero-shot accuracy, recall and time.

For each loss (SigLIP only where ``nce.pairwise_nce`` exists) and each batch size, trains
:func:`nce.contrastive.align` with the default settings otherwise and prints one Markdown row:
zero-shot accuracy on unseen caption wording (mean over the test templates, and the prompt
ensemble), retrieval recall@1/@5, the learned temperature (and bias) against their initial
values, epochs and training seconds. One torch thread, as ``nce align`` uses.

    python benchmarks/align.py --batch-sizes 16 64 256 1024 --json benchmarks/results/align.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import nce
from nce.contrastive import align

from _report import commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", nargs="+", default=["clip", "siglip"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    losses = [x for x in args.losses if x != "siglip" or hasattr(nce, "pairwise_nce")]
    print(f"commit {commit()}, {args.epochs} epochs, seed {args.seed}\n")
    print(
        "| loss | batch | zero-shot | ensemble | R@1 | R@5 | τ (init → learned) "
        "| bias (init → learned) | CPU s | wall s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |")
    rows = []
    for loss in losses:
        for batch_size in args.batch_sizes:
            cpu = time.process_time()
            r = align(
                loss=loss,
                epochs=args.epochs,
                batch_size=batch_size,
                progress=False,
                random_state=args.seed,
            )
            cpu = time.process_time() - cpu
            bias = "—" if r.bias is None else f"{r.initial_bias:g} → {r.bias:.2f}"
            print(
                f"| {loss} | {batch_size} | {r.zero_shot_accuracy:.4f} | {r.ensemble_accuracy:.4f} "
                f"| {r.recall_at_1:.4f} | {r.recall_at_5:.4f} "
                f"| {r.initial_temperature:.3g} → {r.temperature:.3g} | {bias} "
                f"| {cpu:.1f} | {r.seconds:.1f} |",
                flush=True,
            )
            rows.append({**r.as_dict(), "cpu_seconds": cpu})
    if args.json:
        Path(args.json).write_text(json.dumps({"commit": commit(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
