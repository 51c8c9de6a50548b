"""Pairs files: BOM and CRLF accepted, malformed lines reported by number, nothing half-read."""

import pytest

from nce.retrieval.pairs_file import PairsFileError, read_pairs


def test_bom_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes("\ufeffhello\thola\r\n\r\ngood night \tbuenas noches\r\n".encode())
    assert read_pairs(path) == (["hello", "good night"], ["hola", "buenas noches"])


def test_malformed_lines_are_reported_with_their_numbers_and_the_file_refused(tmp_path):
    lines = ["a\tb", "no tab here", "x\ty\tz", "\tempty query", "empty document\t ", "c\td"]
    lines += ["bad"] * 4
    path = tmp_path / "p.tsv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PairsFileError) as info:
        read_pairs(path)
    message = str(info.value)
    assert "\n" not in message
    assert "8 malformed lines" in message
    for part in (
        "line 2 (no tab)",
        "line 3 (2 tabs)",
        "line 4 (empty query)",
        "line 5 (empty document)",
        "line 7 (no tab)",
        "and 3 more",
        "nothing was read",
    ):
        assert part in message


def test_too_few_pairs_and_non_utf8_are_refused(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("a\tb\n")
    with pytest.raises(PairsFileError, match="1 pairs, at least 2 needed"):
        read_pairs(path, minimum=2)
    path.write_bytes(b"a\t\xff\n")
    with pytest.raises(PairsFileError, match="not UTF-8"):
        read_pairs(path)
