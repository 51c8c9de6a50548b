"""The one checkpoint format: header, content hash, kinds, legacy files, and clear refusals of
damaged or foreign model and checkpoint files (NCEDensity files, language-model checkpoints,
contrastive-trainer checkpoints)."""

import io
import json
import math
import warnings

import numpy as np
import pytest
import torch

from nce import NCEDensity
from nce._checkpoint import MAGIC, CheckpointError, load_checkpoint, save_checkpoint
from nce.contrastive import ContrastiveTrainer, MLPEncoder, ProjectionHead
from nce.lm import (
    DivergenceError,
    LanguageModel,
    LMConfig,
    load_model,
    perplexity,
    read_checkpoint,
    train,
)
from nce.models import MLPEnergy
from nce.text import Vocabulary, kjv_verses, split_lines, tokenize


@pytest.fixture(scope="module")
def density_file(tmp_path_factory):
    X = np.random.default_rng(0).normal(size=(200, 2))
    est = NCEDensity(MLPEnergy(2, hidden=(8,)), epochs=2, progress=False, random_state=0)
    path = tmp_path_factory.mktemp("density") / "model.pt"
    est.fit(X).save(path)
    return path, X, est.score_samples(X)


def _rewrite(source, target, kind, change):
    """Save ``source``'s payload, changed by ``change(payload)``, as a valid file at ``target``."""
    payload = dict(load_checkpoint(source, kind=kind))
    change(payload)
    save_checkpoint(payload, target, kind=kind)
    return target


# ----------------------------------------------------------------------------- the format


def test_round_trip_header_and_kind(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"w": torch.arange(3.0), "name": "x"}, path, kind="encoder")
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    header = json.loads(data[len(MAGIC) : data.index(b"\n", len(MAGIC))])
    assert header["kind"] == "encoder" and header["version"] == 2 and len(header["sha256"]) == 64
    loaded = load_checkpoint(path, kind="encoder")
    assert torch.equal(loaded["w"], torch.arange(3.0)) and loaded["name"] == "x"
    with pytest.raises(CheckpointError, match=r"c.pt is an nce encoder file, not a saved NCEDens"):
        load_checkpoint(path, kind="density")
    with pytest.raises(CheckpointError, match="missing.pt: no such file"):
        load_checkpoint(tmp_path / "missing.pt", kind="lm")


class Evil:
    pass


def test_pickled_payload_is_refused_even_with_a_valid_hash(tmp_path):
    path = tmp_path / "evil.pt"
    save_checkpoint({"x": Evil()}, path, kind="lm")  # torch.save pickles anything
    with pytest.raises(CheckpointError, match="evil.pt: not an nce language-model checkpoint"):
        load_checkpoint(path, kind="lm")


def test_newer_version_and_damaged_header(tmp_path):
    from nce._checkpoint import _digest

    body = io.BytesIO()
    torch.save({}, body)
    header = {"kind": "lm", "version": 3, "sha256": _digest("lm", 3, body.getvalue())}
    path = tmp_path / "new.pt"
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + body.getvalue())
    with pytest.raises(CheckpointError, match="newer version of nce .*version 3"):
        load_checkpoint(path, kind="lm")
    path.write_bytes(MAGIC + b"{not json\n" + body.getvalue())
    with pytest.raises(CheckpointError, match="new.pt is damaged: its header cannot be read"):
        load_checkpoint(path, kind="lm")


def test_every_bit_flip_in_a_density_file_is_detected(density_file, tmp_path):
    path, _, _ = density_file
    data = path.read_bytes()
    damaged = tmp_path / "damaged.pt"
    positions = np.linspace(0, len(data) - 1, 60).astype(int)
    for i, position in enumerate(positions):
        flipped = bytearray(data)
        flipped[position] ^= 1 << (i % 8)
        damaged.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match="damaged.pt"):
            NCEDensity.load(damaged)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="content hash does not match"):
        NCEDensity.load(truncated)


def test_legacy_density_file_still_loads(density_file, tmp_path):
    path, X, scores = density_file
    payload = {"format": "nce.NCEDensity", "version": 1, **load_checkpoint(path, kind="density")}
    legacy = tmp_path / "legacy.pt"
    torch.save(payload, legacy)
    np.testing.assert_array_equal(NCEDensity.load(legacy).score_samples(X), scores)


