import argparse
import math

import pytest
import torch

import nce.lm
from nce.cli import lm as lm_cli
from nce.cli._table import InputError
from nce.lm import (
    LanguageModel,
    LMConfig,
    batchify,
    check_resume,
    generate,
    perplexity,
    read_checkpoint,
    train,
)
from nce.text import Vocabulary, kjv_verses, split_lines, tokenize


@pytest.fixture(scope="module")
def corpus():
    lines = [tokenize(v) for v in kjv_verses()[:250]]
    train_lines, valid_lines, _ = split_lines(lines, random_state=0)
    vocab = Vocabulary.build(train_lines, min_count=2)
    return vocab, vocab.encode(train_lines), vocab.encode(valid_lines)


def _model(vocab, loss="nce", seed=0):
    torch.manual_seed(seed)
    return LanguageModel(
        LMConfig(len(vocab), 16, 16, loss=loss, num_samples=10), torch.tensor(vocab.counts)
    )


def test_untrained_model_is_the_normalized_noise(corpus):
    vocab, _, valid = corpus
    model = _model(vocab)
    # The output starts at the smoothed unigram, so perplexity is far below uniform (V).
    assert perplexity(model, valid) < 0.7 * len(vocab)


@pytest.mark.parametrize("loss", ["nce", "ranking", "full"])
def test_training_lowers_validation_perplexity(corpus, loss):
    vocab, stream, valid = corpus
    model = _model(vocab, loss)
    before = perplexity(model, valid)
    history = train(
        model, stream, epochs=1, batch_size=8, bptt=20, lr=1e-2, valid_stream=valid, progress=False
    )
    assert history[-1]["valid_perplexity"] < before


