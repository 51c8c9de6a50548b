"""The built-in English–Spanish verse pairs: the diatheke parser, the shipped data, the split."""

from nce.retrieval.bible import load_bible_pairs, parse_verses, repeated_verses, split_by_chapter

DIATHEKE = [
    "Job 42:17: So Job died, being old and full of days.    ",
    "Psalms 1:1: Blessed is the man that walketh not in the counsel of the ungodly, ",
    "",
    "Psalms 1:2: But his delight is in the law of the LORD; ",
    "and in his law doth he meditate day and night.",
    "A Psalm of David, when he fled from Absalom his son.",
    "   Psalms 3:1: LORD, how are they increased that trouble me! ",
    "A Psalm of David, when he fled from Absalom his son.",
    "   Revelation of John 22:21: The grace of our Lord Jesus Christ <G5547> be with you all. ",
    "(engKJV2006eb)",
]


def test_parser_joins_continued_lines_and_drops_headings_tags_and_footer():
    verses = parse_verses(DIATHEKE)
    assert verses == {
        ("Job", 42, 17): "So Job died, being old and full of days.",
        ("Psalms", 1, 1): "Blessed is the man that walketh not in the counsel of the ungodly,",
        ("Psalms", 1, 2): "But his delight is in the law of the LORD; and in his law doth he "
        "meditate day and night.",
        ("Psalms", 3, 1): "LORD, how are they increased that trouble me!",
        ("Revelation of John", 22, 21): "The grace of our Lord Jesus Christ be with you all.",
    }


def test_builtin_pairs_are_aligned_clean_and_complete():
    pairs = load_bible_pairs()
    assert 31_000 <= len(pairs) <= 31_102
    assert pairs.references[0] == ("Genesis", 1, 1)
    assert pairs.references[-1] == ("Revelation of John", 22, 21)
    assert len(set(pairs.references)) == len(pairs)
    assert not any("<G" in t or "<H" in t or "Psalm of" in t[:12] for t in pairs.english)
    assert all(en and es for en, es in zip(pairs.english, pairs.spanish, strict=True))
    psalm = pairs.references.index(("Psalms", 3, 1))
    assert pairs.english[psalm].startswith("LORD, how are they increased")


def test_split_holds_out_whole_chapters_and_repeats_are_counted():
    pairs = load_bible_pairs()
    train, test = split_by_chapter(pairs, test_fraction=0.1, random_state=0)
    assert len(train) + len(test) == len(pairs)
    chapters = {(b, c) for b, c, _ in train.references}
    assert chapters.isdisjoint({(b, c) for b, c, _ in test.references})
    assert 0.05 < len(test) / len(pairs) < 0.15
    again, _ = split_by_chapter(pairs, test_fraction=0.1, random_state=0)
    assert again.references == train.references
    groups, verses = repeated_verses(pairs.english)
    assert groups > 50 and verses > 2 * groups
    assert repeated_verses(["a", "b", "a"]) == (1, 2)