def test_file_saved_with_max_epochs_loads_without_a_warning(density_file, tmp_path):
    path, X, scores = density_file
    payload = {"format": "nce.NCEDensity", "version": 1, **load_checkpoint(path, kind="density")}
    payload["params"]["max_epochs"] = payload["params"].pop("epochs")
    legacy = tmp_path / "legacy_max_epochs.pt"
    torch.save(payload, legacy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        loaded = NCEDensity.load(legacy)
    assert loaded.epochs == 2
    np.testing.assert_array_equal(loaded.score_samples(X), scores)


# ----------------------------------------------------------------------------- density entries


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("model"), "missing entry 'model'"),
        (lambda p: p.pop("noise"), "missing entry 'noise'"),
        (lambda p: p["model"].update({"class": "Banana"}), "unknown model class 'Banana'"),
        (lambda p: p["noise"].update({"class": "Banana"}), "unknown noise class 'Banana'"),
        (
            lambda p: p["model"]["state"].update({"net.0.weight": torch.zeros(3, 2)}),
            r"net.0.weight has shape \(3, 2\) but the config needs \(8, 2\)",
        ),
        (
            lambda p: p["model"]["config"].update({"hidden": [10**12]}),
            r"net.0.weight has shape \(8, 2\) but the config needs \(1000000000000, 2\)",
        ),
        (lambda p: p["model"]["config"].update({"depth": 3}), "does not build a MLPEnergy"),
        (lambda p: p["fitted"].pop("n_features_in_"), "missing entry 'fitted.n_features_in_'"),
        (lambda p: p["noise"]["state"].pop("mean"), "missing entry 'noise.state.mean'"),
    ],
)
def test_damaged_density_entries_are_named(density_file, tmp_path, change, message):
    path = _rewrite(density_file[0], tmp_path / "bad.pt", "density", change)
    with pytest.raises(CheckpointError, match=message):
        NCEDensity.load(path)


def test_cli_refuses_damaged_density_file_in_one_line(density_file, tmp_path, capsys):
    from nce.cli.main import main

    path = _rewrite(density_file[0], tmp_path / "bad.pt", "density", lambda p: p.pop("noise"))
    table = tmp_path / "rows.csv"
    table.write_text("x0,x1\n0,0\n")
    assert main(["density", "score", str(path), str(table), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing entry 'noise'" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- language models


@pytest.fixture(scope="module")
def lm_setup(tmp_path_factory):
    lines = [tokenize(v) for v in kjv_verses()[:200]]
    train_lines, valid_lines, _ = split_lines(lines, random_state=0)
    vocab = Vocabulary.build(train_lines, min_count=2)
    config = LMConfig(len(vocab), 8, 8, num_samples=5)
    stream = vocab.encode(train_lines)
    path = tmp_path_factory.mktemp("lm") / "lm.pt"
    model = LanguageModel(config, torch.tensor(vocab.counts))
    train(model, stream, epochs=1, batch_size=8, bptt=20, checkpoint=path, progress=False)
    return vocab, config, stream, vocab.encode(valid_lines), path


def _lm(setup):
    vocab, config = setup[0], setup[1]
    return LanguageModel(config, torch.tensor(vocab.counts))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("model"), "missing entry 'model'"),
        (lambda p: p["config"].update({"hidden": 10**9}), "rnn.weight_ih_l0 has shape"),
        (lambda p: p["config"].update({"cell": "transformer"}), "cell must be 'lstm' or 'gru'"),
        (lambda p: p["config"].update({"colour": 1}), "unknown field.*'colour'"),
        (lambda p: p.update({"counts": torch.ones(3)}), r"'counts' has shape \(3,\)"),
        (
            lambda p: p["model"].update({"output.log_z": torch.zeros(2)}),
            "entry 'model' does not fit: .*output.log_z",
        ),
    ],
)
def test_damaged_lm_checkpoints_are_named(lm_setup, tmp_path, change, message):
    path = _rewrite(lm_setup[-1], tmp_path / "bad.pt", "lm", change)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


@pytest.mark.parametrize("key", ["optimizer", "sampler_state", "epoch"])
def test_resume_names_a_missing_entry(lm_setup, tmp_path, key):
    path = _rewrite(lm_setup[-1], tmp_path / "bad.pt", "lm", lambda p: p.pop(key))
    with pytest.raises(CheckpointError, match=f"bad.pt: missing entry '{key}'"):
        train(_lm(lm_setup), lm_setup[2], epochs=2, batch_size=8, bptt=20, checkpoint=path,
              resume=True, progress=False)  # fmt: skip


