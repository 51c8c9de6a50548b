"""The examples run as documented."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_example_trains_with_two_processes():
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run(
        [
            str(torchrun),
            "--nproc-per-node=2",
            str(ROOT / "examples" / "ddp_simclr.py"),
            "--epochs",
            "1",
            "--batch-size",
            "256",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The root cause is printed first; torchrun's own traceback follows it.
    assert out.returncode == 0, out.stderr[:3000]
    assert "epoch 1: loss" in out.stdout and "2 ranks" in out.stdout
