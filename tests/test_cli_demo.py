import json
import math

import pytest
from _demo_page import check_page, png_size

from nce.cli import demo
from nce.cli._memory_demo import dense_bytes, memory_section, peak_memory_growth, tiled_bytes
from nce.cli._report_page import Measure, SectionResult, format_number
from nce.cli.main import main
from nce.density import NCEDensity


def test_gaussian_section_fits_through_the_estimator(tmp_path, monkeypatch, capsys):
    fits = []
    original = NCEDensity.fit

    def recording_fit(self, X, context=None):
        fits.append(self)
        return original(self, X, context)

    monkeypatch.setattr(NCEDensity, "fit", recording_fit)
    result = demo.gaussian_section(tmp_path, progress=False)
    assert len(fits) == 1 and fits[0].noise_ratio == 10
    assert result["learned_log_z"] == fits[0].log_partition_
    # NCE's learned log Z matches the closed form of the learned model, and the data's.
    assert abs(result["learned_log_z"] - result["true_log_z"]) < 0.05
    assert abs(result["learned_log_z"] - result["data_log_z"]) < 0.1
    assert math.isfinite(result["final_loss"])
    assert png_size((tmp_path / "density.png").read_bytes())[0] > 0
    # The reading is written from this run's numbers.
    assert format_number(result["learned_log_z"]) in result.reading[0]
    assert format_number(result["true_log_z"]) in result.reading[0]
    assert "learned log Z" in capsys.readouterr().out


def test_only_writes_the_named_sections_as_a_page_and_a_summary(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--only", "gaussian", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["sections"]) == ["gaussian"]
    numbers = summary["sections"]["gaussian"]["numbers"]
    assert abs(numbers["learned_log_z"] - numbers["true_log_z"]) < 0.05
    assert summary["quick"] is False
    check_page((tmp_path / "index.html").read_text(), summary, tmp_path)
    assert "http" not in (tmp_path / "index.html").read_text().replace("http-equiv", "")
    out = capsys.readouterr().out
    assert any(line.startswith("gaussian  learned log Z") for line in out.splitlines())
    assert not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / "demo.json").exists()


def test_unknown_section_is_refused_with_the_valid_names(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out), "--only", "lm,retrievl", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'retrievl'" in err and len(err.strip().splitlines()) == 1
    for section in demo.SECTIONS:
        assert section.key in err
    assert not out.exists()


def test_every_section_key_and_figure_is_distinct():
    keys = [s.key for s in demo.SECTIONS]
    figures = [s.figure for s in demo.SECTIONS]
    assert len(set(keys)) == len(keys) and len(set(figures)) == len(figures)
    assert {"gaussian", "density", "lm", "pretrain", "align", "mi", "memory"} <= set(keys)


def test_memory_section_tiled_loss_equals_dense_with_less_memory(tmp_path, capsys):
    result = memory_section(tmp_path, progress=False, quick=True)
    assert result["batch_size"] == 4096
    assert abs(result["tiled_loss"] - result["dense_loss"]) < 1e-4
    assert result["tiled_mib"] * 3 < result["dense_mib"]
    assert png_size((tmp_path / "memory.png").read_bytes())[0] > 0
    assert "agree" in result.reading[0]


def test_memory_bytes_and_peak_measure():
    assert dense_bytes(16384) == 2 * 16384**2 * 4
    assert tiled_bytes(16384, 1024) == 2 * 1024 * 16384 * 4
    assert tiled_bytes(100, 1024) == dense_bytes(100)
    value, grown = peak_memory_growth(lambda: (b"\x01" * (64 * 2**20))[0])
    assert value == 1
    assert grown is None or grown >= 60 * 2**20


def test_format_number_and_section_rules():
    assert [format_number(v) for v in (3, 0.123456, 245.31, 123456.7, True)] == [
        "3",
        "0.1235",
        "245.3",
        "123457",
        "yes",
    ]
    with pytest.raises(ValueError, match="two lines"):
        SectionResult((Measure("a", "a", 1.0),), "a.png", "note", ("one line",))
    with pytest.raises(ValueError, match="target_key"):
        Measure("a", "a", 1.0, target=2.0)
    result = SectionResult((Measure("a", "a", 1.0, 2.0, "b", "truth"),), "a.png", "n", ("x", "y"))
    assert dict(result) == {"a": 1.0, "b": 2.0}
