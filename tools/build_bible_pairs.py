"""Build ``src/nce/data/bible_en_es.tsv.gz`` from Debian's SWORD modules (run once, offline).

    apt-get install -y diatheke sword-text-kjv sword-text-sparv
    python tools/build_bible_pairs.py

Each module is printed with ``diatheke -f plain``, parsed by
:func:`nce.retrieval.bible.parse_verses` and joined on the verse reference; verses present in only
one module are counted and left out.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from nce.retrieval.bible import parse_verses

MODULES = {"english": "engKJV2006eb", "spanish": "spaRV1909eb"}
OUT = Path(__file__).resolve().parents[1] / "src" / "nce" / "data" / "bible_en_es.tsv.gz"


def dump(module: str) -> list[str]:
    result = subprocess.run(
        ["diatheke", "-b", module, "-f", "plain", "-k", "Gen 1:1-Rev 22:21"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def main() -> None:
    english, spanish = (parse_verses(dump(module)) for module in MODULES.values())
    shared = [ref for ref in english if ref in spanish]
    for name, verses in (("english", english), ("spanish", spanish)):
        print(f"{name}: {len(verses)} verses, {len(verses) - len(shared)} without a partner")
    lines = [
        "\t".join((book, str(chapter), str(verse), english[ref], spanish[ref]))
        for ref in shared
        for book, chapter, verse in [ref]
    ]
    assert all("\t" not in english[r] + spanish[r] for r in shared)
    OUT.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    print(f"wrote {len(shared)} pairs to {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
