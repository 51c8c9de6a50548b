import json

import pytest

from nce.cli.main import main


def test_demo_learns_log_z_and_writes_outputs(tmp_path, capsys):
    argv = ["demo", "--quick", "--only", "gaussian,lm"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "summary.json").read_text())["sections"]
    density = results["gaussian"]["numbers"]
    assert abs(density["learned_log_z"] - density["true_log_z"]) < 0.05
    assert (tmp_path / "density.png").stat().st_size > 10_000
    lm = results["lm"]["numbers"]
    assert max(lm["nce_perplexity"], lm["softmax_perplexity"]) < lm["vocab_size"]
    assert "learned log Z" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_command_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2


def test_every_command_has_help(capsys):
    for command in ("demo", "density", "lm", "pretrain", "study", "mi"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "usage: nce" in capsys.readouterr().out


def test_warnings_are_one_line_naming_the_command(tmp_path, capsys):
    import numpy as np

    from nce.cli.main import main

    data = tmp_path / "d.csv"
    rows = np.random.default_rng(0).normal(size=(200, 2))
    data.write_text("a,b\n" + "\n".join(f"{x},{y}" for x, y in rows) + "\n")
    argv = ["density", "fit", str(data), "--model", "mlp"]
    assert main([*argv, "--epochs", "1", "--no-progress", "-o", str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in err if "warning" in line]
    assert warnings and all(line.startswith("nce density: warning: ") for line in warnings), err
    assert not any(".py:" in line for line in err), err
