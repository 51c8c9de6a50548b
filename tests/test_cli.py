import json

import pytest

from nce.cli.main import main


def test_demo_learns_log_z_and_writes_outputs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "demo.json").read_text())["density"]
    assert abs(results["learned_log_z"] - results["true_log_z"]) < 0.05
    assert (tmp_path / "density.png").stat().st_size > 10_000
    assert "learned log Z" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_command_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
