"""``mambakit demo``: the drum synthesizer end to end (see :mod:`mambakit.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from mambakit.demo import run_demo

    run_demo(Path(args.out), minutes=args.minutes)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit demo [--out DIR] [--minutes M]`` (M: the fine-tuning budget)."""
    parser = subparsers.add_parser(
        "demo", help="a kit and a beat from the shipped model, then a short fine-tune"
    )
    parser.add_argument("--out", default="out/demo", metavar="DIR", help="default: out/demo")
    parser.add_argument("--minutes", type=float, default=1.0, help="fine-tuning budget")
    parser.set_defaults(func=_demo)
