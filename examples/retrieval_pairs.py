r"""Dual-encoder retrieval on your pairs file: train two towers, measure recall@K on held-out pairs.

    python examples/retrieval_pairs.py pairs.tsv
    python examples/retrieval_pairs.py pairs.tsv --test test_pairs.tsv --hard-negatives 3
    python examples/retrieval_pairs.py          # built-in: English-Spanish Bible verses

A pairs file holds one ``query<TAB>document`` pair per line (UTF-8; a malformed line is reported
with its number). Without ``--test``, a random ``--test-fraction`` of the pairs is held out. The
encoder (:class:`nce.retrieval.HashedNgramEncoder`) hashes each text's words and character
n-grams into a shared table and projects the mean row with one matrix per side;
:class:`nce.retrieval.RetrievalTrainer` trains it with in-batch InfoNCE (van den Oord et al.
2018, arXiv:1807.03748): for a batch of N pairs with unit embeddings :math:`q_i, d_j`,

.. math:: \ell = -\frac1N \sum_i \log \frac{e^{q_i \cdot d_i/\tau}}{\sum_j e^{q_i \cdot d_j/\tau}},

the other N - 1 documents serving as negatives (``--hard-negatives K`` adds the K most similar
wrong documents, mined by the model itself). :func:`nce.retrieval.evaluate_pairs` then ranks
every held-out document for every held-out query (and back) and reports recall@1, recall@10 and
the mean reciprocal rank, before and after training; the best documents for one held-out query
are listed with their cosines (:func:`nce.retrieval.top_k`).
"""

from __future__ import annotations

import argparse

import torch

from nce.retrieval import (
    HashedNgramEncoder,
    RetrievalTrainer,
    evaluate_pairs,
    load_bible_pairs,
    read_pairs,
    split_by_chapter,
    top_k,
)


def load(args: argparse.Namespace):
    """(train queries, train documents, test queries, test documents, where they came from)."""
    generator = torch.Generator().manual_seed(args.seed)
    if args.pairs is None:
        train, test = split_by_chapter(load_bible_pairs(), random_state=args.seed)
        train = train.subset(torch.randperm(len(train), generator=generator)[: args.train_pairs])
        test = test.subset(torch.randperm(len(test), generator=generator)[: args.test_pairs])
        source = "built-in verses, English -> Spanish (held-out chapters)"
        return train.english, train.spanish, test.english, test.spanish, source
    queries, documents = read_pairs(args.pairs, minimum=2)
    if args.test is not None:
        test_queries, test_documents = read_pairs(args.test)
        return queries, documents, test_queries, test_documents, args.pairs
    order = torch.randperm(len(queries), generator=generator).tolist()
    n_test = max(1, round(args.test_fraction * len(queries)))
    test, train = order[:n_test], order[n_test:]
    return (
        [queries[i] for i in train],
        [documents[i] for i in train],
        [queries[i] for i in test],
        [documents[i] for i in test],
        args.pairs,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="?", help="a query<TAB>document file (default: verses)")
    parser.add_argument("--test", help="a pairs file to evaluate on (default: held out)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--train-pairs", type=int, default=4000, help="built-in verses only")
    parser.add_argument("--test-pairs", type=int, default=500, help="built-in verses only")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--hard-negatives", type=int, default=0)
    parser.add_argument("--buckets", type=int, default=1 << 16, help="hash buckets")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    queries, documents, test_queries, test_documents, source = load(args)
    print(f"{source}: {len(queries)} training pairs, {len(test_queries)} held out")
    model = HashedNgramEncoder(buckets=args.buckets, width=args.dim, dim=args.dim)
    before = evaluate_pairs(model, test_queries, test_documents, ks=(1, 10))
    trainer = RetrievalTrainer(
        model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        hard_negatives=args.hard_negatives,
        progress=False,
        random_state=args.seed,
    ).fit(queries, documents)
    after = evaluate_pairs(model, test_queries, test_documents, ks=(1, 10))
    print(
        f"trained {args.epochs} epochs in {trainer.cpu_seconds_:.1f} CPU s, loss "
        f"{trainer.history_[0]:.4f} -> {trainer.history_[-1]:.4f}"
    )
    print(f"{'held-out, both directions':<28}{'untrained':>10}{'trained':>10}")
    for key in ("recall_at_1", "recall_at_10", "mrr"):
        print(f"{key:<28}{before[key]:>10.4f}{after[key]:>10.4f}")

    query, answer = test_queries[0], test_documents[0]
    documents_embedded = model.embed(test_documents, "document")
    scores, best = top_k(
        model.embed([query], "query"), documents_embedded, min(3, len(test_documents))
    )
    print(f"query: {query[:70]}  (* its pair)")
    for score, index in zip(scores[0].tolist(), best[0].tolist(), strict=True):
        mark = "*" if test_documents[index] == answer else " "
        print(f" {mark} {score:.3f}  {test_documents[index][:70]}")


if __name__ == "__main__":
    main()
