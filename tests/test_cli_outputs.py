"""Every command checks all its outputs against all its inputs and each other before any work;
outputs that are links, FIFOs or devices are never replaced; size flags are bounded at parse time;
Ctrl-C ends a command with one line."""

import os
import stat
import threading

import numpy as np
import pytest

from nce.cli._table import InputError, read_table
from nce.cli.main import build_parser, main
from nce.text import kjv_verses, tokenize


def _csv(path, rows=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=rows)
    y = x + 0.5 * rng.normal(size=rows)
    path.write_text("a,b\n" + "".join(f"{u:.4f},{v:.4f}\n" for u, v in zip(x, y, strict=True)))
    return path


def _refused(argv, capsys, *needles):
    """The command exits 2 with one line naming every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


MI = ["--max-steps", "2", "--no-progress"]


def test_mi_json_never_overwrites_its_input(tmp_path, capsys, monkeypatch):
    data = _csv(tmp_path / "d.csv")
    before = data.read_bytes()
    _refused(["mi", str(data), "--x-cols", "a", "--json", str(data), *MI], capsys, "--json", "CSV")
    monkeypatch.chdir(tmp_path)
    _refused(["mi", "d.csv", "--x-cols", "a", "--json", "./d.csv", *MI], capsys, "--json", "CSV")
    os.link(data, tmp_path / "hard.csv")
    _refused(["mi", "d.csv", "--x-cols", "a", "--json", "hard.csv", *MI], capsys, "--json")
    np.save(tmp_path / "y.npy", np.arange(40.0) ** 1.5)
    (tmp_path / "to-y.npy").symlink_to(tmp_path / "y.npy")
    two = ["mi", "d.csv", "y.npy", "--x-cols", "a", "--json", "to-y.npy", *MI]
    _refused(two, capsys, "--json to-y.npy", "Y (second CSV) y.npy")
    assert data.read_bytes() == before
    assert (tmp_path / "to-y.npy").is_symlink()
    assert read_table(tmp_path / "y.npy").values.shape == (40, 1)


def test_cli_output_through_a_symlink_and_into_a_device(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    target = tmp_path / "results.json"
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    assert main(["mi", str(data), "--x-cols", "a", "--json", str(link), *MI]) == 0
    assert link.is_symlink() and '"value"' in target.read_text()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    assert main(["mi", str(data), "--x-cols", "a", "--json", str(fifo), *MI]) == 0
    reader.join(timeout=10)
    assert '"value"' in received[0] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        return  # not root: the FIFO covers writing through
    assert main(["mi", str(data), "--x-cols", "a", "--json", str(tmp_path / "null"), *MI]) == 0
    assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(tokenize(v)) for v in kjv_verses()[:300]))
    out = folder / "lm.pt"
    argv = ["lm", "train", "--corpus", str(corpus), "--dim", "8", "--hidden", "8", "--k", "5"]
    assert main([*argv, "--no-progress", "-o", str(out)]) == 0
    return out, corpus


def test_lm_eval_json_never_overwrites_the_checkpoint_or_its_corpus(checkpoint, capsys):
    out, corpus = checkpoint
    capsys.readouterr()
    saved, text = out.read_bytes(), corpus.read_bytes()
    _refused(["lm", "eval", str(out), "--json", str(out)], capsys, "--json", "CHECKPOINT")
    _refused(["lm", "eval", str(out), "--json", str(corpus)], capsys, "--json", "its corpus")
    assert out.read_bytes() == saved and corpus.read_bytes() == text


def test_pretrain_outputs_must_differ(tmp_path, capsys):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    b.symlink_to(a)
    base = ["pretrain", "--epochs", "1", "--no-progress"]
    _refused([*base, "-o", str(a), "--json", str(a)], capsys, "--json", "-o")
    _refused([*base, "-o", str(a), "--checkpoint", str(b)], capsys, "--checkpoint", "-o")
    np.save(tmp_path / "x.npy", np.zeros((40, 3)))
    argv = [*base, "--data", str(tmp_path / "x.npy"), "--json", str(tmp_path / "x.npy")]
    _refused(argv, capsys, "--json", "--data")
    assert not a.exists()


def test_density_outputs_checked_against_inputs_and_each_other(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    model = tmp_path / "m.pt"
    model.write_bytes(b"a model")
    argv = ["density", "score", str(model), str(data), "-o", str(model)]
    _refused(argv, capsys, "-o", "MODEL")
    argv = ["density", "fit", str(data), "-o", str(tmp_path / "n.pt"), "--plot", str(data)]
    _refused(argv, capsys, "--plot", "DATA")
    assert model.read_bytes() == b"a model"


def test_density_fit_never_overwrites_an_unnamed_plot(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", rows=60)
    plot = tmp_path / "m.png"
    plot.write_bytes(b"the user's picture")
    fit = ["density", "fit", str(data), "--epochs", "1", "--is-samples", "100", "--no-progress"]
    _refused([*fit, "-o", str(tmp_path / "m.pt")], capsys, "--plot", str(plot))
    assert plot.read_bytes() == b"the user's picture"
    assert not (tmp_path / "m.pt").exists()
    assert main([*fit, "-o", str(tmp_path / "m.pt"), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_study_and_demo_check_the_files_they_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["study", "temperature", "--out", str(out), "--no-progress"]
    _refused([*argv, "--json", str(out / "study_temperature.md")], capsys, "--json", "--out")
    (out / "summary.json").mkdir()
    _refused(["demo", "--out", str(out), "--no-progress"], capsys, "summary.json", "is a folder")


@pytest.mark.parametrize(
    "argv",
    [
        ["lm", "train", "-o", "x.pt", "--dim", "1000000000"],
        ["lm", "train", "-o", "x.pt", "--epochs", str(2**63)],
        ["lm", "generate", "x.pt", "-n", str(2**63)],
        ["pretrain", "--width", "1000000"],
        ["pretrain", "--seed", str(2**64)],
        ["mi", "d.csv", "--max-steps", str(2**63)],
        ["density", "fit", "--is-samples", str(10**12)],
        ["density", "fit", "--noise-ratio", "1e9"],
        ["study", "temperature", "--batch-size", str(2**63)],
    ],
)
def test_huge_size_flags_are_refused_while_parsing(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "too large (at most" in err and "Traceback" not in err


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, capsys, monkeypatch):
    import nce.cli.mi

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(nce.cli.mi, "run", interrupted)
    try:
        code = main(["mi", "d.csv"])
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped main with a traceback")
    assert code == 130
    assert capsys.readouterr().err == "nce mi: interrupted\n"


def test_csv_refuses_digit_separators(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("a,b\n1,2\n3,1_000\n")
    with pytest.raises(InputError, match=r"row 3, b: '1_000' is not a number"):
        read_table(path)
    path.write_text("1_000,2\n3,4\n")
    with pytest.raises(InputError, match=r"row 1, column 1: '1_000' is not a number"):
        read_table(path)
