"""Entry point of the ``nce`` command."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nce", description="Noise-contrastive estimation and its family."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the library's main jobs on built-in data")
    demo.add_argument("--out", default="demo-output", help="folder for the PNG and JSON outputs")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from nce.cli import demo

        return demo.main(args.out, progress=not args.no_progress)
    return 2


if __name__ == "__main__":
    sys.exit(main())
