"""Tests of ``nce study``: table, JSON and PNG outputs, and bad options."""

from __future__ import annotations

import argparse
import json

import pytest

from nce.cli import study
from nce.cli._table import InputError


def _run(argv):
    parser = argparse.ArgumentParser()
    study.add_arguments(parser)
    return study.run(parser.parse_args([*argv, "--no-progress"]))


def test_study_writes_table_json_and_png(tmp_path, capsys):
    argv = ["noise", "--epochs", "1", "--max-train", "150", "--out", str(tmp_path)]
    assert _run([*argv, "--json", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "study_noise.json").read_text())["rows"]
    assert [r["negatives"] for r in rows] == ["data (in-batch)", "Gaussian noise images"]
    assert all(0 <= r["linear_probe_10"] <= 1 for r in rows)
    assert (tmp_path / "study_noise.png").stat().st_size > 1000
    assert (tmp_path / "study_noise.md").read_text().startswith("| negatives |")
    assert json.loads((tmp_path / "rows.json").read_text())["study"] == "noise"
    assert "linear_probe_10 (%)" in capsys.readouterr().out


def test_study_bad_options(tmp_path):
    with pytest.raises(InputError, match="--max-train must be >= 100"):
        _run(["temperature", "--max-train", "50", "--out", str(tmp_path)])
    with pytest.raises(InputError, match="--epochs must be >= 1"):
        _run(["temperature", "--epochs", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        _run(["no-such-study"])
    with pytest.raises(InputError, match="--budget applies only to the batch-size study"):
        _run(["temperature", "--budget", "5", "--out", str(tmp_path)])
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(InputError, match="--budget must be a positive number"):
            _run(["batch-size", "--budget", bad, "--out", str(tmp_path)])


def test_budget_reaches_the_batch_size_study(tmp_path, monkeypatch):
    seen = {}

    def fake_run_study(name, data, config, **kw):
        seen.update(kw, name=name, epochs=config.epochs)
        return [{"batch_size": 16, "linear_probe": 0.5}]

    monkeypatch.setattr(study, "run_study", fake_run_study)
    monkeypatch.setattr(study, "plot_study", lambda *a, **k: None)
    assert (
        _run(["batch-size", "--budget", "2.5", "--max-train", "150", "--out", str(tmp_path)]) == 0
    )
    assert seen == {
        "name": "batch-size",
        "epochs": 40,
        "budget_seconds": 2.5,
        "sizes": (16, 32, 64, 128),
    }


def test_without_matplotlib_the_study_stops_before_training_naming_the_extra(
    tmp_path, monkeypatch, capsys
):
    import sys

    from nce.cli.main import main

    def no_training(*args, **kwargs):
        raise AssertionError("the study ran although its figure cannot be drawn")

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setattr(study, "run_study", no_training)
    out = tmp_path / "out"
    assert main(["study", "noise", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "pip install nce[plot]" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_the_library_needs_no_matplotlib():
    import pathlib
    import subprocess
    import sys

    import nce

    root = pathlib.Path(nce.__file__).parent
    library = [p for p in root.rglob("*.py") if "cli" not in p.relative_to(root).parts]
    assert [str(p) for p in library if "matplotlib" in p.read_text()] == []
    code = (
        "import sys, pkgutil, importlib; sys.modules['matplotlib'] = None; import nce; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(nce.__path__, 'nce.') "
        "if not m.name.startswith('nce.cli')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root.parent)
