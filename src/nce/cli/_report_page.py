"""The report of ``nce demo``: one self-contained HTML page, its numbers as JSON, a terminal table.

A section of the report is a :class:`SectionResult`: the numbers it measured (each a
:class:`Measure`, shown against its target or closed form), one figure (a PNG beside the page,
also embedded in it as a ``data:`` URI, so the page reads alone, offline and without
JavaScript), a setup note and two lines of reading written from this run's numbers.

Every number the page shows is formatted by :func:`format_number` and carries a ``data-key``
attribute naming its entry in ``summary.json`` (``section.key``), so that a reader, or a test,
can find each number of the JSON on the page.
"""

from __future__ import annotations

import base64
import html
import math
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nce._atomic import atomic_write_bytes


@dataclass(frozen=True)
class Measure:
    """One number of a section: ``value`` (key ``key``) against ``target`` (key ``target_key``).

    Args:
        key: the number's name in ``summary.json``.
        label: what it is, in words.
        value: the number this run measured.
        target: what it is compared with (a closed form, the truth, chance), or None.
        target_key: the target's name in ``summary.json`` (needed when ``target`` is given).
        target_label: what the target is, in words (``"closed form"``, ``"chance"``).
    """

    key: str
    label: str
    value: float
    target: float | None = None
    target_key: str | None = None
    target_label: str = ""

    def __post_init__(self):
        if (self.target is None) != (self.target_key is None):
            raise ValueError(f"{self.key}: a target needs a target_key and the reverse")


@dataclass(frozen=True)
class SectionResult(Mapping):
    """What one section of the report measured and drew; reads as a mapping of its numbers.

    Args:
        measures: the numbers, in the order of the page's table (the first is the headline).
        figure: the PNG's file name, in the report's folder.
        note: the setup in one sentence (data, sizes, budget).
        reading: two lines generated from this run's numbers.
    """

    measures: tuple[Measure, ...]
    figure: str
    note: str
    reading: tuple[str, str]
    numbers: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(self.reading) != 2:
            raise ValueError(f"a section has two lines of reading, got {len(self.reading)}")
        numbers = {}
        for m in self.measures:
            numbers[m.key] = m.value
            if m.target_key is not None:
                numbers[m.target_key] = m.target
        object.__setattr__(self, "numbers", numbers)

    def __getitem__(self, key: str):
        return self.numbers[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.numbers)

    def __len__(self) -> int:
        return len(self.numbers)


def format_number(value) -> str:
    """The one way the report writes a number: integers whole, others to 4 significant digits
    (whole from 10,000 on), booleans as yes / no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 10_000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def announce(result: SectionResult) -> SectionResult:
    """Print a finished section's note and its two lines of reading (above any progress bar)."""
    from tqdm.auto import tqdm

    for line in (result.note, *result.reading):
        tqdm.write(line if line is result.note else f"  {line}", file=sys.stdout)
    return result


@contextmanager
def one_thread():
    """Run the block on one torch thread, restoring the count after: the demo's models are so
    small that more threads only wait on each other, the more so on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def section_bar(title: str, total: int, progress: bool):
    """One progress bar for one section (``total`` stages); hidden when ``progress`` is False or
    when standard error is not a terminal, so a log gets no per-update lines."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=title,
        disable=not progress or not sys.stderr.isatty(),
        leave=True,
        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}",
    )


def summary_json(results: Mapping[str, tuple[str, SectionResult, float]], meta: dict) -> dict:
    """``summary.json``: the run's settings and, per section, every number the page shows."""
    return {
        **meta,
        "sections": {
            key: {
                "title": title,
                "seconds": seconds,
                "numbers": dict(result.numbers),
                "measures": [_measure_json(m) for m in result.measures],
                "figure": result.figure,
                "note": result.note,
                "reading": list(result.reading),
            }
            for key, (title, result, seconds) in results.items()
        },
    }


