"""Hard-negative mining: the hardest non-positives, the id filter, the margin filter (self or
guide), padding when too few candidates survive; the hashed features are deterministic."""

import subprocess
import sys

import pytest
import torch

from nce.retrieval.mining import mine_hard_negatives, text_ids
from nce.retrieval.towers import FeatureTable, HashedNgramEncoder, feature_bucket, text_features

# query 0's positive is document 0; documents 1 and 4 are copies of it (same id)
DOCS = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
QUERY = torch.tensor([[1.0, 0.0]])


def test_mining_returns_the_hardest_documents_that_are_not_the_positive():
    idx, valid = mine_hard_negatives(QUERY, DOCS, torch.tensor([0]), 3)
    assert idx.tolist() == [[1, 4, 2]] and valid.all()


def test_id_filter_drops_copies_of_the_positive():
    ids = text_ids(["a", "a", "b", "c", "a", "d"])
    idx, _ = mine_hard_negatives(QUERY, DOCS, torch.tensor([0]), 3, ids=ids)
    assert idx.tolist() == [[2, 3, 5]]


def test_margin_filter_drops_candidates_scoring_near_the_positive():
    ids = text_ids(["a", "a", "b", "c", "a", "d"])
    idx, _ = mine_hard_negatives(QUERY, DOCS, torch.tensor([0]), 2, ids=ids, margin=0.3)
    assert idx.tolist() == [[3, 5]]  # 0.8 > 1 - 0.3 is dropped, 0.6 is kept


def test_margin_filter_can_follow_a_frozen_guide():
    # the guide thinks document 3 is the paraphrase, not document 2
    guide_docs = torch.tensor(
        [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    )
    idx, _ = mine_hard_negatives(
        QUERY, DOCS, torch.tensor([0]), 2, margin=0.5, guide=(QUERY, guide_docs)
    )
    assert idx.tolist() == [[1, 4]]
    idx, _ = mine_hard_negatives(
        QUERY, DOCS, torch.tensor([0]), 4, margin=0.5, guide=(QUERY, guide_docs)
    )
    assert 3 not in idx.tolist()[0] and idx.tolist()[0][:3] == [1, 4, 2]


def test_too_few_survivors_are_marked_invalid_and_point_at_the_positive():
    ids = text_ids(["a", "a", "b", "c", "a", "d"])
    idx, valid = mine_hard_negatives(QUERY, DOCS, torch.tensor([0]), 5, ids=ids, margin=0.3)
    assert valid.tolist() == [[True, True, False, False, False]]
    assert idx.tolist() == [[3, 5, 0, 0, 0]]
    idx, valid = mine_hard_negatives(QUERY, DOCS, torch.tensor([0]), 8)
    assert idx.shape == (1, 8) and valid.sum() == 5


def test_mining_matches_a_brute_force_reference_in_chunks():
    g = torch.Generator().manual_seed(0)
    q, x = torch.randn(9, 4, generator=g), torch.randn(30, 4, generator=g)
    positives = torch.randint(30, (9,), generator=g)
    ids = torch.randint(20, (30,), generator=g)
    idx, valid = mine_hard_negatives(q, x, positives, 4, ids=ids, margin=0.2, chunk_size=7)
    s = q @ x.T
    for i in range(9):
        p = int(positives[i])
        allowed = [
            j
            for j in s[i].argsort(descending=True, stable=True).tolist()
            if ids[j] != ids[p] and s[i, j] <= s[i, p] - 0.2
        ]
        assert idx[i][valid[i]].tolist() == allowed[:4]
        assert (idx[i][~valid[i]] == p).all() and valid[i].sum() == min(4, len(allowed))
    assert valid.any() and not valid.all()


def test_bad_margin_and_shapes_are_refused():
    with pytest.raises(ValueError, match="margin must be a number >= 0"):
        mine_hard_negatives(QUERY, DOCS, torch.tensor([0]), 1, margin=-1.0)
    with pytest.raises(ValueError, match="ids must be a \\(6,\\) tensor"):
        mine_hard_negatives(QUERY, DOCS, torch.tensor([0]), 1, ids=torch.zeros(3))


def test_hashing_is_the_same_in_every_process():
    code = (
        "from nce.retrieval.towers import text_features;"
        "print(text_features(['En el principio'], 1 << 20)[0].tolist())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": ":".join(sys.path)},
    ).stdout
    assert other.strip() == str(text_features(["En el principio"], 1 << 20)[0].tolist())
    assert feature_bucket("w:en", 1 << 20) == feature_bucket("w:en", 1 << 20)


def test_feature_rows_select_the_texts_features_and_embed_in_any_chunk():
    texts = ["In the beginning", "God", "", "created the heaven and the earth"]
    table = FeatureTable(texts, 1000, 3, 5)
    ids, offsets = table.rows(torch.tensor([3, 0]))
    ref_ids, _ = text_features([texts[3], texts[0]], 1000, 3, 5)
    assert torch.equal(ids, ref_ids) and offsets.tolist() == [
        0,
        len(table.rows(torch.tensor([3]))[0]),
    ]
    enc = HashedNgramEncoder(buckets=1000, width=8, dim=6)
    whole = enc.embed(texts, "query")
    assert torch.allclose(whole, enc.embed(texts, "query", chunk_size=3))
    assert torch.allclose(whole.norm(dim=1), torch.ones(4))
    assert torch.allclose(whole, enc.embed(texts, "document"))  # projections start equal
