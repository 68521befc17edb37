"""Arguments and conventions shared by every ``mambakit`` command.

One error convention: a handler raises :class:`UserError` (or a ``ValueError``,
``FileNotFoundError``, a :class:`~mambakit.pretrained.CheckpointError`, ...) for a user's
mistake, and :func:`mambakit.cli.main` prints ``mambakit: error: <message>`` and exits with
:data:`USAGE_ERROR`, the status argparse uses for a bad command line; never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

USAGE_ERROR = 2

# An option value such as ``-5ms`` or ``-12`` that argparse would read as an option.
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


class UserError(Exception):
    """A mistake of the user's (a bad file, option or combination), worded for the terminal."""


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: CPU unless asked (never CUDA by default)."""
    parser.add_argument(
        "--device", default=None,
        help="torch device: cpu (default), cuda, cuda:1, or auto (CUDA when available)",
    )  # fmt: skip


def add_json_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--json PATH``: where a command saves its results."""
    parser.add_argument(
        "--json", default=default, metavar="PATH",
        help=f"where to save the results (default: {default})",
    )  # fmt: skip


def add_train_arguments(
    parser: argparse.ArgumentParser,
    budget: str,
    *,
    steps: int | None = None,
    steps_help: str = "optimizer steps",
    resume: bool = True,
) -> None:
    """How a ``train`` command is budgeted and seeded, declared once: a ``budget`` group of
    ``--minutes`` and ``--steps`` (default ``steps``), ``--batch-size``, ``--seed``,
    ``--device`` and, with ``resume``, ``--resume``. :func:`train_fields` reads them back."""
    group = parser.add_argument_group(budget)
    group.add_argument("--minutes", type=float, help="wall-clock budget")
    group.add_argument("--steps", type=int, default=steps, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=8)
    if resume:
        parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0)


def train_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~mambakit.train.TrainConfig` fields of :func:`add_train_arguments`
    other than the budget (``batch_size``, ``seed``, ``device`` and ``resume`` when the
    command declares it), for the command's own config builder."""
    fields = {"batch_size": args.batch_size, "seed": args.seed, "device": args.device}
    if hasattr(args, "resume"):
        fields["resume"] = args.resume
    return fields


def int_list(text: str) -> tuple[int, ...]:
    """``type=`` of a list option (``"0,24,40"``, ``"48-72:2"``, as
    :func:`mambakit.utils.parse_int_list`): a malformed list is a usage error naming the
    option, before any work starts."""
    from mambakit.utils import parse_int_list

    try:
        return parse_int_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def same_named(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options ``names`` of a command line as keyword arguments of the same names:
    ``api(**same_named(args, "seed", "steps"))`` says that these options pass through to
    the API unchanged (an option that is parsed or renamed on the way is written out)."""
    return {name: getattr(args, name) for name in names}


def print_result(markdown: str, payload: Any, json_path: str | os.PathLike[str] | None) -> int:
    """How a command reports a result: its Markdown on stdout, then its JSON written to
    ``json_path`` (when given; folders created) and where it went. Returns exit status 0."""
    from mambakit.bench.common import write_json

    print(markdown)
    if json_path:
        print(f"\nsaved {write_json(json_path, payload)}")
    return 0


def join_negative_values(argv: list[str]) -> list[str]:
    """``["--attack", "-5ms"]`` -> ``["--attack=-5ms"]``, so argparse reads ``-5ms`` as the
    option's value (and the command can say that a negative attack is not allowed) instead
    of as an unknown option. No option of mambakit's is spelt with a digit after the dash."""
    out: list[str] = []
    for token in argv:
        previous = out[-1] if out else ""
        if (
            _NEGATIVE_VALUE.match(token)
            and previous.startswith("--")
            and "=" not in previous
            and previous != "--"
        ):
            out[-1] = f"{previous}={token}"
        else:
            out.append(token)
    return out
