"""``mambakit demo``: one command that shows the toolkit working.

For now the demo is the quick SSM bench (``mambakit bench ssm --quick``); the drum
generator's demo replaces :func:`run_demo`, and nothing else here needs to change.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run_demo(out_dir: Path) -> None:
    """Run the demo, writing its files under ``out_dir`` and printing what it did."""
    from mambakit.cli.bench import run_ssm

    json_path = out_dir / "bench" / "ssm.json"
    print(run_ssm(quick=True, json_path=str(json_path), device="cpu"))
    print(f"\nresults saved to {json_path}")


def _demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit demo [--out DIR]``."""
    parser = subparsers.add_parser("demo", help="a quick end-to-end demonstration")
    parser.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out)")
    parser.set_defaults(func=_demo)
