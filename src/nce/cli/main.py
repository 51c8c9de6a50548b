"""Entry point of the ``nce`` command.

Each command lives in its own module of :mod:`nce.cli` with ``add_arguments(parser)`` and
``run(args) -> int``. Bad user input raises :class:`nce.cli._table.InputError` (or ``ValueError``
from the library, or ``OSError`` for a path that cannot be read or written): the message goes to
stderr and the exit code is 2. A training run that diverges (:class:`nce.DivergenceError`) ends
with one line naming the flag to change, and exit code 1. Ctrl-C ends a command with one line,
``interrupted``, and exit code 130 (128 + SIGINT), as a shell reports it; outputs are written
whole or not at all, so an interrupted command leaves no partial file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from nce._divergence import DivergenceError
from nce.cli._table import InputError

COMMANDS = {
    "align": "CLIP or SigLIP in miniature: align digit images with captions, classify zero-shot",
    "demo": "run the library's main jobs on built-in data",
    "density": "fit an unnormalized density to a table by NCE, or score rows with one",
    "lm": "train, evaluate or sample a word-level language model with an NCE output layer",
    "pretrain": "contrastive pretraining (SimCLR / MoCo) judged by frozen-feature probes",
    "study": "run one of the contrastive-learning studies on digits",
    "retrieve": "train, evaluate or query a two-tower text retriever (built-in: English-Spanish)",
    "mi": "estimate the mutual information between two groups of columns",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nce", description="Noise-contrastive estimation and its family."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"nce.cli.{name}")
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"nce.cli.{args.command}")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return module.run(args)
    except DivergenceError as err:
        flag = None if err.option is None else "--" + err.option.replace("_", "-")
        print(f"nce {args.command}: error: {err.describe(flag)}", file=sys.stderr)
        return 1
    except (InputError, ValueError, TypeError, OSError) as err:
        print(f"nce {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nce {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line_warning(command: str):
    """Warnings (a fit that stopped without converging, a capped estimate) as one line each on
    stderr, ``nce CMD: warning: ...``, instead of Python's file-and-line form."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"nce {command}: warning: {message}", file=sys.stderr if file is None else file)

    return show


if __name__ == "__main__":
    sys.exit(main())
