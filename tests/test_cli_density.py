import argparse
import csv
import re

import numpy as np
import pytest
import torch

from nce.cli import density
from nce.cli._table import InputError
from nce.cli.main import main
from nce.density import NCEDensity


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(*argv):
    parser = argparse.ArgumentParser(prog="nce density")
    density.add_arguments(parser)
    return density.run(parser.parse_args(list(argv)))


def write_csv(path, rows, header=None):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def gaussian_rows(n=300, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) @ np.triu(np.ones((dim, dim)))


def test_fit_builtin_data_prints_log_z_check_and_writes_model_and_png(tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert run("fit", "--epochs", "3", "--is-samples", "2000", "--no-progress", "-o", str(out)) == 0
    text = capsys.readouterr().out
    assert "two moons" in text
    assert "learned log Z = " in text and "importance-sampling check: log Z = " in text
    assert out.is_file() and (tmp_path / "model.png").stat().st_size > 10_000
    assert NCEDensity.load(out).metadata_["columns"] == ["x0", "x1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.png", "model.pt"]


def test_fit_user_csv_then_score_adds_columns(tmp_path, capsys):
    X = gaussian_rows()
    data = write_csv(tmp_path / "data.csv", X.tolist(), header=["a", "b", "c"])
    model = tmp_path / "gauss.pt"
    code = run(
        "fit", str(data), "--model", "gaussian", "--optimizer", "lbfgs", "--noise-ratio", "5",
        "--is-samples", "5000", "--no-progress", "-o", str(model),
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "300 rows x 3 columns" in text and "wrote" in text
    assert not (tmp_path / "gauss.png").exists()  # PNG only for 2-D data
    est = NCEDensity.load(model)
    assert abs(est.log_partition_ - float(est.model_.true_log_partition().detach())) < 0.05

    # Score a table whose columns are reordered and extended: the model's are picked by name.
    new = np.c_[np.arange(4), X[:4, ::-1]]
    table = write_csv(tmp_path / "new.csv", new.tolist(), header=["id", "c", "b", "a"])
    scores = tmp_path / "scores.csv"
    assert run("score", str(model), str(table), "-o", str(scores)) == 0
    with open(scores) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "c", "b", "a", "log_density", "ood_score"]
    got = np.array(rows[1:], dtype=float)
    np.testing.assert_allclose(got[:, 4], est.score_samples(X[:4]), rtol=1e-12)
    np.testing.assert_allclose(got[:, 5], -est.log_ratio(X[:4]), rtol=1e-12)

    # A headerless table with the model's column count is scored as is.
    plain = write_csv(tmp_path / "plain.csv", X[:5].tolist())
    assert run("score", str(model), str(plain), "-o", str(tmp_path / "plain_scores.csv")) == 0


def test_demo_section_runs_and_checks_log_z(tmp_path, capsys):
    summary = density.demo_section(tmp_path, progress=False)
    assert abs(summary["difference"]) < 0.1
    assert (tmp_path / "density_moons.png").is_file()
    assert "learned log Z" in capsys.readouterr().out


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fitted")
    data = write_csv(folder / "train.csv", gaussian_rows(100, 2).tolist(), header=["u", "v"])
    model = folder / "m.pt"
    run("fit", str(data), "--model", "gaussian", "--epochs", "2", "--is-samples", "100",
        "--no-progress", "-o", str(model), "--plot", str(folder / "m.png"))  # fmt: skip
    return model


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such file"),
        ("a,b\n1,2\n3,x\n", r"row 3, b: 'x' is not a number"),
        ("a,b\n1,2\nnan,4\n", r"row 3, a: 'nan' is not finite"),
        ("a,b\n1,2\n3,4,5\n", "row 3 has 3 cells but the table has 2"),
        ("a,b,c\n1,2,3\n4,5,6\n", r"no column 'u', 'v'; the model .* fitted on columns u, v"),
        ("u,c\n1,2\n4,5\n", r"no column 'v'"),
        ("1,2,3\n4,5,6\n", r"the table has 3 column\(s\) but the model .* fitted on 2"),
    ],
)
def test_score_bad_tables_exit_cleanly(tmp_path, fitted, content, match):
    data = tmp_path / "bad.csv"
    if content is not None:
        data.write_text(content)
    out = tmp_path / "out.csv"
    with pytest.raises(InputError, match=match) as info:
        run("score", str(fitted), str(data), "-o", str(out))
    assert "bad.csv" in str(info.value)
    assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_score_bad_model_files(tmp_path, fitted):
    data = write_csv(tmp_path / "d.csv", [[1.0, 2.0]])
    out = tmp_path / "out.csv"
    with pytest.raises(InputError, match="missing.pt: no such file"):
        run("score", str(tmp_path / "missing.pt"), str(data), "-o", str(out))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(InputError, match="garbage.pt: cannot load the model"):
        run("score", str(garbage), str(data), "-o", str(out))
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "extra", "match"),
    [
        (None, [], "no such file"),
        ("a,b\n1,2\n3,?\n", [], r"row 3, b: '\?' is not a number"),
        ("a,b\n1,2\n3,4,5\n", [], "row 3 has 3 cells"),
        ("a,b\n1,2\ninf,4\n", [], "row 3, a: 'inf' is not finite"),
        ("a,b\n" + "1,2\n3,4\n" * 3, [], r"6 data row\(s\); at least 10 are needed"),
        ("a,b\n" + "".join(f"{i},1\n" for i in range(20)), [], r"constant in column\(s\) b"),
        ("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(20)), ["--columns", "a,z"],
         "--columns: no column 'z'"),
        ("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(20)), ["--noise-ratio", "0"],
         "noise_ratio must be a finite number > 0"),
    ],
)  # fmt: skip
def test_fit_bad_input_leaves_no_output(tmp_path, content, extra, match):
    data = tmp_path / "train.csv"
    if content is not None:
        data.write_text(content)
    out = tmp_path / "model.pt"
    with pytest.raises(InputError, match=match) as info:
        run("fit", str(data), "--epochs", "2", "--no-progress", "-o", str(out), *extra)
    assert "train.csv" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["train.csv"])


