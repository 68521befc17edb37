"""``mambakit bench <name>``: benchmarks that print a Markdown table and save JSON.

Each benchmark is one sub-command added with :func:`add_bench`. ``ssm`` is built in;
another command module adds its own bench at import time, e.g. in ``cli/drums.py``::

    from mambakit.cli.bench import add_bench

    def _setup_drums_bench(parser):        # add arguments, then set the handler
        parser.add_argument("--steps", type=int, default=10)
        parser.set_defaults(func=_bench_drums)   # handler(args) -> int

    add_bench("drums", "drum model speed and memory", _setup_drums_bench)

A bench added after ``mambakit bench`` was registered is attached to it straight away,
so the import order of the command modules does not matter.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

SetupFn = Callable[[argparse.ArgumentParser], None]

DEFAULT_SSM_JSON = "out/bench/ssm.json"


class _BenchRegistry:
    """The named benches and, once ``register`` ran, the parser they hang from."""

    def __init__(self) -> None:
        self.benches: dict[str, tuple[str, SetupFn]] = {}
        self.subparsers: argparse._SubParsersAction | None = None

    def add(self, name: str, help: str, setup_fn: SetupFn) -> None:
        if name in self.benches:
            raise ValueError(f"a bench named {name!r} is already registered")
        self.benches[name] = (help, setup_fn)
        if self.subparsers is not None:
            self._attach(name)

    def _attach(self, name: str) -> None:
        help, setup_fn = self.benches[name]
        setup_fn(self.subparsers.add_parser(name, help=help, description=help))


_REGISTRY = _BenchRegistry()


def add_bench(name: str, help: str, setup_fn: SetupFn) -> None:
    """Add ``mambakit bench <name>``; ``setup_fn(parser)`` adds arguments and sets ``func``."""
    _REGISTRY.add(name, help, setup_fn)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, shared by the benches: CPU unless asked (never CUDA by default)."""
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)"
    )


def add_json_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--json PATH``, shared by the benches: where the results are saved."""
    parser.add_argument(
        "--json", default=default, metavar="PATH",
        help=f"where to save the results (default: {default})",
    )  # fmt: skip


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
        print(f"mambakit: error: --repeats must be >= 1, got {args.repeats}", file=sys.stderr)
        return 2
    print(run_ssm(args.quick, args.json, args.device, args.repeats, not args.no_e2e))
    print(f"\nsaved {args.json}")
    return 0


def _setup_ssm(parser: argparse.ArgumentParser) -> None:
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


add_bench(
    "ssm",
    "Mamba2 / Mamba layers vs transformers' Mamba2Mixer, a naive loop and attention",
    _setup_ssm,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit bench`` and every bench added so far (later ones attach themselves)."""
    parser = subparsers.add_parser("bench", help="speed and memory benchmarks (JSON + table)")

    def print_benches(args: argparse.Namespace) -> int:  # `mambakit bench` with no name
        parser.print_help()
        return 2

    parser.set_defaults(func=print_benches)
    _REGISTRY.subparsers = parser.add_subparsers(dest="bench_command", metavar="BENCH")
    for name in _REGISTRY.benches:
        _REGISTRY._attach(name)


def _bench_drums(args: argparse.Namespace) -> int:
    from mambakit.bench.common import write_json
    from mambakit.bench.drums import drums_bench_markdown, run_drums_bench

    result = run_drums_bench(
        seconds=0.25 if args.quick else args.seconds, large_state_backward=args.all
    )
    print(drums_bench_markdown(result))
    print(f"\nsaved {write_json(args.json, result)}")
    return 0


def _setup_drums(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="0.25 s clips instead of --seconds")
    parser.add_argument("--seconds", type=float, default=1.0, help="clip length (default 1 s)")
    add_json_argument(parser, "out/bench/drums.json")
    parser.add_argument(
        "--all", action="store_true",
        help="also time forward+backward of the large-state model (many minutes on a CPU)",
    )  # fmt: skip
    parser.set_defaults(func=_bench_drums)


add_bench(
    "drums",
    "LogCascade vs full-rate bands vs one large-state Mamba2: time and memory; generation speed",
    _setup_drums,
)
