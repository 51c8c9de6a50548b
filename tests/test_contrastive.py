"""Tests of nce.contrastive: augmentations, key queue, momentum encoder, trainer, probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nce
from nce._checkpoint import load_checkpoint
from nce.contrastive import (
    Compose,
    ContrastiveTrainer,
    ConvEncoder,
    DivergenceError,
    GaussianNoise,
    KeyQueue,
    MLPEncoder,
    MomentumEncoder,
    ProjectionHead,
    RandomAffine,
    RandomMask,
    RandomResizedCrop,
    RandomRotation,
    RandomShift,
    alignment,
    digits_augmentation,
    effective_rank,
    knn_accuracy,
    linear_probe,
    pretrain,
    sparsity,
    uniformity,
)

IMAGE_TRANSFORMS = [
    RandomShift(1),
    RandomAffine(15, 0.1, 1.0),
    RandomRotation(10),
    RandomResizedCrop(0.6),
    GaussianNoise(0.1),
    RandomMask(0.2),
    digits_augmentation(),
]


# ------------------------------------------------------------------ augmentations


@pytest.mark.parametrize("transform", IMAGE_TRANSFORMS, ids=repr)
@pytest.mark.parametrize("shape", [(5, 1, 8, 8), (5, 8, 8), (3, 2, 6, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_augmentations_keep_shape_dtype_and_are_seeded(transform, shape, dtype):
    x = torch.rand(shape, dtype=dtype)
    a = transform(x, torch.Generator().manual_seed(3))
    b = transform(x, torch.Generator().manual_seed(3))
    c = transform(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("transform", [GaussianNoise(0.1), RandomMask(0.3)], ids=repr)
def test_vector_augmentations(transform):
    x = torch.rand(6, 10)
    a = transform(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, transform(x, torch.Generator().manual_seed(0)))


def test_shift_moves_pixels_by_whole_steps():
    x = torch.zeros(200, 1, 5, 5)
    x[:, :, 2, 2] = 1
    y = RandomShift(1)(x, torch.Generator().manual_seed(0))
    assert torch.equal(y.sum((1, 2, 3)), torch.ones(200))
    rows, cols = y[:, 0].nonzero()[:, 1], y[:, 0].nonzero()[:, 2]
    assert set(rows.tolist()) == {1, 2, 3} and set(cols.tolist()) == {1, 2, 3}


def test_zero_strength_is_identity():
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(RandomAffine(0, 0, 0)(x), x, atol=1e-6)
    assert torch.equal(RandomMask(0.0)(x), x)
    assert torch.equal(GaussianNoise(0.0)(x), x)
    assert torch.equal(RandomShift(0)(x), x)


def test_mask_rate():
    y = RandomMask(0.25)(torch.ones(100, 1, 20, 20), torch.Generator().manual_seed(0))
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.01


def test_augmentation_errors_name_argument():
    with pytest.raises(ValueError, match="degrees"):
        RandomRotation(-1)
    with pytest.raises(ValueError, match="p must lie"):
        RandomMask(1.0)
    with pytest.raises(ValueError, match="x must be 3-D or 4-D"):
        RandomShift(1)(torch.rand(4, 64))
    with pytest.raises(TypeError, match=r"transforms\[1\]"):
        Compose([RandomShift(1), 3])


# ------------------------------------------------------------------ key queue


def test_queue_fifo_order_and_wraparound():
    q = KeyQueue(size=5, dim=2)
    assert len(q) == 0 and q.keys.shape == (0, 2)
    q.enqueue(torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 2]))
    assert q.ids.tolist() == [0, 1, 2] and not q.is_full
    q.enqueue(torch.arange(6.0, 10.0).view(2, 2), torch.tensor([3, 4]))
    assert q.ids.tolist() == [0, 1, 2, 3, 4] and q.is_full
    q.enqueue(torch.full((3, 2), 7.0), torch.tensor([5, 6, 7]))
    assert q.ids.tolist() == [3, 4, 5, 6, 7]
    assert q.keys[0].tolist() == [6.0, 7.0] and int(q.pointer) == 3


def test_queue_persists_through_state_dict(tmp_path):
    q = KeyQueue(size=4, dim=3)
    q.enqueue(torch.randn(3, 3), torch.tensor([10, 11, 12]))
    q.enqueue(torch.randn(2, 3), torch.tensor([13, 14]))
    torch.save(q.state_dict(), tmp_path / "q.pt")
    r = KeyQueue(size=4, dim=3)
    r.load_state_dict(torch.load(tmp_path / "q.pt"))
    assert torch.equal(r.keys, q.keys) and r.ids.tolist() == q.ids.tolist() == [11, 12, 13, 14]
    assert int(r.pointer) == int(q.pointer) and len(r) == len(q) == 4
    r.enqueue(torch.zeros(1, 3), torch.tensor([15]))
    q.enqueue(torch.zeros(1, 3), torch.tensor([15]))
    assert r.ids.tolist() == q.ids.tolist() == [12, 13, 14, 15]


def test_queue_rejects_bad_input():
    q = KeyQueue(size=4, dim=3)
    with pytest.raises(ValueError, match=r"keys must have shape \(N, 3\)"):
        q.enqueue(torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="cannot enqueue 5 keys"):
        q.enqueue(torch.randn(5, 3), torch.arange(5))
    with pytest.raises(ValueError, match="ids must have shape"):
        q.enqueue(torch.randn(2, 3), torch.arange(3))


def test_momentum_encoder_ema():
    online = torch.nn.Linear(2, 2)
    target = MomentumEncoder(online, momentum=0.75)
    before = target.network.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    target.update(online)
    assert torch.allclose(target.network.weight, 0.75 * before + 0.25 * online.weight)
    assert not any(p.requires_grad for p in target.parameters())


# ------------------------------------------------------------------ trainer


def _blobs(n=96, dim=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centers = 2 * torch.randn(classes, dim, generator=g)
    return centers[y] + 0.3 * torch.randn(n, dim, generator=g), y


def _trainer(**kw):
    kw.setdefault("epochs", 4)
    kw.setdefault("batch_size", 32)
    return ContrastiveTrainer(
        MLPEncoder(8, (16,)),
        ProjectionHead(16, 16, 8),
        augment=GaussianNoise(0.2),
        progress=False,
        lr=1e-2,
        **kw,
    )


def test_moco_never_meets_own_positive_as_negative(monkeypatch):
    x, _ = _blobs(n=64)
    seen = []
    real = nce.contrastive.trainer.info_nce

    def spy(q, k, negatives=None, **kw):
        if negatives is not None:
            key_ids, neg_ids = kw["key_ids"], kw["negative_ids"]
            assert kw["remove_accidental_hits"]
            seen.append((key_ids.clone(), neg_ids.clone()))
            qn, kn, nn_ = (torch.nn.functional.normalize(t, dim=1) for t in (q, k, negatives))
            pos = (qn * kn).sum(1, keepdim=True) / 0.2
            neg = (qn @ nn_.T / 0.2).masked_fill(key_ids[:, None] == neg_ids[None, :], -torch.inf)
            reference = (torch.logsumexp(torch.cat([pos, neg], 1), 1) - pos[:, 0]).mean()
            assert torch.allclose(real(q, k, negatives, **kw), reference, atol=1e-5)
        return real(q, k, negatives, **kw)

    monkeypatch.setattr(nce.contrastive.trainer, "info_nce", spy)
    trainer = _trainer(loss="info_nce", moco=True, queue_size=48, batch_size=16, epochs=3)
    trainer.fit(x)
    assert len(seen) == 3 * 4 - 1
    # the queue grows batch by batch and holds keys of earlier batches only
    first_keys, first_queue = seen[0]
    assert len(first_queue) == 16 and not torch.isin(first_keys, first_queue).any()
    assert len(seen[2][1]) == 48


def test_moco_queue_holds_last_batches_in_order():
    x, _ = _blobs(n=64)
    order = []
    trainer = _trainer(loss="info_nce", moco=True, queue_size=40, batch_size=16, epochs=2)
    original = trainer._batches

    def record(n):
        batches = original(n)
        order.extend(batches)
        return batches

    trainer._batches = record
    trainer.fit(x)
    expected = torch.cat(order)[-40:]
    assert trainer.queue.ids.tolist() == expected.tolist()


def test_tiny_pretraining_lowers_the_loss():
    x, _ = _blobs()
    trainer = _trainer(epochs=15).fit(x)
    assert trainer.history_[-1] < trainer.history_[0] - 0.2


@pytest.mark.parametrize(
    "loss, options",
    [
        ("info_nce", {}),
        ("debiased_info_nce", {"tau_plus": 0.1, "beta": 1.0}),
        ("supervised_info_nce", {}),
        ("soft_info_nce", {"smoothing": 0.1}),
    ],
)
def test_every_loss_trains(loss, options):
    x, y = _blobs()
    trainer = _trainer(loss=loss, loss_options=options, epochs=2).fit(x, y)
    assert len(trainer.history_) == 2 and all(np.isfinite(trainer.history_))


@pytest.mark.parametrize("moco", [False, True])
def test_resume_matches_uninterrupted_run(tmp_path, moco):
    x, _ = _blobs()
    kw = {"loss": "info_nce", "moco": moco, "queue_size": 40} if moco else {}
    full = _trainer(**kw).fit(x)
    path = tmp_path / "ckpt.pt"
    _trainer(checkpoint=path, callback=lambda t, epoch, loss: epoch == 2, **kw).fit(x)
    assert load_checkpoint(path, kind="contrastive")["epoch"] == 2
    resumed = _trainer(checkpoint=path, **kw).fit(x, resume=True)
    assert resumed.history_ == full.history_
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    if moco:
        assert torch.equal(full.queue.keys, resumed.queue.keys)
        assert full.queue.ids.tolist() == resumed.queue.ids.tolist()


def test_moco_second_fit_repeats_the_first():
    # fit() leaves the model in eval mode; the next fit's key encoder must be in train mode.
    x, _ = _blobs()
    trainer = _trainer(loss="info_nce", moco=True, queue_size=40, epochs=2)
    first = list(trainer.fit(x).history_)
    assert trainer.fit(x).history_ == first


def test_moco_queue_must_hold_a_batch():
    x, _ = _blobs()
    with pytest.raises(ValueError, match=r"queue_size \(8\) must hold at least one batch"):
        _trainer(loss="info_nce", moco=True, queue_size=8, batch_size=16).fit(x)


def test_resume_refuses_a_checkpoint_of_other_data(tmp_path):
    x, _ = _blobs()
    path = tmp_path / "ckpt.pt"
    _trainer(checkpoint=path, epochs=1).fit(x)
    with pytest.raises(ValueError, match="another configuration"):
        _trainer(checkpoint=path, epochs=1).fit(x[:64], resume=True)


def test_random_state_fixes_the_run():
    x, _ = _blobs()
    a, b = _trainer(epochs=2).fit(x), _trainer(epochs=2).fit(x)
    c = _trainer(epochs=2, random_state=1).fit(x)
    assert a.history_ == b.history_ and a.history_ != c.history_


def test_random_state_takes_a_generator_and_leaves_the_global_generator_alone():
    x, _ = _blobs()
    a = _trainer(epochs=2, random_state=torch.Generator().manual_seed(3))
    b = _trainer(epochs=2, random_state=torch.Generator().manual_seed(3))
    before = torch.random.get_rng_state()
    assert a.fit(x).history_ == b.fit(x).history_
    assert torch.equal(torch.random.get_rng_state(), before)
    assert len(_trainer(epochs=1, random_state=None).fit(x).history_) == 1
    with pytest.raises(TypeError, match="random_state must be None, an int or a torch.Generator"):
        _trainer(random_state="0")


def test_fit_takes_arrays_lists_and_tensors_alike():
    x, _ = _blobs()
    want = _trainer(epochs=1).fit(x).history_
    assert _trainer(epochs=1).fit(x.numpy().astype(np.float64)).history_ == want
    assert _trainer(epochs=1).fit(x.tolist()).history_ == want


def test_diverging_training_names_lr_and_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path):
    x, _ = _blobs()
    path = tmp_path / "ckpt.pt"
    trainer = _trainer(epochs=20, checkpoint=path)
    trainer.lr = 1e6
    with pytest.raises(DivergenceError, match=r"diverged in epoch \d+: .* lower lr \(now 1e\+06\)"):
        trainer.fit(x)
    assert trainer.epoch_ >= 1
    saved = load_checkpoint(path, kind="contrastive")
    assert saved["epoch"] == trainer.epoch_
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_outputs_too_large_before_any_step_blame_the_data_not_divergence():
    x = torch.ones(32, 8)
    encoder = torch.nn.Linear(8, 4)
    with torch.no_grad():
        encoder.weight.fill_(10.0)  # 8 inputs of 1e37 times 10 overflow float32
    trainer = ContrastiveTrainer(encoder, reinitialize=False, epochs=1, progress=False)
    with pytest.raises(ValueError, match="before any training step .* too large"):
        trainer.fit(x * 1e37)


def test_loss_options_reach_supervised_info_nce(monkeypatch):
    x, y = _blobs()
    seen = []
    real = nce.contrastive.trainer.supervised_info_nce

    def spy(embeddings, labels, **kw):
        seen.append(kw)
        return real(embeddings, labels, **kw)

    monkeypatch.setattr(nce.contrastive.trainer, "supervised_info_nce", spy)
    _trainer(loss="supervised_info_nce", loss_options={"chunk_size": 8}, epochs=1).fit(x, y)
    assert seen and all(kw["chunk_size"] == 8 for kw in seen)


@pytest.mark.parametrize(
    "loss, options, message",
    [
        ("supervised_info_nce", {"tau_plus": 0.1}, r"\['tau_plus'\] are not options of"),
        ("nt_xent", {"bogus": 1}, r"\['bogus'\] are not options of loss='nt_xent'"),
        ("info_nce", {"reduction": "none"}, "the trainer sets temperature, reduction"),
        ("soft_info_nce", {"beta": 1.0}, "which takes .*'smoothing'"),
        ("nt_xent", {"temperature": 0.5}, "pass the temperature as temperature="),
        (lambda z1, z2, labels: z1.sum(), {"chunk_size": 8}, "apply to a named loss"),
    ],
)
def test_loss_options_a_loss_does_not_take_are_refused(loss, options, message):
    with pytest.raises(ValueError, match=message):
        _trainer(loss=loss, loss_options=options)


def test_reinitialize_false_keeps_given_weights():
    x, _ = _blobs()
    encoder = MLPEncoder(8, (16,))
    before = encoder.net[0].weight.detach().clone()
    trainer = ContrastiveTrainer(encoder, epochs=1, lr=1e-9, reinitialize=False, progress=False)
    trainer.fit(x)
    assert torch.allclose(encoder.net[0].weight, before, atol=1e-6)
    ContrastiveTrainer(encoder, epochs=1, lr=1e-9, progress=False).fit(x)
    assert not torch.allclose(encoder.net[0].weight, before, atol=1e-3)


def test_checkpoint_is_atomic_and_resumable(tmp_path):
    x, _ = _blobs()
    path = tmp_path / "sub" / "ckpt.pt"
    _trainer(epochs=2, checkpoint=path).fit(x)
    assert path.exists() and not list(path.parent.glob(".*.tmp"))
    with pytest.raises(ValueError, match="another configuration"):
        _trainer(epochs=3, batch_size=16, checkpoint=path).fit(x, resume=True)


def test_transform_shape_and_images():
    trainer = ContrastiveTrainer(
        ConvEncoder(width=4),
        ProjectionHead(16, 16, 8),
        augment=digits_augmentation(),
        epochs=1,
        batch_size=8,
        progress=False,
    )
    x = torch.rand(16, 1, 8, 8)
    assert trainer.fit(x).transform(x).shape == (16, 16)


def test_trainer_argument_errors():
    enc = MLPEncoder(8, (16,))
    with pytest.raises(ValueError, match="loss must be one of"):
        ContrastiveTrainer(enc, loss="triplet")
    with pytest.raises(ValueError, match="tau_plus"):
        ContrastiveTrainer(enc, loss="debiased_info_nce")
    with pytest.raises(ValueError, match="moco=True"):
        ContrastiveTrainer(enc, loss="nt_xent", moco=True)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        ContrastiveTrainer(enc, batch_size=1)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveTrainer(enc, temperature=0.0)
    trainer = ContrastiveTrainer(enc, epochs=1, progress=False)
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        x = torch.randn(10, 8)
        x[3, 2] = float("nan")
        trainer.fit(x)
    with pytest.raises(ValueError, match=r"y must have shape \(10,\)"):
        trainer.fit(torch.randn(10, 8), torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="needs labels"):
        ContrastiveTrainer(enc, loss="supervised_info_nce", epochs=1, progress=False).fit(
            torch.randn(10, 8)
        )


# ------------------------------------------------------------------ pretrain


def test_pretrain_splits_trains_and_probes():
    x, y = _blobs(n=160)
    result = pretrain(x.numpy(), y.numpy(), epochs=2, batch_size=32, width=4, progress=False)
    assert len(result.train_indices) == 112 and len(result.test_indices) == 48
    assert not set(result.train_indices) & set(result.test_indices)
    assert len(result.loss_history) == 2 and result.seconds > 0
    assert result.encoder_config == {"class": "MLPEncoder", "in_features": 8, "hidden": (32, 16)}
    assert result.linear_probe_accuracy > 0.9
    assert set(result.probes()) == {
        "linear_probe_accuracy",
        "linear_probe_accuracy_10_per_class",
        "knn_accuracy",
    }
    assert result.encoder(torch.zeros(2, 8)).shape == (2, 16)
    unlabelled = pretrain(x, epochs=1, batch_size=32, width=4, progress=False)
    assert unlabelled.linear_probe_accuracy is None and unlabelled.probes() == {}
    images = pretrain(torch.rand(40, 6, 6), epochs=1, batch_size=16, width=2, progress=False)
    assert images.encoder_config == {"class": "ConvEncoder", "in_channels": 1, "width": 2}


def test_pretrain_refuses_bad_input_before_training():
    x, y = _blobs(n=40)
    with pytest.raises(ValueError, match=r"y must have shape \(40,\)"):
        pretrain(x, y[:39], progress=False)
    with pytest.raises(ValueError, match="class 0 has 7 training sample"):
        pretrain(x, y, progress=False)
    with pytest.raises(ValueError, match="test_size must lie in"):
        pretrain(x, test_size=1.0, progress=False)
    with pytest.raises(ValueError, match="needs labels y"):
        pretrain(x, loss="supervised_info_nce", progress=False)
    with pytest.raises(ValueError, match="must be 2-D or 3-D or 4-D"):
        pretrain(torch.zeros(40), progress=False)


def test_pretrain_reports_divergence():
    x, _ = _blobs()
    with pytest.raises(DivergenceError, match="lower lr"):
        pretrain(x, lr=1e6, epochs=20, batch_size=32, width=4, progress=False)


# ------------------------------------------------------------------ evaluation and metrics


def test_probes_on_separable_features():
    x, y = _blobs(n=200)
    assert linear_probe(x[:100], y[:100], x[100:], y[100:]) == 1.0
    assert linear_probe(x[:100], y[:100], x[100:], y[100:], labels_per_class=5) > 0.95
    assert knn_accuracy(x[:100], y[:100], x[100:], y[100:], k=3) == 1.0
    with pytest.raises(ValueError, match="class .* has only"):
        linear_probe(x[:100], y[:100], x[100:], y[100:], labels_per_class=30)
    with pytest.raises(ValueError, match="test_labels must have shape"):
        knn_accuracy(x[:100], y[:100], x[100:], y[:50])
    bad = y[:100].double()
    bad[3] = float("nan")
    with pytest.raises(ValueError, match="train_labels must hold class labels"):
        knn_accuracy(x[:100], bad, x[100:], y[100:])
    with pytest.raises(ValueError, match="test_labels must hold class labels"):
        linear_probe(x[:100], y[:100], x[100:], y[100:].double() + 0.5)


def test_metrics():
    z = torch.randn(50, 4, dtype=torch.float64)
    assert float(alignment(z, 3 * z)) < 1e-12
    assert float(uniformity(torch.eye(3))) == pytest.approx(-4.0)
    assert float(uniformity(z)) > float(uniformity(torch.randn(50, 64)))  # spread in more dims
    assert float(effective_rank(torch.randn(500, 1) @ torch.ones(1, 5))) == pytest.approx(1, 1e-6)
    assert 4.0 < float(effective_rank(torch.randn(2000, 5))) <= 5.0
    h = torch.tensor([[1.0, 0.0, 0.01], [0.5, 2.0, 0.0]])
    assert float(sparsity(h)) == pytest.approx(2 / 6)
