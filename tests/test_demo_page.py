"""``nce demo --quick``: every section's numbers near their targets, and its page rendered by
headless Chromium: not blank, every image loaded, every number of summary.json on it (skipped
where Chromium is not installed; CI installs it)."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from _demo_page import check_page

from nce.cli.main import main

Image = pytest.importorskip("PIL.Image")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out, json.loads((out / "summary.json").read_text())


def _chromium(*args, cwd):
    return subprocess.run(
        [CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_quick_demo_numbers_meet_their_targets(report):
    out, summary = report
    sections = {key: section["numbers"] for key, section in summary["sections"].items()}
    assert set(sections) == {
        "gaussian",
        "density",
        "lm",
        "pretrain",
        "align",
        "mi",
        "retrieval",
        "memory",
    }
    assert summary["quick"] is True
    assert abs(sections["gaussian"]["learned_log_z"] - sections["gaussian"]["true_log_z"]) < 0.05
    assert sections["density"]["anomaly_auc"] > 0.8
    lm = sections["lm"]
    assert max(lm["nce_perplexity"], lm["softmax_perplexity"]) < lm["vocab_size"] / 5
    assert sections["pretrain"]["linear_probe_accuracy"] > 0.9
    assert sections["align"]["zero_shot_accuracy"] > 0.2
    mi = sections["mi"]
    assert abs(mi["value"] - mi["true_mi"]) < 0.2
    assert mi["staircase_8"] <= mi["staircase_log_n"] + 0.1  # InfoNCE never passes log N
    retrieval = sections["retrieval"]
    assert retrieval["recall_at_1"] > 0.3 and retrieval["recall_at_10"] > 0.6
    assert abs(sections["memory"]["tiled_loss"] - sections["memory"]["dense_loss"]) < 1e-4
    for section in summary["sections"].values():
        assert len(section["reading"]) == 2 and (out / section["figure"]).is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium: apt-get install chromium")
def test_page_renders_with_every_figure_and_number(report, tmp_path):
    out, summary = report
    assert set(summary["sections"]) >= {"gaussian", "density", "lm", "pretrain", "align", "mi"}
    page = out / "index.html"
    # The DOM as Chromium built it from the file: every number and every image (decoded) there.
    dom = _chromium("--dump-dom", page.as_uri(), cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr
    check_page(dom.stdout, summary, out)
    # The rendered page is not blank: many pixels differ from the background.
    shot = tmp_path / "page.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri(), cwd=tmp_path)
    assert run.returncode == 0 and shot.is_file(), run.stderr
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 3000)
    pixels = np.asarray(image).reshape(-1, 3)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    share = 1 - counts.max() / len(pixels)  # pixels not of the most common (background) color
    assert share > 0.05, f"only {share:.1%} of the screenshot differs from the background"
    assert len(colors) > 50