def test_resume_matches_an_uninterrupted_run(corpus, tmp_path):
    vocab, stream, _ = corpus
    straight = _model(vocab)
    train(straight, stream, epochs=2, batch_size=8, bptt=20, progress=False)
    resumed = _model(vocab)
    path = tmp_path / "lm.pt"
    train(resumed, stream, epochs=1, batch_size=8, bptt=20, checkpoint=path, progress=False)
    fresh = _model(vocab, seed=123)  # a new process would start from other weights
    train(
        fresh, stream, epochs=2, batch_size=8, bptt=20, checkpoint=path, resume=True, progress=False
    )
    for a, b in zip(straight.state_dict().values(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_lazy_adam_trains_to_the_perplexity_of_dense_adam_and_leaves_the_model_dense(corpus):
    vocab, stream, valid = corpus
    result = {}
    for optimizer in ("lazy_adam", "adam"):
        model = _model(vocab)
        history = train(
            model,
            stream,
            epochs=2,
            batch_size=8,
            bptt=20,
            lr=1e-2,
            valid_stream=valid,
            progress=False,
            optimizer=optimizer,
        )
        result[optimizer] = history[-1]["valid_perplexity"]
        assert not model.embedding.sparse and not model.output.sparse
    assert result["lazy_adam"] < 0.7 * perplexity(_model(vocab), valid), result
    assert abs(math.log(result["lazy_adam"] / result["adam"])) < 0.05, result


def test_default_optimizer_is_lazy_for_sampled_losses_and_dense_for_the_full_softmax(
    corpus, tmp_path
):
    vocab, stream, _ = corpus
    for loss, expected in (("nce", "lazy_adam"), ("ranking", "lazy_adam"), ("full", "adam")):
        path = tmp_path / f"{loss}.pt"
        model = _model(vocab, loss)
        train(model, stream[:400], epochs=1, batch_size=4, bptt=10, checkpoint=path, progress=False)
        assert read_checkpoint(path)["options"]["optimizer"] == expected
        assert not model.embedding.sparse  # the sparse gradients are switched off again


def test_resume_refuses_another_optimizer_old_checkpoints_count_as_adam(corpus, tmp_path):
    vocab, stream, _ = corpus
    path = tmp_path / "lm.pt"
    train(_model(vocab), stream, epochs=1, batch_size=8, bptt=20, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="optimizer is 'lazy_adam' in the checkpoint, 'adam' now"):
        train(
            _model(vocab),
            stream,
            epochs=2,
            batch_size=8,
            bptt=20,
            checkpoint=path,
            resume=True,
            progress=False,
            optimizer="adam",
        )
    saved = read_checkpoint(path)
    saved["options"].pop("optimizer")  # as written before the optimizer was an option
    with pytest.raises(ValueError, match="options.optimizer is 'adam' in the checkpoint"):
        check_resume(saved, saved["config"], {"lr": 2e-3, "optimizer": "lazy_adam"}, {})
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train(_model(vocab), stream, epochs=1, progress=False, optimizer="sgd")


def test_generate_and_batchify(corpus):
    vocab, stream, _ = corpus
    ids = generate(_model(vocab), [2, 3], 7, generator=torch.Generator().manual_seed(0))
    assert len(ids) == 7 and all(0 <= i < len(vocab) for i in ids)
    assert batchify(torch.arange(10), 3).shape == (3, 3)
    with pytest.raises(ValueError, match="too few"):
        batchify(torch.arange(3), 4)


def test_bad_configuration():
    counts = torch.ones(20)
    with pytest.raises(ValueError, match=r"num_samples \(k = 20\) must be below"):
        LanguageModel(LMConfig(20, 8, 8, num_samples=20), counts)
    with pytest.raises(ValueError, match="tied=True needs dim == hidden"):
        LanguageModel(LMConfig(20, 8, 16, tied=True, num_samples=5), counts)
    model = LanguageModel(LMConfig(20, 8, 8, num_samples=5), counts)
    stream = torch.arange(200) % 20
    with pytest.raises(ValueError, match="bptt must be >= 1"):
        train(model, stream, epochs=1, bptt=0, progress=False)
    with pytest.raises(ValueError, match="bptt must be >= 1"):
        perplexity(model, stream, bptt=-1)
    for temperature in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            generate(model, [1, 2], 3, temperature)


def test_cli_seed_fixes_the_initial_weights(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(tokenize(v)) for v in kjv_verses()[:300]))
    weights = []
    for name in ("a.pt", "b.pt"):
        torch.manual_seed(len(weights) + 7)  # the global state must not matter
        argv = ["train", "--corpus", str(text), "--dim", "8", "--hidden", "8", "--k", "5"]
        lm_cli.run(_parse([*argv, "--no-progress", "-o", str(tmp_path / name)]))
        weights.append(read_checkpoint(tmp_path / name)["model"])
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def _parse(argv):
    parser = argparse.ArgumentParser()
    lm_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_train_eval_generate_and_bad_input(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(tokenize(v)) for v in kjv_verses()[:300]))
    out, js = tmp_path / "lm.pt", tmp_path / "eval.json"
    common = ["--dim", "16", "--hidden", "16", "--k", "5", "--no-progress", "-o", str(out)]
    assert lm_cli.run(_parse(["train", "--corpus", str(text), "--epochs", "1", *common])) == 0
    assert lm_cli.run(_parse(["eval", str(out), "--json", str(js)])) == 0
    assert js.read_text().count("test_perplexity") == 1
    assert (
        lm_cli.run(_parse(["generate", str(out), "--prompt", "in the beginning", "-n", "5"])) == 0
    )
    assert capsys.readouterr().out.count("in the beginning") == 1
    with pytest.raises(InputError, match="must be below the vocabulary size"):
        lm_cli.run(_parse(["train", "--corpus", str(text), "--k", "100000", "-o", str(out)]))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="binary file"):
        lm_cli.run(_parse(["train", "--corpus", str(binary), "-o", str(out)]))
    other = tmp_path / "other.txt"
    other.write_text("a completely different little corpus of words words words a a\n" * 200)
    with pytest.raises(ValueError, match=r"cannot be resumed .*config.vocab_size .*vocab differs"):
        lm_cli.run(_parse(["train", "--corpus", str(other), "--resume", "--epochs", "2", *common]))
    with pytest.raises(ValueError, match="missing.pt: no such file"):
        lm_cli.run(_parse(["eval", str(tmp_path / "missing.pt")]))
    assert not read_checkpoint(out)["config"].shared_noise
    assert read_checkpoint(out)["options"]["optimizer"] == "lazy_adam"
    with pytest.raises(ValueError, match="optimizer is 'lazy_adam' in the checkpoint, 'adam' now"):
        lm_cli.run(
            _parse(["train", "--corpus", str(text), "--resume", "--optimizer", "adam", *common])
        )
    with pytest.raises(InputError, match="-o: .* is a folder"):
        lm_cli.run(_parse(["train", "--corpus", str(text), "-o", str(tmp_path)]))
    with pytest.raises(ValueError, match=r"options.lr is 0.002 in the checkpoint, 0.5 now"):
        lm_cli.run(_parse(["train", "--corpus", str(text), "--resume", "--lr", "0.5", *common]))
    short = tmp_path / "short.txt"
    short.write_text("in the beginning god created the heaven and the earth\n" * 20)
    with pytest.raises(InputError, match="the validation split has .* tokens; at least 32"):
        lm_cli.run(_parse(["train", "--corpus", str(short), *common]))
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: not an nce language-model checkpoint"):
        lm_cli.run(
            _parse(["train", "--corpus", str(text), "--resume", "-o", str(not_a_checkpoint)])
        )
    with pytest.raises(InputError, match="--temperature must be a finite number > 0"):
        lm_cli.run(_parse(["generate", str(out), "--temperature", "0"]))
    with pytest.raises(ValueError, match="config.shared_noise is False in the checkpoint, True"):
        lm_cli.run(_parse(["train", "--corpus", str(text), "--resume", "--shared-noise", *common]))


