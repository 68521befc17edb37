"""``mambakit`` command line: a thin client of the public Python API.

Each command family lives in its own module (``cli/drums.py``, ``cli/lm.py``, ...)
exposing ``register(subparsers)``; a module may also expose
``register_eval(eval_subparsers)`` to add ``mambakit eval <name>``. Handlers import
heavy modules lazily so ``mambakit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mambakit import __version__
from mambakit.cli.common import USAGE_ERROR, UserError, join_negative_values

# Command modules, in --help order. A module that fails to import (missing
# optional dependency) must not break the other commands.
_MODULES = ("drums", "lm", "timbre", "bench", "demo", "evaluate", "ui", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mambakit", description="State-space models for audio generation."
    )
    parser.add_argument("--version", action="version", version=f"mambakit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    eval_parser = sub.add_parser("eval", help="evaluate runs (drums, timbre, lm, ...)")
    eval_sub = eval_parser.add_subparsers(dest="eval_command", metavar="WHAT")
    for name in _MODULES:
        try:
            module = importlib.import_module(f"mambakit.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"mambakit.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
        if hasattr(module, "register_eval"):
            module.register_eval(eval_sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user asked for something impossible, not a bug."""
    from mambakit.dsp.io import AudioError
    from mambakit.pretrained import CheckpointError

    return (UserError, ValueError, FileNotFoundError, CheckpointError, AudioError, RuntimeError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return USAGE_ERROR
    try:
        result = handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        # User errors (bad file, bad option, incompatible checkpoint): one clear line.
        if getattr(args, "debug", False):
            raise
        print(f"mambakit: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
