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


def test_tfidf_baseline_scores_are_cosines_of_character_ngrams():
    from nce.cli.retrieve import tfidf_scores

    texts = ["in the beginning", "en el principio", "and god said"]
    scores = tfidf_scores(texts, ["in the beginning", "god said"], texts)
    assert scores.shape == (2, 3)
    assert abs(float(scores[0, 0]) - 1.0) < 1e-6  # a text is its own nearest, cosine 1
    assert int(scores[1].argmax()) == 2 and float(scores.min()) >= 0.0
    assert float(scores[0, 1]) < float(scores[0, 0])


def test_demo_section_reports_recall_against_tfidf_from_its_own_ranks(tmp_path, monkeypatch):
    from _demo_page import png_size

    from nce.cli import retrieve
    from nce.cli._report_page import format_number

    monkeypatch.setitem(retrieve.DEMO_SIZES, True, (300, 1, 60))
    result = retrieve.demo_section(tmp_path, progress=False, quick=True)
    assert result["training_pairs"] == 300 and result["epochs"] == 1
    for key in ("recall_at_1", "recall_at_10", "tfidf_recall_at_1", "tfidf_recall_at_10"):
        assert 0.0 <= result[key] <= 1.0
        assert result[key] * 60 == pytest.approx(round(result[key] * 60))  # a count of 60 queries
    assert result["recall_at_10"] >= result["recall_at_1"]
    assert result["tfidf_recall_at_10"] >= result["tfidf_recall_at_1"]
    assert result["ahead_of_tfidf"] + result["behind_tfidf"] <= 1.0
    # TF-IDF on character n-grams finds some Spanish verses from English ones (names, numbers).
    assert result["tfidf_recall_at_10"] > 0.2
    assert format_number(100 * result["recall_at_1"]) in result.reading[0]
    assert format_number(100 * result["tfidf_recall_at_10"]) in result.reading[1]
    assert png_size((tmp_path / "retrieval.png").read_bytes())[0] > 0