def _measure_json(m: Measure) -> dict:
    return {
        "key": m.key,
        "label": m.label,
        "value": m.value,
        "target": m.target,
        "target_key": m.target_key,
        "target_label": m.target_label,
    }


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0}td,th{padding:.25em .8em;border:1px solid #ddd}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee}.note{color:#555}.reading{font-size:1.05em}
"""


def _number(section: str, key: str, value) -> str:
    name = html.escape(f"{section}.{key}")
    return f'<span data-key="{name}">{format_number(value)}</span>'


def render_page(summary: dict, out_dir: Path) -> str:
    """The HTML page of ``summary`` (as :func:`summary_json` builds it), figures from ``out_dir``
    embedded as base64 ``data:`` URIs."""
    e = html.escape
    mode = "quick" if summary["quick"] else "full"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>nce demo report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>nce demo report</h1>",
        f"<p>{e(mode)} run of {len(summary['sections'])} sections on built-in data, "
        f'<span data-key="run.seconds">{format_number(summary["seconds"])}</span> s in all '
        f"(torch {e(summary['torch'])}, "
        f'<span data-key="run.threads">{summary["threads"]}</span> threads). Every number below '
        "comes from this run; <code>summary.json</code> holds them all.</p>",
        "<table><tr><th>Section</th><th>Headline</th><th>This run</th><th>Reference</th>"
        "<th>Seconds</th></tr>",
    ]
    for key, section in summary["sections"].items():
        first = section["measures"][0]
        target = first["target"]
        target = "" if target is None else _number(key, first["target_key"], target)
        parts.append(
            f'<tr><td><a href="#{e(key)}">{e(section["title"])}</a></td><td>{e(first["label"])}'
            f'</td><td class="n">{_number(key, first["key"], first["value"])}</td>'
            f'<td class="n">{target}</td>'
            f'<td class="n">{_number(key, "seconds", section["seconds"])}</td></tr>'
        )
    parts.append("</table>")
    for key, section in summary["sections"].items():
        parts += _section_html(key, section, out_dir)
    parts.append("</body></html>")
    return "\n".join(parts)


def _headline(section: dict) -> tuple[str, str, str]:
    first = section["measures"][0]
    target = "" if first["target"] is None else format_number(first["target"])
    return first["label"], format_number(first["value"]), target


def _section_html(key: str, section: dict, out_dir: Path) -> list[str]:
    e = html.escape
    png = (out_dir / section["figure"]).read_bytes()
    data = base64.b64encode(png).decode("ascii")
    rows = []
    for m in section["measures"]:
        target = ""
        if m["target"] is not None:
            target = f"{e(m['target_label'])}: {_number(key, m['target_key'], m['target'])}"
        rows.append(
            f"<tr><td>{e(m['label'])}</td><td class=\"n\">{_number(key, m['key'], m['value'])}"
            f'</td><td class="n">{target}</td></tr>'
        )
    return [
        f'<h2 id="{e(key)}">{e(section["title"])}</h2>',
        f'<p class="note">{e(section["note"])} '
        f'({_number(key, "seconds", section["seconds"])} s)</p>',
        "<table><tr><th>Quantity</th><th>This run</th><th>Target or closed form</th></tr>",
        *rows,
        "</table>",
        *(f'<p class="reading">{e(line)}</p>' for line in section["reading"]),
        f'<img alt="{e(section["title"])}" src="data:image/png;base64,{data}">',
        f'<p class="note">Figure: <a href="{e(section["figure"])}">{e(section["figure"])}</a></p>',
    ]


def write_report(results, meta: dict, out_dir: Path) -> dict:
    """Write ``summary.json`` and ``index.html`` into ``out_dir``; return the summary."""
    import json

    summary = summary_json(results, meta)
    page = render_page(summary, out_dir)
    text = json.dumps(summary, indent=2, allow_nan=True) + "\n"
    atomic_write_bytes(out_dir / "summary.json", text.encode())
    atomic_write_bytes(out_dir / "index.html", page.encode())
    return summary


def summary_table(summary: dict) -> str:
    """The terminal's one-screen table: per section, its headline against its reference."""
    rows = [("section", "headline", "this run", "reference", "s")]
    for key, section in summary["sections"].items():
        label, value, target = _headline(section)
        rows.append((key, label, value, target, format_number(section["seconds"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
