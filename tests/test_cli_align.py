"""Tests of ``nce align``: outputs, JSON keys, checkpoints, queries, exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest
import torch

import nce
from nce._checkpoint import load_checkpoint, save_checkpoint
from nce.cli.main import main

TINY = ["--epochs", "1", "--batch-size", "128", "--width", "2", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align")
    out, model = folder / "out.json", folder / "model.pt"
    assert main(["align", *TINY, "--json", str(out), "-o", str(model)]) == 0
    return folder, json.loads(out.read_text()), model


def test_align_writes_fractions_and_a_model(trained, capsys):
    _, result, model = trained
    for key in ("zero_shot_accuracy", "recall_at_1", "recall_at_5", "ensemble_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["loss"] == "clip" and result["epochs"] == 1 and result["bias"] is None
    assert result["seconds"] > 0 and len(result["loss_history"]) == 1
    assert set(result["recall"]) == {"image_to_text", "text_to_image"}
    assert load_checkpoint(model, kind="align_model")["loss"] == "clip"


def test_query_prints_matches_and_writes_a_png(trained, capsys):
    folder, _, model = trained
    grid = folder / "grid.png"
    argv = ["align", "query", str(model), "a handwritten three", "--top", "5"]
    assert main([*argv, "--out", str(grid), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("label") == 5 and "image" in out
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_and_resume_continue_the_run(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    argv = ["align", "--epochs", "2", "--batch-size", "128", "--width", "2", "--no-progress"]
    assert main([*argv, "--checkpoint", str(ckpt)]) == 0
    assert load_checkpoint(ckpt, kind="align")["epoch"] == 2
    longer = ["align", "--epochs", "3", "--batch-size", "128", "--width", "2", "--no-progress"]
    # another number of epochs is another run: its checkpoint is refused
    assert main([*longer, "--checkpoint", str(ckpt), "--resume"]) == 2
    assert main([*argv, "--checkpoint", str(ckpt), "--resume", "--json", str(tmp_path / "j")]) == 0
    assert len(json.loads((tmp_path / "j").read_text())["loss_history"]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--batch-size", "1"], "--batch-size must be >= 2"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--word-dropout", "1"], "--word-dropout"),
        (["--test-size", "0"], "--test-size"),
        (["--resume"], "--resume needs --checkpoint"),
        (["--json", "x.json", "-o", "x.json"], "name the same file"),
    ],
)
def test_bad_training_options_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["align", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_output_folder_is_refused_before_training(tmp_path, capsys):
    assert main(["align", "-o", str(tmp_path), "--no-progress"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_bad_queries_exit_2(tmp_path, trained, capsys):
    _, _, model = trained
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    torch.save({"something": 1}, tmp_path / "other.pt")
    flipped = bytearray(model.read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    saved = load_checkpoint(model, kind="align_model")
    save_checkpoint({"x": 1}, tmp_path / "lm.pt", kind="lm")
    huge = {**saved, "config": {**saved["config"], "dim": 10**12}}
    save_checkpoint(huge, tmp_path / "huge.pt", kind="align_model")
    cases = [
        ([str(tmp_path / "missing.pt"), "a three"], "no such file"),
        ([str(tmp_path / "flipped.pt"), "a three"], "content hash does not match"),
        ([str(tmp_path / "huge.pt"), "a three"], "does not fit its config"),
        ([str(junk), "a three"], "not a model written by nce align"),
        ([str(tmp_path / "other.pt"), "a three"], "not a model written by nce align"),
        ([str(tmp_path / "lm.pt"), "a three"], "is an nce language-model checkpoint"),
        ([str(model), "   "], "empty"),
        ([str(model), "a three", "--top", "0"], "--top must be >= 1"),
        ([str(model), "a three", "--out", str(model)], "would be overwritten"),
    ]
    for argv, message in cases:
        assert main(["align", "query", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_divergence_is_reported_naming_lr(capsys):
    assert main(["align", *TINY[:-1], "--lr", "1e30", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "lr" in err


def test_siglip_writes_its_bias(tmp_path):
    if not hasattr(nce, "pairwise_nce"):
        pytest.skip("nce.pairwise_nce is not available")
    out = tmp_path / "s.json"
    argv = ["align", "--loss", "siglip", "--epochs", "1", "--batch-size", "128", "--width", "2"]
    assert main([*argv, "--no-progress", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["initial_bias"] == pytest.approx(-10.0) and result["bias"] is not None