def test_plot_never_overwrites_the_model(tmp_path):
    data = write_csv(tmp_path / "d.csv", gaussian_rows(60, 2).tolist(), header=["u", "v"])
    model = tmp_path / "m.png"
    run("fit", str(data), "--model", "gaussian", "--epochs", "1", "--is-samples", "50",
        "--no-progress", "-o", str(model))  # fmt: skip
    assert NCEDensity.load(model).n_features_in_ == 2
    assert (tmp_path / "m_density.png").stat().st_size > 0
    with pytest.raises(InputError, match="--plot .* and -o .* name the same file"):
        run("fit", str(data), "-o", str(model), "--plot", str(model))


def test_rows_outside_a_box_noise_score_as_most_anomalous(tmp_path):
    data = write_csv(tmp_path / "d.csv", gaussian_rows(60, 2).tolist(), header=["u", "v"])
    model = tmp_path / "m.pt"
    run("fit", str(data), "--model", "gaussian", "--noise", "box", "--epochs", "1",
        "--is-samples", "50", "--no-progress", "-o", str(model))  # fmt: skip
    rows = write_csv(tmp_path / "new.csv", [[0.0, 0.0], [50.0, 50.0]], header=["u", "v"])
    out = tmp_path / "scores.csv"
    run("score", str(model), str(rows), "-o", str(out))
    scores = [line.split(",")[-1] for line in out.read_text().splitlines()[1:]]
    assert float(scores[1]) == float("inf") and float(scores[0]) < float("inf")


def test_far_rows_score_as_most_anomalous_never_nan(tmp_path):
    data = write_csv(tmp_path / "d.csv", gaussian_rows(60, 2).tolist(), header=["u", "v"])
    model = tmp_path / "m.pt"
    run("fit", str(data), "--model", "gaussian", "--epochs", "2", "--is-samples", "50",
        "--no-progress", "-o", str(model))  # fmt: skip
    rows = write_csv(tmp_path / "new.csv", [[0.0, 0.0], [1e200, 0.0]], header=["u", "v"])
    out = tmp_path / "scores.csv"
    run("score", str(model), str(rows), "-o", str(out))
    scores = [float(line.split(",")[-1]) for line in out.read_text().splitlines()[1:]]
    assert scores[1] == float("inf") and np.isfinite(scores[0])


def test_divergence_exits_1_naming_the_flag(tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", gaussian_rows(200, 2).tolist())
    out = tmp_path / "m.pt"
    argv = ["density", "fit", str(data), "--model", "mlp", "--optimizer", "adam", "--epochs", "3"]
    argv += ["--lr", "1e6"]
    assert main([*argv, "--no-progress", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"nce density: error: the fit diverged in epoch \d+: .*lower --lr \(now "
                     r"1e\+06\) or standardize X", err), err  # fmt: skip
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    ("extra", "scale", "match"),
    [
        (["--noise-ratio", "1000"], 1.0,
         r"noise sample needs .* rows \(.*\) but .* is available: lower --noise-ratio"),
        (["--is-samples", "100000000"], 1.0,
         r"importance sample needs 1e\+08 rows .* lower --is-samples"),
        ([], 1e300, r"values up to .*e\+300, too large for its covariance in float64"),
    ],
)  # fmt: skip
def test_divergence_memory_and_range_are_named_for_what_they_are(
    tmp_path, monkeypatch, extra, scale, match
):
    # 1 MB of free memory: sizes within the flags' bounds that do not fit are refused by name
    monkeypatch.setattr("nce.density._memory.available_bytes", lambda device: 1e6)
    data = write_csv(tmp_path / "d.csv", (gaussian_rows(200, 2) * scale).tolist())
    out = tmp_path / "m.pt"
    with pytest.raises(InputError, match=match) as info:
        run("fit", str(data), "--model", "gaussian", "--epochs", "3", "--no-progress",
            "-o", str(out), *extra)  # fmt: skip
    assert "NaN or Inf value" not in str(info.value) and "Cholesky" not in str(info.value)
    assert not out.exists()


def test_fit_with_waymarks_writes_a_telescoped_model(tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", gaussian_rows(200, 2).tolist(), header=["u", "v"])
    model = tmp_path / "tre.pt"
    code = run(
        "fit", str(data), "--model", "gaussian", "--waymarks", "2", "--epochs", "2",
        "--is-samples", "500", "--no-progress", "-o", str(model),
    )  # fmt: skip
    assert code == 0
    assert "2 waymarks" in capsys.readouterr().out
    loaded = NCEDensity.load(model)
    assert loaded.waymarks == 2 and loaded.waymark_alphas_.shape == (3,)
    with pytest.raises(InputError, match="--waymarks must be >= 1, got 0"):
        run("fit", str(data), "--waymarks", "0", "-o", str(tmp_path / "no.pt"))
    assert not (tmp_path / "no.pt").exists()
