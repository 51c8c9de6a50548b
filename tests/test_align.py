"""Captioned digits, the two towers, the alignment trainer and the zero-shot evaluation."""

from __future__ import annotations

import pytest
import torch

import nce
from nce._checkpoint import load_checkpoint
from nce.contrastive import AlignTrainer, align
from nce.contrastive.captions import (
    NUMERALS,
    TEST_TEMPLATES,
    TRAIN_TEMPLATES,
    WORDS,
    CaptionTemplate,
    load_captioned_digits,
    sample_captions,
)
from nce.contrastive.towers import BagOfWordsEncoder, TwoTowerModel, build_vocabulary
from nce.contrastive.zero_shot import class_embeddings, retrieval_recall, zero_shot_predict
from nce.text import tokenize

TRAIN_CAPTIONS = [t.fill(d) for t in TRAIN_TEMPLATES for d in range(10)]
TRAIN_WORDS = {w for c in TRAIN_CAPTIONS for w in tokenize(c)}


def needs_pairwise_nce():
    if not hasattr(nce, "pairwise_nce"):
        pytest.skip("nce.pairwise_nce is not available")


# ----------------------------------------------------------------------------- captions


def test_test_templates_share_no_template_and_no_carrier_word_with_training():
    assert not {t.phrase for t in TEST_TEMPLATES} & {t.phrase for t in TRAIN_TEMPLATES}
    for template in TEST_TEMPLATES:
        assert not template.carrier_words & TRAIN_WORDS, template.phrase


def test_every_class_name_is_taught_in_both_forms_and_tested_in_both_forms():
    for names in (WORDS, NUMERALS):
        assert set(names) <= TRAIN_WORDS
    assert (
        {t.form for t in TRAIN_TEMPLATES}
        == {t.form for t in TEST_TEMPLATES}
        == {
            "word",
            "numeral",
        }
    )
    # no carrier phrase contains a class name, so only the slot names the digit
    for template in (*TRAIN_TEMPLATES, *TEST_TEMPLATES):
        assert not template.carrier_words & (set(WORDS) | set(NUMERALS)), template.phrase


def test_captioned_digits_split_and_test_captions_name_their_digit():
    data = load_captioned_digits()
    assert data.x_train.shape == (1257, 1, 8, 8) and data.x_test.shape == (540, 1, 8, 8)
    assert len(data.test_captions) == 540
    for text, y in zip(data.test_captions, data.y_test.tolist(), strict=True):
        words = set(tokenize(text))
        assert words & {WORDS[y], NUMERALS[y]}
        assert not words & TRAIN_WORDS - {WORDS[y], NUMERALS[y]}
    assert set(data.test_captions) <= {t.fill(d) for t in TEST_TEMPLATES for d in range(10)}
    assert set(data.train_captions) == set(TRAIN_CAPTIONS)


def test_caption_template_refuses_bad_forms_and_slots():
    with pytest.raises(ValueError, match="form"):
        CaptionTemplate("a {}", "roman")
    with pytest.raises(ValueError, match="slot"):
        CaptionTemplate("no slot", "word")


def test_sample_captions_is_seeded():
    labels = torch.arange(10)
    a = sample_captions(labels, TRAIN_TEMPLATES, torch.Generator().manual_seed(0))
    b = sample_captions(labels, TRAIN_TEMPLATES, torch.Generator().manual_seed(0))
    assert a == b and len(set(a)) > 1


# ----------------------------------------------------------------------------- towers


def test_unknown_words_map_to_unk_and_word_dropout_hides_words():
    enc = BagOfWordsEncoder(build_vocabulary(["a handwritten seven"]), 8, 4)
    ids, offsets = enc.encode(["a handwritten seven", "pencil doodle", ""])
    assert ids.tolist() == [1, 2, 3, 0, 0, 0] and offsets.tolist() == [0, 3, 5]
    ids, _ = enc.encode(["a handwritten seven"], 0.5, torch.Generator().manual_seed(0))
    assert 0 in ids.tolist() and ids.tolist() != [0, 0, 0]
    with pytest.raises(TypeError, match="sequence of strings"):
        enc.encode("seven")
    with pytest.raises(ValueError, match="<unk>"):
        BagOfWordsEncoder(("seven",))


def test_two_tower_shapes():
    model = TwoTowerModel(build_vocabulary(TRAIN_CAPTIONS), dim=8, width=2)
    assert model.embed_images(torch.rand(3, 1, 8, 8)).shape == (3, 8)
    assert model.embed_texts(["the number 7", "seven"]).shape == (2, 8)


# ----------------------------------------------------------------------------- evaluation


def _naive_recall(u, v, labels, k):
    u = torch.nn.functional.normalize(u, dim=1)
    v = torch.nn.functional.normalize(v, dim=1)
    sim = u @ v.T
    out = {}
    for name, s in (("image_to_text", sim), ("text_to_image", sim.T)):
        hits = 0
        for i in range(len(s)):
            top = sorted(range(len(s)), key=lambda j: (-float(s[i, j]), j))[:k]
            hits += any(labels[j] == labels[i] for j in top)
        out[name] = hits / len(s)
    return out


