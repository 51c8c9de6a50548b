"""RetrievalTrainer: learning, exact resume, divergence, losses, and hard negatives with mining."""

import pytest
import torch

import nce
from nce._checkpoint import CheckpointError, load_checkpoint
from nce.retrieval import HashedNgramEncoder, RetrievalTrainer, evaluate_pairs
from nce.retrieval.trainer import hard_negatives_supported

WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "red",
    "blue",
    "green",
    "black",
    "white",
    "dog",
    "cat",
    "bird",
    "fish",
    "horse",
]
SPANISH = [
    "uno",
    "dos",
    "tres",
    "cuatro",
    "cinco",
    "seis",
    "siete",
    "ocho",
    "nueve",
    "diez",
    "rojo",
    "azul",
    "verde",
    "negro",
    "blanco",
    "perro",
    "gato",
    "pajaro",
    "pez",
    "caballo",
]
QUERIES = [f"{WORDS[i]} {WORDS[(3 * i + 1) % 20]}" for i in range(20)]
DOCUMENTS = [f"{SPANISH[i]} {SPANISH[(3 * i + 1) % 20]}" for i in range(20)]

needs_in_batch = pytest.mark.skipif(
    not hard_negatives_supported(), reason="nce.info_nce has no in_batch option yet"
)


def _encoder():
    return HashedNgramEncoder(buckets=4096, width=16, dim=16)


def _trainer(**kw):
    options = dict(
        epochs=30, batch_size=10, lr=0.05, temperature=0.1, progress=False, random_state=0
    )
    return RetrievalTrainer(_encoder(), **{**options, **kw})


@pytest.mark.parametrize("loss", ["info_nce", "pairwise_nce"])
def test_training_learns_a_translation_table(loss):
    trainer = _trainer(loss=loss)
    before = evaluate_pairs(trainer.model, QUERIES, DOCUMENTS)["recall_at_1"]
    trainer.fit(QUERIES, DOCUMENTS)
    after = evaluate_pairs(trainer.model, QUERIES, DOCUMENTS)
    assert trainer.history_[-1] < trainer.history_[0]
    assert after["recall_at_1"] > max(before, 0.8)
    assert trainer.seconds_ > 0 and trainer.cpu_seconds_ > 0


def test_interrupted_then_resumed_equals_a_straight_run_bit_for_bit(tmp_path, monkeypatch):
    from nce.retrieval import trainer as trainer_module

    straight = _trainer(epochs=4).fit(QUERIES, DOCUMENTS)
    real_save = trainer_module.save_checkpoint

    def save_then_stop_after_two(state, path, *, kind):
        real_save(state, path, kind=kind)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_stop_after_two)
    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        _trainer(epochs=4, checkpoint=path).fit(QUERIES, DOCUMENTS)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    assert load_checkpoint(path, kind="retrieval")["epoch"] == 2
    resumed = _trainer(epochs=4, checkpoint=path).fit(QUERIES, DOCUMENTS, resume=True)
    assert resumed.history_ == straight.history_
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    path = tmp_path / "ckpt.pt"
    _trainer(epochs=1, checkpoint=path).fit(QUERIES, DOCUMENTS)
    with pytest.raises(CheckpointError, match="another configuration"):
        _trainer(epochs=1, lr=0.01, checkpoint=path).fit(QUERIES, DOCUMENTS, resume=True)


def test_divergence_is_named_with_the_option_to_change():
    trainer = _trainer(epochs=3, lr=1e30, temperature=1e-30)
    with pytest.raises(nce.DivergenceError, match="diverged.*lower lr"):
        trainer.fit(QUERIES, DOCUMENTS)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        _trainer(loss="hinge")
    with pytest.raises(ValueError, match="hard_negatives needs loss='info_nce'"):
        _trainer(loss="pairwise_nce", hard_negatives=2)
    with pytest.raises(ValueError, match="pair up"):
        _trainer().fit(QUERIES, DOCUMENTS[:-1])
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        _trainer().fit(QUERIES, DOCUMENTS, resume=True)


def test_repeated_documents_are_not_negatives_of_each_other():
    """Two pairs with the same document: masked, the loss of a batch of them is finite and the
    same as if the duplicate were not in the softmax."""
    trainer = _trainer(batch_size=3)
    trainer._initialize(1)
    from nce.retrieval.mining import text_ids
    from nce.retrieval.towers import FeatureTable

    queries, documents = ["a b", "c d", "e f"], ["x", "x", "y"]
    q_table, d_table = FeatureTable(queries, 4096, 3, 5), FeatureTable(documents, 4096, 3, 5)
    loss = trainer.batch_loss(q_table, d_table, text_ids(documents), torch.arange(3))
    q = trainer.model.encode(*q_table.rows(torch.arange(3)), "query")
    x = trainer.model.encode(*d_table.rows(torch.arange(3)), "document")
    s = q @ x.T / trainer.temperature
    s_masked = s.clone()
    s_masked[0, 1] = s_masked[1, 0] = -torch.inf
    forward = torch.logsumexp(s_masked, 1) - s.diag()
    backward = torch.logsumexp(s_masked, 0) - s.diag()
    assert torch.allclose(loss, (forward + backward).mean() / 2, atol=1e-5)


@needs_in_batch
def test_hard_negatives_are_mined_every_e_epochs_and_trained_on(monkeypatch):
    from nce.retrieval import trainer as trainer_module

    calls = []
    real = trainer_module.mine_hard_negatives

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "mine_hard_negatives", counting)
    trainer = _trainer(epochs=5, hard_negatives=2, mine_every=2, false_negative_margin=0.1)
    trainer.fit(QUERIES, DOCUMENTS)
    assert len(calls) == 3  # epochs 0, 2, 4
    assert calls[0]["margin"] == 0.1
    assert trainer.negatives_.shape == (20, 2)
    assert evaluate_pairs(trainer.model, QUERIES, DOCUMENTS)["recall_at_1"] > 0.8


@needs_in_batch
def test_hard_negative_loss_is_info_nce_with_the_mined_documents():
    trainer = _trainer(hard_negatives=2)
    trainer._initialize(1)
    from nce.retrieval.mining import text_ids
    from nce.retrieval.towers import FeatureTable

    q_table = FeatureTable(QUERIES, 4096, 3, 5)
    d_table = FeatureTable(DOCUMENTS, 4096, 3, 5)
    ids = text_ids(DOCUMENTS)
    trainer._mine(q_table, d_table, ids)
    rows = torch.arange(4)
    loss = trainer.batch_loss(q_table, d_table, ids, rows)
    q = trainer.model.encode(*q_table.rows(rows), "query")
    x = trainer.model.encode(*d_table.rows(rows), "document")
    chosen = trainer.negatives_[rows]
    neg = trainer.model.encode(*d_table.rows(chosen.reshape(-1)), "document").view(4, 2, -1)
    expected = nce.info_nce(
        q,
        x,
        neg,
        in_batch=True,
        temperature=trainer.temperature,
        remove_accidental_hits=True,
        key_ids=ids[rows],
        negative_ids=ids[chosen],
    )
    assert torch.allclose(loss, expected)
