"""Dual-encoder retrieval: built-in parallel text, a hashed n-gram two-tower encoder, exact
chunked search and its metrics, a streaming estimate of item frequencies for log-Q, hard-negative
mining with false-negative filters, a trainer, pairs files and an optional faiss adapter."""

from nce.retrieval.bible import (
    BiblePairs,
    load_bible_pairs,
    parse_verses,
    repeated_verses,
    split_by_chapter,
)
from nce.retrieval.evaluate import evaluate_pairs
from nce.retrieval.faiss_index import FaissIndex
from nce.retrieval.frequency import FrequencyEstimator
from nce.retrieval.mining import mine_hard_negatives, text_ids
from nce.retrieval.pairs_file import PairsFileError, read_pairs
from nce.retrieval.search import ranks, retrieval_metrics, top_k
from nce.retrieval.towers import (
    FeatureTable,
    HashedNgramEncoder,
    feature_bucket,
    text_features,
)
from nce.retrieval.trainer import DEFAULTS, LOSSES, RetrievalTrainer, hard_negatives_supported

__all__ = [
    "DEFAULTS",
    "LOSSES",
    "BiblePairs",
    "FaissIndex",
    "FeatureTable",
    "FrequencyEstimator",
    "HashedNgramEncoder",
    "PairsFileError",
    "RetrievalTrainer",
    "evaluate_pairs",
    "feature_bucket",
    "hard_negatives_supported",
    "load_bible_pairs",
    "mine_hard_negatives",
    "parse_verses",
    "ranks",
    "read_pairs",
    "repeated_verses",
    "retrieval_metrics",
    "split_by_chapter",
    "text_features",
    "text_ids",
    "top_k",
]
