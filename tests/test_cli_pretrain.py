"""Tests of ``nce pretrain``: outputs, JSON contents, and exit code 2 on bad input."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from nce._checkpoint import load_checkpoint
from nce.cli import pretrain
from nce.cli._table import InputError


def _run(argv):
    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    return pretrain.run(parser.parse_args([*argv, "--no-progress"]))


@pytest.fixture
def blobs(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = 3 * np.eye(6)[y] + 0.3 * rng.normal(size=(120, 6))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


def test_pretrain_vectors_writes_json_and_encoder(blobs, capsys):
    out, enc = blobs / "out.json", blobs / "enc.pt"
    argv = ["--data", str(blobs / "x.npy"), "--labels", str(blobs / "y.npy")]
    argv += ["--epochs", "3", "--batch-size", "32", "--width", "4"]
    assert _run([*argv, "--json", str(out), "-o", str(enc)]) == 0
    result = json.loads(out.read_text())
    for key in ("linear_probe_accuracy", "linear_probe_accuracy_10_per_class", "knn_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["linear_probe_accuracy"] > 0.9
    assert len(result["loss_history"]) == 3
    saved = load_checkpoint(enc, kind="encoder")
    assert saved["encoder"]["class"] == "MLPEncoder"
    assert "linear probe accuracy" in capsys.readouterr().out


def test_pretrain_images_moco_with_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = rng.random((60, 6, 6)) + y[:, None, None]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    ckpt = tmp_path / "ckpt.pt"
    argv = ["--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    argv += ["--loss", "info_nce", "--moco", "--queue-size", "64", "--epochs", "2"]
    argv += ["--batch-size", "16", "--width", "2", "--checkpoint", str(ckpt)]
    assert _run([*argv, "--json", str(tmp_path / "o.json")]) == 0
    assert load_checkpoint(ckpt, kind="contrastive")["epoch"] == 2
    assert _run([*argv, "--resume"]) == 0


def _write(tmp_path, name, array):
    np.save(tmp_path / name, array)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    "data, labels, message",
    [
        (np.zeros(10), None, "expected vectors"),
        (np.zeros((2, 3, 4, 5, 6)), None, "expected vectors"),
        (np.array([[1.0, np.nan]] * 10), None, "NaN or Inf"),
        (np.zeros((10, 3)), np.zeros(9, dtype=int), r"must have shape \(10,\)"),
        (np.zeros((10, 3)), np.full(10, 0.5), "integer class labels"),
    ],
)
def test_bad_input_raises_input_error(tmp_path, data, labels, message):
    argv = ["--data", _write(tmp_path, "x.npy", data), "--epochs", "1"]
    if labels is not None:
        argv += ["--labels", _write(tmp_path, "y.npy", labels)]
    with pytest.raises(InputError, match=message):
        _run(argv)


def test_bad_options_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        _run(["--data", str(tmp_path / "missing.npy")])
    with pytest.raises(InputError, match="--moco trains with --loss info_nce"):
        _run(["--moco", "--loss", "nt_xent"])
    with pytest.raises(InputError, match="--epochs must be >= 1"):
        _run(["--epochs", "0"])
    with pytest.raises(InputError, match="--labels: the digits"):
        _run(["--labels", _write(tmp_path, "y.npy", np.zeros(3))])


def test_probe_labels_and_output_paths_checked_before_training(tmp_path, blobs):
    data = ["--data", str(blobs / "x.npy"), "--epochs", "1", "--width", "2"]
    few = np.array([0] * 100 + [1] * 5 + [2] * 15)
    labels = ["--labels", _write(tmp_path, "few.npy", few)]
    out = tmp_path / "enc.pt"
    with pytest.raises(ValueError, match="class 1 has 3 training sample"):
        _run([*data, *labels, "-o", str(out)])
    assert not out.exists()
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="--json: .* is a folder"):
        _run([*data, "--json", str(tmp_path / "folder"), "-o", str(out)])
    assert not out.exists()
    huge = _write(tmp_path, "huge.npy", np.full((20, 3), 1e308))
    with pytest.raises(ValueError, match="too large"):
        _run(["--data", huge, "--epochs", "1"])


def test_diverging_pretraining_exits_1_naming_lr_and_the_epoch(blobs, capsys):
    from nce.cli.main import main

    out = blobs / "enc.pt"
    argv = ["pretrain", "--data", str(blobs / "x.npy"), "--labels", str(blobs / "y.npy")]
    argv += ["--epochs", "20", "--batch-size", "32", "--width", "4", "--lr", "1e6"]
    assert main([*argv, "--no-progress", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nce pretrain: error: contrastive training diverged in epoch" in err
    assert "lower --lr (now 1e+06)" in err and "NaN or Inf value" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_command_defaults_are_the_library_defaults_the_benchmark_measures():
    import inspect

    from nce.contrastive import pretrain as library_pretrain

    library = {
        name: p.default for name, p in inspect.signature(library_pretrain).parameters.items()
    }
    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    command = vars(parser.parse_args([]))
    for option in ("loss", "temperature", "epochs", "batch_size", "lr", "moco", "queue_size"):
        assert command[option] == library[option], option
    for option in ("width", "test_size"):
        assert command[option] == library[option], option
    assert command["seed"] == library["random_state"]
    # BENCHMARKS.md's headline protocol: SimCLR's nt_xent at τ = 1 for 150 epochs of batch 256
    assert (library["loss"], library["temperature"], library["epochs"]) == ("nt_xent", 1.0, 150)