def test_cosine_schedule_sets_each_steps_rate_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    vocab, stream, _ = corpus
    windows = math.ceil((batchify(stream, 8).shape[1] - 1) / 20)
    history = train(
        _model(vocab),
        stream,
        epochs=2,
        batch_size=8,
        bptt=20,
        lr=0.01,
        lr_schedule="cosine",
        progress=False,
    )
    for record in history:  # the rate of the epoch's last step
        done = (record["epoch"] - 1 + (windows - 1) / windows) / 2
        assert record["lr"] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * done)))
    assert history[1]["lr"] < 0.01 * 1e-2
    straight = _model(vocab)
    options = dict(batch_size=8, bptt=20, lr=0.01, lr_schedule="cosine", progress=False)
    train(straight, stream, epochs=2, **options)
    path = tmp_path / "lm.pt"
    epoch = nce.lm._epoch

    def interrupted(model, data, optimizer, sampler, index, *rest):
        if index == 1:
            raise KeyboardInterrupt  # the process is stopped during the second epoch
        return epoch(model, data, optimizer, sampler, index, *rest)

    monkeypatch.setattr(nce.lm, "_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_model(vocab), stream, epochs=2, checkpoint=path, **options)
    monkeypatch.undo()
    resumed = _model(vocab, seed=5)
    train(resumed, stream, epochs=2, checkpoint=path, resume=True, **options)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="cosine_epochs is 2 in the checkpoint, 3 now"):
        train(_model(vocab), stream, epochs=3, checkpoint=path, resume=True, **options)
    with pytest.raises(ValueError, match="lr_schedule is 'cosine' in the checkpoint, 'constant'"):
        train(
            _model(vocab),
            stream,
            epochs=2,
            checkpoint=path,
            resume=True,
            **{**options, "lr_schedule": "constant"},
        )


def test_plateau_divides_the_rate_after_an_epoch_that_does_not_improve(corpus):
    vocab, stream, valid = corpus
    history = train(
        _model(vocab),
        stream,
        epochs=5,
        batch_size=8,
        bptt=20,
        lr=0.2,
        valid_stream=valid,
        lr_schedule="plateau",
        progress=False,
    )
    ppl = [r["valid_perplexity"] for r in history]
    divided = 0
    for i in range(1, len(history)):
        stalled = ppl[i - 1] >= min(ppl[: i - 1], default=math.inf)
        expected = history[i - 1]["lr"] / (4.0 if stalled else 1.0)
        assert history[i]["lr"] == pytest.approx(expected)
        divided += stalled
    assert divided >= 1  # lr = 0.2 overshoots on this corpus: the rule must have acted


def test_late_num_samples_draws_more_noise_in_the_last_epochs(corpus):
    vocab, stream, _ = corpus
    model = _model(vocab)  # k = 10
    history = train(
        model,
        stream,
        epochs=3,
        batch_size=8,
        bptt=20,
        late_num_samples=40,
        late_epochs=1,
        progress=False,
    )
    assert [r["num_samples"] for r in history] == [10, 10, 40]
    assert model.output.num_samples == 10 and model.config.num_samples == 10


def test_noise_power_sets_the_noise_distribution(corpus):
    vocab, _, _ = corpus
    counts = torch.tensor(vocab.counts).clamp(min=1).double()
    for power in (0.0, 0.75, 1.0):
        torch.manual_seed(0)
        model = LanguageModel(
            LMConfig(len(vocab), 8, 8, num_samples=5, noise_power=power), torch.tensor(vocab.counts)
        )
        expected = (counts**power / (counts**power).sum()).log()
        torch.testing.assert_close(model.output.noise.log_prob(torch.arange(len(vocab))), expected)
    with pytest.raises(ValueError, match="noise_power"):
        LMConfig(20, noise_power=-1.0)


