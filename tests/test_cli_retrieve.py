"""``nce retrieve``: train and evaluate on a pairs file of one's own, search, and bad input."""

import json

import pytest
from test_retrieval_trainer import DOCUMENTS, QUERIES

from nce.cli.main import main

SMALL = ["--buckets", "4096", "--width", "16", "--dim", "16", "--no-progress"]


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.tsv"
    lines = [f"{q}\t{d}" for q, d in zip(QUERIES, DOCUMENTS, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_eval_and_search_on_a_pairs_file(pairs, tmp_path, capsys):
    model, scores = tmp_path / "m.pt", tmp_path / "s.json"
    args = [
        "retrieve",
        "train",
        str(pairs),
        "-o",
        str(model),
        "--epochs",
        "30",
        "--batch-size",
        "10",
        "--lr",
        "0.05",
        "--temperature",
        "0.1",
        *SMALL,
    ]
    assert main(args) == 0
    assert "trained info_nce on 20 pairs" in capsys.readouterr().out
    assert main(["retrieve", "eval", str(model), str(pairs), "--json", str(scores)]) == 0
    out = capsys.readouterr().out
    result = json.loads(scores.read_text())
    assert {"recall_at_1", "recall_at_10", "mrr"} <= set(result)
    assert result["recall_at_1"] >= 0.8 and 0 <= result["mrr"] <= 1
    assert f"recall@1 {result['recall_at_1']:.4f}" in out
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("perro gato\nuno dos\nrojo verde\n")
    assert (
        main(["retrieve", "search", str(model), "dog", "--corpus", str(corpus), "--top", "2"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "cosine" in lines[1]


def test_malformed_pairs_file_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nno tab\nc\td\n")
    model = tmp_path / "m.pt"
    assert main(["retrieve", "train", str(bad), "-o", str(model), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2 (no tab)" in err
    assert not model.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resume"], "--resume needs --checkpoint"),
        (["--loss", "pairwise_nce", "--hard-negatives", "2"], "--hard-negatives needs --loss"),
        (["--temperature", "0"], "--temperature must be a finite number > 0"),
        (["--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_bad_options_exit_2_before_any_work(pairs, tmp_path, capsys, extra, message):
    model = tmp_path / "m.pt"
    assert main(["retrieve", "train", str(pairs), "-o", str(model), *SMALL, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not model.exists()


def test_outputs_are_checked_before_training(pairs, tmp_path, capsys):
    assert main(["retrieve", "train", str(pairs), "-o", str(tmp_path), *SMALL]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["retrieve", "train", str(pairs), "-o", str(pairs), *SMALL]) == 2
    assert "would be overwritten" in capsys.readouterr().err


def test_eval_refuses_a_file_that_is_not_a_model(pairs, tmp_path, capsys):
    assert main(["retrieve", "eval", str(pairs), str(pairs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an nce retrieve model" in err


def test_divergence_is_named_and_exits_1(pairs, tmp_path, capsys):
    model = tmp_path / "m.pt"
    args = [
        "retrieve",
        "train",
        str(pairs),
        "-o",
        str(model),
        "--lr",
        "1e30",
        "--temperature",
        "1e-30",
        "--epochs",
        "2",
        *SMALL,
    ]
    assert main(args) == 1
    assert "diverged" in capsys.readouterr().err and not model.exists()