def test_retrieval_recall_matches_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g)
    labels = torch.randint(5, (30,), generator=g)
    got = retrieval_recall(u, v, labels, ks=(1, 3))
    for k in (1, 3):
        want = _naive_recall(u, v, labels, k)
        for direction in ("image_to_text", "text_to_image"):
            assert got[direction][k] == pytest.approx(want[direction])
    # a one-sided permutation of the captions breaks the pairs
    assert retrieval_recall(u, u, torch.arange(30), ks=(1,))["image_to_text"][1] == 1.0
    perm = torch.roll(torch.arange(30), 1)
    assert retrieval_recall(u, u[perm], torch.arange(30), ks=(1,))["text_to_image"][1] == 0.0
    with pytest.raises(ValueError, match="text_embeddings"):
        retrieval_recall(u, v[:3], labels)


def test_zero_shot_labels_by_nearest_class_and_ensemble_of_one_is_the_template():
    class_emb = torch.eye(10)[:, :10]
    images = torch.eye(10)[[3, 1, 4]] + 0.1
    assert zero_shot_predict(images, class_emb).tolist() == [3, 1, 4]
    model = TwoTowerModel(build_vocabulary(TRAIN_CAPTIONS), dim=8, width=2).eval()
    one = class_embeddings(model, TEST_TEMPLATES[:1])
    assert one.shape == (10, 8)
    torch.testing.assert_close(one.norm(dim=1), torch.ones(10))
    both = class_embeddings(model, TEST_TEMPLATES[:2])
    two = torch.stack([class_embeddings(model, [t]) for t in TEST_TEMPLATES[:2]]).mean(0)
    torch.testing.assert_close(both, torch.nn.functional.normalize(two, dim=1))


# ----------------------------------------------------------------------------- training


def _tiny(loss="clip", epochs=3, checkpoint=None):
    model = TwoTowerModel(build_vocabulary(TRAIN_CAPTIONS), dim=4, width=2, text_width=8)
    return AlignTrainer(
        model,
        loss=loss,
        epochs=epochs,
        batch_size=16,
        checkpoint=checkpoint,
        progress=False,
        random_state=0,
    )


def _tiny_data():
    data = load_captioned_digits()
    return data.x_train[:48], data.y_train[:48]


def test_trainer_resumes_exactly(tmp_path):
    x, y = _tiny_data()
    straight = _tiny(epochs=3).fit(x, y)
    ckpt = tmp_path / "ckpt.pt"
    interrupted = _tiny(epochs=3, checkpoint=ckpt)
    step = interrupted.batch_loss
    steps = {"done": 0}

    def stop_in_third_epoch(images, labels):
        if steps["done"] == 2 * 3 + 1:  # 48 images / 16 per batch = 3 steps per epoch
            raise KeyboardInterrupt
        steps["done"] += 1
        return step(images, labels)

    interrupted.batch_loss = stop_in_third_epoch
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(x, y)
    assert load_checkpoint(ckpt, kind="align")["epoch"] == 2
    resumed = _tiny(epochs=3, checkpoint=ckpt).fit(x, y, resume=True)
    assert resumed.history_ == straight.history_
    for name, p in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], p, rtol=0, atol=0)
    torch.testing.assert_close(
        resumed.loss_fn.temperature(), straight.loss_fn.temperature(), rtol=0, atol=0
    )


def test_trainer_learns_the_temperature_and_refuses_bad_input():
    x, y = _tiny_data()
    trainer = _tiny(epochs=1).fit(x, y)
    assert trainer.loss_fn.temperature().item() != pytest.approx(0.07, abs=1e-6)
    with pytest.raises(ValueError, match="loss must be one of"):
        _tiny(loss="softmax")
    with pytest.raises(ValueError, match="images must be"):
        trainer.fit(x[:, 0], y)
    with pytest.raises(ValueError, match="labels must be"):
        trainer.fit(x, y[:3])
    with pytest.raises(ValueError, match="checkpoint"):
        trainer.fit(x, y, resume=True)
    with pytest.raises(TypeError, match="TwoTowerModel"):
        AlignTrainer(torch.nn.Linear(2, 2))


def test_trainer_reports_divergence_naming_lr():
    x, y = _tiny_data()
    trainer = _tiny(epochs=1)
    trainer.lr = 1e30
    with pytest.raises(nce.DivergenceError, match="lower lr"):
        trainer.fit(x, y)


def test_align_learns_zero_shot_beyond_chance():
    result = align(epochs=4, batch_size=32, width=8, progress=False)
    assert result.zero_shot_accuracy > 0.4  # chance is 0.1
    for key in ("zero_shot_accuracy", "ensemble_accuracy", "recall_at_1", "recall_at_5"):
        assert 0.0 <= getattr(result, key) <= 1.0
    assert result.recall_at_5 >= result.recall_at_1
    assert result.bias is None and result.initial_temperature == pytest.approx(0.07)
    assert len(result.zero_shot_accuracy_by_template) == len(TEST_TEMPLATES)


def test_siglip_trains_its_temperature_and_bias():
    needs_pairwise_nce()
    x, y = _tiny_data()
    trainer = _tiny(loss="siglip", epochs=1).fit(x, y)
    assert float(trainer.loss_fn.bias) != pytest.approx(-10.0, abs=1e-6)
    result = align(loss="siglip", epochs=1, batch_size=128, width=4, progress=False)
    assert result.initial_bias == pytest.approx(-10.0) and result.bias is not None
