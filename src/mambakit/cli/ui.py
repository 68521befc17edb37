"""``mambakit ui``: the web UI (drum machine, timbre transfer, music continuation).

Needs the ``[ui]`` extra (gradio). Binds to loopback unless ``--host`` says otherwise;
beyond loopback it needs ``--runs-root`` (what the run boxes may load).
"""

from __future__ import annotations

import argparse


def _ui(args: argparse.Namespace) -> int:
    try:
        from mambakit.app.ui import LOOPBACK, launch
    except ImportError as exc:  # gradio missing: the one-line error of cli.main
        raise RuntimeError(f"the web UI needs gradio: pip install 'mambakit[ui]' ({exc})") from exc
    if args.host not in LOOPBACK and args.runs_root:
        print(f"mambakit ui: warning: serving on {args.host}, reachable from other machines")
    launch(
        args.drums, args.timbre, args.lm, host=args.host, port=args.port, runs_root=args.runs_root
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit ui [--drums RUN] [--timbre RUN] [--lm RUN] [--host H] [--port P]``."""
    parser = subparsers.add_parser("ui", help="start the web UI (needs the [ui] extra)")
    parser.add_argument(
        "--drums", metavar="RUN", help="drum run (default: the packaged gm-drums model)"
    )
    parser.add_argument(
        "--timbre", metavar="RUN", help="timbre-transfer run (default: the packaged gm-timbre)"
    )
    parser.add_argument("--lm", metavar="RUN", help="music LM run")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--runs-root", metavar="DIR",
        help="the only folder the page's run boxes may load from (needed beyond loopback)",
    )  # fmt: skip
    parser.set_defaults(func=_ui)
