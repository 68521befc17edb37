"""``mambakit bench <name>``: benchmarks that print a Markdown table and save JSON.

Every bench is one entry of :data:`BENCHES`: its help line and the ``"module:function"``
that adds its arguments and sets its handler (``handler(args) -> int``), e.g.
``mambakit.cli.timbre:setup_bench``. Adding a bench is adding a line there.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from mambakit.cli.common import UserError, add_device_argument, add_json_argument, print_result

SetupFn = Callable[[argparse.ArgumentParser], None]

DEFAULT_SSM_JSON = "out/bench/ssm.json"

#: Every bench: name -> (help, ``"module:function"`` adding its arguments and handler).
#: Listed here rather than registered by importing the command modules, so what
#: ``mambakit bench`` offers does not depend on what was imported before.
BENCHES: dict[str, tuple[str, str]] = {
    "ssm": (
        "Mamba2 / Mamba layers vs transformers' Mamba2Mixer, a naive loop and attention",
        "mambakit.cli.bench:setup_ssm",
    ),
    "drums": (
        "LogCascade vs full-rate bands vs one large-state Mamba2: time and memory; "
        "generation speed",
        "mambakit.cli.bench:setup_drums",
    ),
    "timbre": (
        "MambaMuse presets: parameters, fwd+bwd and inference memory, transfer speed (x real time)",
        "mambakit.cli.timbre:setup_bench",
    ),
    "lm": (
        "LM decode speed (tokens/s) and cache memory vs context length "
        "(same as `mambakit lm bench`)",
        "mambakit.cli.lm:setup_bench",
    ),
}


def bench_setup(name: str) -> SetupFn:
    """The argument set-up of bench ``name`` (imported from its command module)."""
    module, function = BENCHES[name][1].split(":")
    return getattr(importlib.import_module(module), function)


def run_ssm(
    quick: bool,
    json_path: str,
    device: str,
    repeats: int | None = None,
    end_to_end: bool = True,
) -> str:
    """Run the SSM layer bench, save JSON to ``json_path``; returns the Markdown table."""
    from mambakit.bench.ssm import format_ssm_table, run_ssm_bench

    result = run_ssm_bench(
        quick=quick, json_path=json_path, device=device, repeats=repeats, end_to_end=end_to_end
    )
    return format_ssm_table(result)


def _bench_ssm(args: argparse.Namespace) -> int:
    if args.repeats is not None and args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    print(run_ssm(args.quick, args.json, args.device, args.repeats, not args.no_e2e))
    print(f"\nsaved {args.json}")
    return 0


def setup_ssm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="d_model 64 only, one repeat (1-2 min on 2 cores)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, metavar="N",
        help="timed calls per case (default: 1 with --quick, else 3); medians are reported",
    )  # fmt: skip
    parser.add_argument(
        "--no-e2e", action="store_true",
        help="skip the end-to-end drums training comparison (eager vs compiled; minutes)",
    )  # fmt: skip
    add_json_argument(parser, DEFAULT_SSM_JSON)
    add_device_argument(parser)
    parser.set_defaults(func=_bench_ssm)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit bench`` with every bench of :data:`BENCHES`."""
    parser = subparsers.add_parser("bench", help="speed and memory benchmarks (JSON + table)")

    def print_benches(args: argparse.Namespace) -> int:  # `mambakit bench` with no name
        parser.print_help()
        return 2

    parser.set_defaults(func=print_benches)
    benches = parser.add_subparsers(dest="bench_command", metavar="BENCH")
    for name, (help, _) in BENCHES.items():
        bench_setup(name)(benches.add_parser(name, help=help, description=help))


def _bench_drums(args: argparse.Namespace) -> int:
    from mambakit.bench.drums import drums_bench_markdown, run_drums_bench

    result = run_drums_bench(
        seconds=0.25 if args.quick else args.seconds, large_state_backward=args.all
    )
    return print_result(drums_bench_markdown(result), result, args.json)


def setup_drums(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="0.25 s clips instead of --seconds")
    parser.add_argument("--seconds", type=float, default=1.0, help="clip length (default 1 s)")
    add_json_argument(parser, "out/bench/drums.json")
    parser.add_argument(
        "--all", action="store_true",
        help="also time forward+backward of the large-state model (many minutes on a CPU)",
    )  # fmt: skip
    parser.set_defaults(func=_bench_drums)