@pytest.mark.parametrize("loss, log_z", [("nce", 0.0), ("nce", "learned"), ("full", 0.0)])
def test_self_normalization_term_adds_alpha_times_the_mean_squared_log_z(corpus, loss, log_z):
    vocab, stream, _ = corpus
    inputs, targets = stream[:-1][:240].reshape(4, 60), stream[1:][:240].reshape(4, 60)
    losses = {}
    for alpha in (0.0, 0.3):
        torch.manual_seed(0)
        config = LMConfig(
            len(vocab), 8, 8, dropout=0.0, loss=loss, num_samples=5, log_z=log_z,
            self_normalization=alpha,
        )  # fmt: skip
        model = LanguageModel(config, torch.tensor(vocab.counts))
        if log_z == "learned":
            with torch.no_grad():
                model.output.log_z.fill_(0.7)
        generator = torch.Generator().manual_seed(1)
        losses[alpha] = model.loss(inputs, targets, generator=generator)[0]
    # float64 reference: every 240 // 32 = 7th context, the first 32 of them
    h = model.hidden_states(inputs)[0].reshape(-1, 8)[::7][:32].double()
    logits = h @ model.output.embedding.weight.double().T + model.output.bias.weight.double().T
    log_z_exact = torch.logsumexp(logits, 1) - (0.7 if log_z == "learned" else 0.0)
    expected = 0.3 * log_z_exact.square().mean()
    torch.testing.assert_close((losses[0.3] - losses[0.0]).double(), expected, rtol=1e-4, atol=1e-6)
    model.eval()  # the term is a training loss only
    generator = torch.Generator().manual_seed(1)
    torch.testing.assert_close(model.loss(inputs, targets, generator=generator)[0], losses[0.0])
    with pytest.raises(ValueError, match="self_normalization"):
        LMConfig(20, self_normalization=-0.1)


def test_self_normalization_term_trains_with_sparse_rows_and_lazy_adam(corpus):
    vocab, stream, _ = corpus
    moved = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(0)
        config = LMConfig(len(vocab), 8, 8, num_samples=5, self_normalization=alpha)
        model = LanguageModel(config, torch.tensor(vocab.counts))
        before = model.output.embedding.weight.detach().clone()
        history = train(model, stream[:41], epochs=1, batch_size=4, bptt=10, progress=False)
        assert math.isfinite(history[0]["loss"])
        moved[alpha] = (model.output.embedding.weight.detach() != before).any(1)
    # one step: lazy Adam moves only the rows read, and the term's gradient reads every row
    assert not bool(moved[0.0].all()) and bool(moved[1.0].all())


def test_bad_schedules_are_refused_naming_the_argument(corpus):
    vocab, stream, valid = corpus
    bad = [
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"lr_schedule": "plateau"}, "lr_schedule='plateau' needs valid_stream"),
        ({"late_epochs": 1}, "late_epochs=1 needs late_num_samples"),
        ({"late_num_samples": 20}, "late_num_samples needs late_epochs >= 1"),
        ({"late_num_samples": 20, "late_epochs": 3}, r"late_epochs \(3\) must be at most epochs"),
        ({"late_num_samples": 10**6, "late_epochs": 1}, "must be below the vocabulary size"),
        ({"late_num_samples": 0, "late_epochs": 1}, "late_num_samples must be >= 1"),
    ]
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            train(_model(vocab), stream, epochs=2, progress=False, **options)
    with pytest.raises(ValueError, match="not 'full'"):
        train(
            _model(vocab, "full"),
            stream,
            epochs=1,
            late_num_samples=5,
            late_epochs=1,
            progress=False,
        )


def test_cli_schedules_and_noise_options(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(tokenize(v)) for v in kjv_verses()[:300]))
    out = tmp_path / "lm.pt"
    common = [
        "train",
        "--corpus",
        str(text),
        "--dim",
        "8",
        "--hidden",
        "8",
        "--k",
        "5",
        "--no-progress",
        "-o",
        str(out),
    ]
    argv = [
        *common,
        "--epochs",
        "2",
        "--lr-schedule",
        "plateau",
        "--noise-power",
        "1",
        "--log-z",
        "learned",
        "--late-k",
        "20",
        "--late-epochs",
        "1",
        "--self-normalization",
        "0.1",
    ]
    assert lm_cli.run(_parse(argv)) == 0
    saved = read_checkpoint(out)
    assert saved["config"].noise_power == 1.0 and saved["config"].log_z == "learned"
    assert saved["config"].self_normalization == 0.1
    assert saved["options"]["lr_schedule"] == "plateau"
    assert [r["num_samples"] for r in saved["history"]] == [5, 20]
    bad = [
        (["--log-z", "big"], "--log-z must be a finite number, 'learned' or 'context'"),
        (["--log-z", "inf"], "--log-z must be a finite number"),
        (["--noise-power", "-1"], "--noise-power must be a finite number >= 0"),
        (["--self-normalization", "nan"], "--self-normalization must be a finite number >= 0"),
        (["--late-epochs", "1"], "--late-epochs 1 needs --late-k"),
        (["--late-k", "20"], "--late-k needs --late-epochs between 1 and --epochs"),
        (["--late-k", "100000", "--late-epochs", "1"], "--late-k 100000 must be >= 1 and below"),
    ]
    for extra, message in bad:
        with pytest.raises(InputError, match=message):
            lm_cli.run(_parse([*common, *extra]))
