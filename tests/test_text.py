import pytest
import torch

from nce.text import (
    EOS,
    UNK,
    Vocabulary,
    kjv_verses,
    read_lines,
    split_lines,
    tokenize,
    zipf_corpus,
)


def test_kjv_ships_whole_and_has_penn_treebank_size():
    verses = kjv_verses()
    assert len(verses) == 31102
    assert verses[0] == "In the beginning God created the heaven and the earth."
    tokens = [tokenize(v) for v in verses]
    words = [t for line in tokens for t in line if t[0].isalnum()]
    assert 780_000 < len(words) < 800_000  # 820k whitespace-separated, minus the references
    assert 12_000 < len(set(words)) < 13_500


def test_tokenize_words_and_punctuation():
    assert tokenize("Let there be light: and there was light.") == [
        "let",
        "there",
        "be",
        "light",
        ":",
        "and",
        "there",
        "was",
        "light",
        ".",
    ]
    assert tokenize("LORD'S house") == ["lord's", "house"]


def test_vocabulary_encode_decode_and_counts():
    lines = [tokenize("a b b c"), tokenize("b c d")]
    vocab = Vocabulary.build(lines, min_count=2)
    assert vocab.tokens == (UNK, EOS, "b", "c")
    assert vocab.counts == (2, 2, 3, 2)  # a and d are <unk>
    ids = vocab.encode(lines)
    assert vocab.decode(ids) == ["<unk>", "b", "b", "c", EOS, "b", "c", "<unk>", EOS]
    assert len(Vocabulary.build(lines, min_count=1, max_size=4)) == 4


def test_split_is_fixed_and_disjoint():
    lines = list(range(1000))
    train, valid, test = split_lines(lines, random_state=0)
    assert (len(train), len(valid), len(test)) == (900, 50, 50)
    assert sorted(train + valid + test) == lines
    with pytest.warns(DeprecationWarning, match="use random_state="):
        assert split_lines(lines, seed=0) == (train, valid, test)
    with pytest.raises(ValueError, match="summing to 1"):
        split_lines(lines, fractions=(0.5, 0.2, 0.2))


def test_read_lines_refuses_empty_binary_and_non_utf8(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("In the beginning\n\nwas the word\n")
    assert read_lines(good) == ["In the beginning", "was the word"]
    for name, data, message in [
        ("empty.txt", b"", "no words"),
        ("binary.txt", b"abc\x00def", "binary file"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
    ]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_lines(path)
    with pytest.raises(ValueError, match="no such file"):
        read_lines(tmp_path / "missing.txt")


def test_zipf_corpus_frequencies():
    ids = zipf_corpus(200_000, 1000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(ids, minlength=1000).double()
    assert ids.min() >= 0 and ids.max() < 1000
    assert abs(counts[0] / counts[1] - 2.0) < 0.1  # p(1) / p(2) = 2 for s = 1
