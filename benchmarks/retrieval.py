"""English → Spanish verse retrieval on the built-in held-out chapters: the default retriever
against a TF-IDF baseline, and (``--ablation``) the training variants.

Every held-out English verse is a query against all held-out Spanish verses (and back; the
JSON keys of ``nce retrieve eval`` average both directions, the ``en→es`` column is one way).
Trains :class:`nce.retrieval.RetrievalTrainer` with the defaults of ``nce retrieve train`` on the
training chapters and prints one Markdown row per variant: recall@1, recall@10, MRR, epochs,
CPU seconds and wall seconds of training. The baseline is TF-IDF over character 2–4-grams
(``char_wb``, fitted on the training chapters of both languages) with cosine similarity.

    python benchmarks/retrieval.py
    python benchmarks/retrieval.py --ablation --json benchmarks/results/retrieval.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nce.retrieval import (
    DEFAULTS,
    HashedNgramEncoder,
    RetrievalTrainer,
    evaluate_pairs,
    hard_negatives_supported,
    load_bible_pairs,
    ranks,
    retrieval_metrics,
    split_by_chapter,
    text_ids,
)

from _report import commit


def tfidf_baseline(train, test) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    start, cpu = time.perf_counter(), time.process_time()
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    vectorizer.fit(train.english + train.spanish)
    q, x = vectorizer.transform(test.english), vectorizer.transform(test.spanish)
    scores = torch.from_numpy((q @ x.T).toarray()).float()  # rows are unit: cosines
    answers, identity = torch.arange(len(test)), torch.eye(len(test))
    forward = retrieval_metrics(ranks(scores, identity, answers, text_ids(test.spanish)))
    backward = retrieval_metrics(ranks(scores.T, identity, answers, text_ids(test.english)))
    out = {k: (forward[k] + backward[k]) / 2 for k in forward}
    out["query_to_document"] = forward
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu
    out["epochs"] = 0
    return out


def train_and_evaluate(train, test, seed: int, **options) -> dict:
    model = HashedNgramEncoder()
    trainer = RetrievalTrainer(model, progress=False, random_state=seed, **options)
    trainer.fit(train.english, train.spanish)
    out = evaluate_pairs(model, test.english, test.spanish)
    out.update(seconds=trainer.seconds_, cpu_seconds=trainer.cpu_seconds_, epochs=trainer.epochs)
    return out


def variants(ablation: bool) -> list[tuple[str, dict]]:
    rows = [("default (in-batch info_nce)", {})]
    if not ablation:
        return rows
    if hard_negatives_supported():
        rows += [
            ("+ 3 hard negatives, mined once", {"hard_negatives": 3, "mine_every": 10**6}),
            ("+ 3 hard negatives, re-mined every 2 epochs", {"hard_negatives": 3, "mine_every": 2}),
            (
                "+ re-mined, false-negative margin 0.05",
                {"hard_negatives": 3, "mine_every": 2, "false_negative_margin": 0.05},
            ),
        ]
    rows.append(("pairwise_nce (SigLIP)", {"loss": "pairwise_nce"}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ablation", action="store_true", help="also train the variants")
    parser.add_argument("--threads", type=int, default=1, help="as nce retrieve train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = split_by_chapter(load_bible_pairs())
    print(
        f"commit {commit()}, {len(train)} training pairs, {len(test)} held-out pairs, "
        f"defaults {DEFAULTS}, {args.threads} threads, seed {args.seed}\n"
    )
    print("| method | R@1 | R@1 en→es | R@10 | MRR | epochs | CPU s | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    methods = [("TF-IDF char 2–4-grams, cosine", None), *variants(args.ablation)]
    for name, options in methods:
        r = (
            tfidf_baseline(train, test)
            if options is None
            else train_and_evaluate(train, test, args.seed, **options)
        )
        print(
            f"| {name} | {r['recall_at_1']:.4f} | {r['query_to_document']['recall_at_1']:.4f} "
            f"| {r['recall_at_10']:.4f} | {r['mrr']:.4f} | {r['epochs']} "
            f"| {r['cpu_seconds']:.0f} | {r['seconds']:.0f} |",
            flush=True,
        )
        rows.append({"method": name, "options": options, **r})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
