"""``nce lm``: the corpus a checkpoint was trained on is verified at evaluation, damaged
checkpoints and divergence end in one line with a non-zero exit, never a traceback."""

import pytest

from nce._checkpoint import load_checkpoint, save_checkpoint
from nce.cli.main import main
from nce.text import corpus_checksum, kjv_verses, tokenize


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    text = folder / "corpus.txt"
    text.write_text("\n".join(" ".join(tokenize(v)) for v in kjv_verses()[:300]) + "\n")
    out = folder / "lm.pt"
    argv = ["lm", "train", "--corpus", str(text), "--dim", "8", "--hidden", "8", "--k", "5"]
    assert main([*argv, "--no-progress", "-o", str(out)]) == 0
    return text, out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_eval_refuses_an_edited_corpus_naming_both_checksums(trained, tmp_path, capsys):
    text, out = trained
    assert main(["lm", "eval", str(out)]) == 0
    stored = load_checkpoint(out, kind="lm")["corpus_checksum"]
    original = text.read_text()
    try:
        text.write_text(original.replace("god", "godd", 5))
        found = corpus_checksum(text.read_text().splitlines())
        capsys.readouterr()
        assert main(["lm", "eval", str(out)]) == 2
        err = _one_line_error(capsys)
        assert stored in err and found in err and str(text) in err
    finally:
        text.write_text(original)


def test_eval_checks_the_builtin_corpus_too(trained, tmp_path, capsys):
    payload = dict(load_checkpoint(trained[1], kind="lm"))
    payload.update(corpus="kjv", max_lines=300)  # kjv's first 300 verses, not the file's text
    moved = tmp_path / "moved.pt"
    save_checkpoint(payload, moved, kind="lm")
    assert main(["lm", "eval", str(moved)]) == 2
    assert "trained on corpus kjv with checksum sha256:" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("command", "change", "message"),
    [
        ("resume", lambda p: p.pop("optimizer"), "missing entry 'optimizer'"),
        ("resume", lambda p: p.pop("sampler_state"), "missing entry 'sampler_state'"),
        ("generate", lambda p: p.pop("model"), "missing entry 'model'"),
        ("generate", lambda p: p["config"].update({"hidden": 10**9}), "does not fit the config"),
        ("generate", lambda p: p["vocab"].pop(), "entry 'vocab' must list the"),
    ],
)
def test_damaged_checkpoint_exits_2(trained, tmp_path, capsys, command, change, message):
    text, out = trained
    payload = dict(load_checkpoint(out, kind="lm"))
    change(payload)
    bad = tmp_path / "bad.pt"
    save_checkpoint(payload, bad, kind="lm")
    capsys.readouterr()
    argv = ["lm", "generate", str(bad)]
    if command == "resume":
        argv = ["lm", "train", "--corpus", str(text), "--dim", "8", "--hidden", "8", "--k", "5"]
        argv += ["--epochs", "2", "--resume", "--no-progress", "-o", str(bad)]
    assert main(argv) == 2
    assert message in _one_line_error(capsys)


def test_damaged_file_exits_2_in_one_line(trained, tmp_path, capsys):
    data = bytearray(trained[1].read_bytes())
    data[len(data) // 3] ^= 16
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    assert main(["lm", "eval", str(bad)]) == 2
    assert "flipped.pt is damaged: its content hash does not match" in _one_line_error(capsys)


def test_diverging_training_is_reported_by_name(trained, tmp_path, capsys):
    out = tmp_path / "lm.pt"
    argv = ["lm", "train", "--corpus", str(trained[0]), "--dim", "8", "--hidden", "8", "--k", "5"]
    assert main([*argv, "--lr", "100", "--no-progress", "-o", str(out)]) == 1
    err = _one_line_error(capsys)
    assert "training diverged in epoch 1" in err and "lower --lr (now 100)" in err
    assert not out.exists()


def test_checkpoint_of_an_earlier_version_evaluates_with_a_warning(trained, tmp_path, capsys):
    import torch

    payload = dict(load_checkpoint(trained[1], kind="lm"))
    del payload["corpus_checksum"], payload["options"]
    legacy = tmp_path / "legacy.pt"
    torch.save(payload, legacy)  # the earlier format: a bare torch.save dict
    assert main(["lm", "eval", str(legacy)]) == 0
    assert "without a corpus checksum" in capsys.readouterr().err
