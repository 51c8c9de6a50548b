import argparse
import json
import math

import numpy as np
import pytest
import torch

from nce.cli import mi
from nce.cli._table import InputError


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def parse(*argv):
    parser = argparse.ArgumentParser()
    mi.add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def gaussian_csv(path, n=600, mi_nats=0.5, seed=0, header="a,b,c"):
    rng = np.random.default_rng(seed)
    rho = math.sqrt(1 - math.exp(-2 * mi_nats))
    a = rng.standard_normal(n)
    b = rng.standard_normal(n)
    c = rho * a + math.sqrt(1 - rho**2) * rng.standard_normal(n)
    np.savetxt(path, np.c_[a, b, c], delimiter=",", header=header, comments="")
    return path


def test_one_table_prints_and_writes_json(tmp_path, capsys):
    data = gaussian_csv(tmp_path / "data.csv")
    out = tmp_path / "out" / "mi.json"
    args = parse(
        data,
        "--x-cols",
        "a,b",
        "--y-cols",
        "c",
        "--max-steps",
        "100",
        "--json",
        out,
        "--no-progress",
    )
    assert mi.run(args) == 0
    printed = capsys.readouterr().out
    assert "nats" in printed and "log M = log 180" in printed and "not capped" in printed
    result = json.loads(out.read_text())
    assert {"value", "stderr", "log_n_cap", "capped"} <= set(result)
    assert abs(result["value"] - 0.5) < 0.2
    assert result["log_n_cap"] == pytest.approx(math.log(180))
    assert result["capped"] is False
    # 100 steps are 2 held-out measurements, fewer than the patience of 10.
    assert result["converged"] is False and "a larger --max-steps" in printed
    assert not list(out.parent.glob(".*.tmp"))


def test_two_tables_and_default_y_columns(tmp_path, capsys):
    data = gaussian_csv(tmp_path / "data.csv", n=200)
    values = np.loadtxt(data, delimiter=",", skiprows=1)
    np.savetxt(tmp_path / "x.csv", values[:, :1], delimiter=",")
    np.save(tmp_path / "y.npy", values[:, 2])
    assert (
        mi.run(
            parse(
                tmp_path / "x.csv",
                tmp_path / "y.npy",
                "--max-steps",
                "20",
                "--estimator",
                "nwj",
                "--no-progress",
            )
        )
        == 0
    )
    assert "[nwj" in capsys.readouterr().out
    assert mi.run(parse(data, "--x-cols", "a", "--max-steps", "20", "--no-progress")) == 0
    assert "Y = b, c" in capsys.readouterr().out


def test_capped_is_reported(tmp_path, capsys):
    data = gaussian_csv(tmp_path / "data.csv", n=60, mi_nats=8.0)
    out = tmp_path / "mi.json"
    args = parse(
        data, "--x-cols", "a", "--y-cols", "c", "--max-steps", "300", "--json", out, "--no-progress"
    )
    assert mi.run(args) == 0
    assert "CAPPED" in capsys.readouterr().out
    assert json.loads(out.read_text())["capped"] is True


@pytest.mark.parametrize(
    "make,argv,message",
    [
        ("rows", ["x.csv", "y.csv"], r"x.csv has 5 rows but .*y.csv has 4"),
        ("one_row", ["d.csv", "--x-cols", "a"], r"at least 2 rows, got 1"),
        ("constant", ["d.csv", "--x-cols", "a"], r"column 'b' is constant"),
        ("nan", ["d.csv", "--x-cols", "a"], r"row 3, a: 'nan' is not finite"),
        ("ok", ["d.csv", "--x-cols", "a,z"], r"--x-cols: no column 'z'"),
        ("ok", ["d.csv", "--x-cols", "a", "--y-cols", "q"], r"--y-cols: no column 'q'"),
        ("ok", ["d.csv"], r"--x-cols is required"),
        ("ok", ["d.csv", "--x-cols", "a,b"], r"nothing is left for Y"),
        ("ok", ["d.csv", "--x-cols", "a", "--y-cols", "a,b"], r"'a' is in both"),
        ("ok", ["d.csv", "--x-cols", "a,a"], r"named twice"),
        ("ok", ["d.csv", "d.csv", "d.csv"], r"one table .* or two tables"),
        ("ok", ["missing.csv", "--x-cols", "a"], r"no such file"),
        ("ok", ["d.csv", "--x-cols", "a", "--json", "."], r"--json: \. is a folder"),
        ("ok", ["d.csv", "--x-cols", "a", "--max-steps", "0"], r"--max-steps must be >= 1"),
        ("ok", ["d.csv", "--x-cols", "a", "--valid-fraction", "1"], r"--validation-fraction"),
        ("ok", ["d.csv", "--x-cols", "a", "--seed", "-1"], r"--seed must be in"),
    ],
)
def test_bad_input_raises_input_error(tmp_path, monkeypatch, make, argv, message):
    monkeypatch.chdir(tmp_path)
    tables = {
        "rows": {"x.csv": "1\n2\n3\n4\n5\n", "y.csv": "1\n2\n3\n4\n"},
        "one_row": {"d.csv": "a,b\n1,2\n"},
        "constant": {"d.csv": "a,b\n1,2\n2,2\n3,2\n"},
        "nan": {"d.csv": "a,b\n1,2\nnan,nan\n"},
        "ok": {"d.csv": "a,b\n1,2\n2,3\n3,5\n"},
    }[make]
    for name, text in tables.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        mi.run(parse(*argv, "--no-progress"))


def test_demo_section(tmp_path, capsys):
    result = mi.demo_section(tmp_path, progress=False)
    assert abs(result["value"] - result["true_mi"]) < 0.15
    assert "mutual information" in capsys.readouterr().out
