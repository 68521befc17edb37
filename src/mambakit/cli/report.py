"""``mambakit report``: gather the latest JSON results into ``docs/RESULTS.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mambakit.report import RESULTS_DIRS


def _report(args: argparse.Namespace) -> int:
    from mambakit.report import build_report

    path = build_report(args.results, args.docs, carry_over=args.carry_over)
    print(f"wrote {path} (plots in {Path(args.docs) / 'img'})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit report [--results DIR] [--docs DIR]``."""
    parser = subparsers.add_parser(
        "report", help="collect the latest results into docs/RESULTS.md with verdicts"
    )
    parser.add_argument(
        "--results", nargs="+", default=list(RESULTS_DIRS), metavar="DIR",
        help=f"folders of result JSON (default: {' '.join(RESULTS_DIRS)})",
    )  # fmt: skip
    parser.add_argument(
        "--no-carry-over", dest="carry_over", action="store_false",
        help="drop the sections whose JSON is missing instead of keeping them",
    )  # fmt: skip
    parser.add_argument("--docs", default="docs", metavar="DIR", help="default: docs")
    parser.set_defaults(func=_report)
