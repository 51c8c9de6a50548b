"""Every command refuses, before any work, outputs it cannot or must not write, and odd inputs."""

import numpy as np
import pytest

from nce.cli._table import InputError, read_table
from nce.cli.main import main


def _csv(path, header="a,b", rows=30):
    rng = np.random.default_rng(0)
    lines = [header] + [f"{x:.4f},{y:.4f}" for x, y in rng.normal(size=(rows, 2))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_outputs_never_overwrite_inputs(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    assert main(["density", "fit", str(data), "-o", str(data), "--no-progress"]) == 2
    assert "-o " in (err := capsys.readouterr().err) and "is the same file as the input DATA" in err
    assert data.read_text().startswith("a,b")
    corpus = tmp_path / "c.txt"
    corpus.write_text("in the beginning\n" * 50)
    assert main(["lm", "train", "--corpus", str(corpus), "-o", str(corpus)]) == 2
    assert corpus.read_text().startswith("in the beginning")


def test_output_folders_that_are_files_are_refused_up_front(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["study", "temperature", "--out", str(afile), "--no-progress"]) == 2
    assert "--out: " in capsys.readouterr().err
    assert main(["demo", "--out", str(afile), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["study", "temperature", "--max-train", "100", "--out", str(tmp_path)]) == 2
    assert "needs 10 of each" in capsys.readouterr().err


def test_odd_inputs(tmp_path, capsys):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfa,b\n1,2\n3,4\n")
    assert read_table(bom).columns == ["a", "b"]
    np.save(tmp_path / "c.npy", np.ones((5, 2), dtype=complex))
    with pytest.raises(InputError, match="expected a 2-D numeric array"):
        read_table(tmp_path / "c.npy")
    assert main(["lm", "train", "--max-lines", "-1", "-o", str(tmp_path / "lm.pt")]) == 2
    assert "--max-lines must be >= 1" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(40, 3)))
    (tmp_path / "ckpt.pt").write_text("not a checkpoint")
    argv = ["pretrain", "--data", str(tmp_path / "x.npy"), "--epochs", "1", "--no-progress"]
    assert main([*argv, "--checkpoint", str(tmp_path / "ckpt.pt"), "--resume"]) == 2
    assert "not a trainer checkpoint" in capsys.readouterr().err
