"""Reading ``nce demo``'s page back: its numbers by ``data-key`` and its images, from HTML text."""

from __future__ import annotations

import base64
import struct
from html.parser import HTMLParser
from pathlib import Path

from nce.cli._report_page import format_number


class PageReader(HTMLParser):
    """Collects the texts of the elements with each ``data-key`` and the ``src`` of every image."""

    def __init__(self):
        super().__init__()
        self.numbers: dict[str, list[str]] = {}
        self.images: list[str] = []
        self._key = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if "data-key" in attrs:
            self._key = attrs["data-key"]
            self.numbers.setdefault(self._key, []).append("")

    def handle_data(self, data):
        if self._key is not None:
            self.numbers[self._key][-1] += data

    def handle_endtag(self, tag):
        self._key = None


def read_page(text: str) -> PageReader:
    reader = PageReader()
    reader.feed(text)
    return reader


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk; raises on anything that is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR", "no IHDR chunk first"
    return struct.unpack(">II", data[16:24])


def image_bytes(src: str, folder: Path) -> bytes:
    prefix = "data:image/png;base64,"
    if src.startswith(prefix):
        return base64.b64decode(src[len(prefix) :], validate=True)
    return (folder / src).read_bytes()


def expected_numbers(summary: dict) -> dict[str, str]:
    """Every number of ``summary.json`` under its page key, formatted as the page formats it."""
    expected = {
        "run.seconds": format_number(summary["seconds"]),
        "run.threads": format_number(summary["threads"]),
    }
    for key, section in summary["sections"].items():
        expected[f"{key}.seconds"] = format_number(section["seconds"])
        for name, value in section["numbers"].items():
            expected[f"{key}.{name}"] = format_number(value)
    return expected


def check_page(text: str, summary: dict, folder: Path) -> None:
    """Every number of the summary on the page, each time as formatted, and nothing else under a
    ``data-key``; every image a PNG of width > 0."""
    page = read_page(text)
    expected = expected_numbers(summary)
    missing = {
        k: (v, page.numbers.get(k))
        for k, v in expected.items()
        if not page.numbers.get(k) or set(page.numbers[k]) != {v}
    }
    assert not missing, f"numbers not on the page as formatted (expected, found): {missing}"
    assert set(page.numbers) == set(expected), set(page.numbers) ^ set(expected)
    assert len(page.images) == len(summary["sections"])
    for src in page.images:
        width, height = png_size(image_bytes(src, folder))
        assert width > 0 and height > 0
