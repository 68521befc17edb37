"""``mambakit report``: gather the latest JSON results into ``docs/RESULTS.md``."""

from __future__ import annotations

import argparse
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    from mambakit.report import build_report

    path = build_report(args.results, args.docs)
    print(f"wrote {path} (plots in {Path(args.docs) / 'img'})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit report [--results DIR] [--docs DIR]``."""
    parser = subparsers.add_parser(
        "report", help="collect the latest results into docs/RESULTS.md with verdicts"
    )
    parser.add_argument("--results", default="out", metavar="DIR", help="default: out")
    parser.add_argument("--docs", default="docs", metavar="DIR", help="default: docs")
    parser.set_defaults(func=_report)