def test_library_refuses_resume_with_other_settings_naming_them(lm_setup, tmp_path):
    vocab, config, stream, _, path = lm_setup
    with pytest.raises(CheckpointError, match=r"options.lr is 0.002 in the checkpoint, 0.1 now"):
        train(_lm(lm_setup), stream, epochs=2, batch_size=8, bptt=20, lr=0.1, checkpoint=path,
              resume=True, progress=False)  # fmt: skip
    other = LanguageModel(LMConfig(len(vocab), 8, 8, num_samples=4), torch.tensor(vocab.counts))
    with pytest.raises(CheckpointError, match=r"config.num_samples is 5 in the checkpoint, 4 now"):
        train(other, stream, epochs=2, batch_size=8, bptt=20, checkpoint=path, resume=True,
              progress=False)  # fmt: skip


def test_legacy_lm_checkpoint_still_resumes(lm_setup, tmp_path):
    payload = dict(read_checkpoint(lm_setup[-1]))
    payload["config"] = {**vars(payload["config"])}
    payload.pop("options")
    legacy = tmp_path / "legacy.pt"
    torch.save(payload, legacy)
    history = train(_lm(lm_setup), lm_setup[2], epochs=2, batch_size=8, bptt=20,
                    checkpoint=legacy, resume=True, progress=False)  # fmt: skip
    assert [r["epoch"] for r in history] == [1, 2]
    assert legacy.read_bytes().startswith(MAGIC)  # the next save writes the current format


def test_seed_keyword_is_deprecated_and_global_generator_untouched(lm_setup):
    stream = lm_setup[2][:400]
    model = _lm(lm_setup)
    before = torch.random.get_rng_state()
    with pytest.warns(DeprecationWarning, match="use random_state="):
        a = train(model, stream, epochs=1, batch_size=4, bptt=10, seed=3, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(0)
    model = _lm(lm_setup)
    torch.manual_seed(12345)  # the global state must not matter
    b = train(model, stream, epochs=1, batch_size=4, bptt=10, random_state=3, progress=False)
    torch.manual_seed(0)
    model = _lm(lm_setup)
    c = train(model, stream, epochs=1, batch_size=4, bptt=10, random_state=3, progress=False)
    assert b[0]["loss"] == c[0]["loss"] and math.isfinite(a[0]["loss"])


def test_perplexity_beyond_float_range_is_inf(lm_setup):
    model = _lm(lm_setup)
    with torch.no_grad():
        model.output.bias.weight.zero_()
        model.output.bias.weight[0] = 2000.0  # every other word gets log-probability -2000
    assert perplexity(model, torch.ones(200, dtype=torch.int64)) == math.inf
    with torch.no_grad():
        model.output.bias.weight[0] = float("nan")
    with pytest.raises(ValueError, match="log-probabilities are NaN"):
        perplexity(model, torch.ones(200, dtype=torch.int64))


def test_divergence_is_named_and_keeps_the_last_good_checkpoint(lm_setup, tmp_path, monkeypatch):
    import nce.lm

    path = tmp_path / "lm.pt"
    real_epoch = nce.lm._epoch

    def epoch_that_diverges_second(model, *args):
        record = real_epoch(model, *args)
        if record["epoch"] == 2:
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))
        return record

    monkeypatch.setattr(nce.lm, "_epoch", epoch_that_diverges_second)
    expected = r"diverged in epoch 2: the weights are no longer finite; .*lm.pt keeps epoch 1"
    with pytest.raises(DivergenceError, match=expected + ", the last good one; lower lr \\(now"):
        train(_lm(lm_setup), lm_setup[2], epochs=3, batch_size=8, bptt=20, checkpoint=path,
              valid_stream=lm_setup[3], progress=False)  # fmt: skip
    saved = read_checkpoint(path)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


# ----------------------------------------------------------------------------- contrastive trainer


def _trainer(checkpoint):
    return ContrastiveTrainer(MLPEncoder(4, (8,)), ProjectionHead(8, 8, 4), epochs=2,
                              batch_size=8, checkpoint=checkpoint, progress=False,
                              random_state=0)  # fmt: skip


def test_trainer_checkpoint_is_checked(tmp_path, lm_setup):
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "trainer.pt"
    _trainer(path).fit(x)
    assert load_checkpoint(path, kind="contrastive")["epoch"] == 2
    damaged = tmp_path / "damaged.pt"
    _rewrite(path, damaged, "contrastive", lambda p: p.pop("optimizer"))
    with pytest.raises(CheckpointError, match="damaged.pt: missing entry 'optimizer'"):
        _trainer(damaged).fit(x, resume=True)
    with pytest.raises(CheckpointError, match="language-model checkpoint, not a trainer"):
        _trainer(lm_setup[-1]).fit(x, resume=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 4
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged.pt is damaged: its content hash"):
        _trainer(damaged).fit(x, resume=True)
