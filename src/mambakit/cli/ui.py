"""``mambakit ui``: the web UI (drum machine, timbre transfer, music continuation).

Needs the ``[ui]`` extra (gradio). Binds to loopback unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse


def _ui(args: argparse.Namespace) -> int:
    try:
        from mambakit.app.ui import launch
    except ImportError as exc:  # gradio missing: the one-line error of cli.main
        raise RuntimeError(f"the web UI needs gradio: pip install 'mambakit[ui]' ({exc})") from exc
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"mambakit ui: warning: serving on {args.host}, reachable from other machines")
    launch(args.drums, args.timbre, args.lm, host=args.host, port=args.port)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mambakit ui [--drums RUN] [--timbre RUN] [--lm RUN] [--host H] [--port P]``."""
    parser = subparsers.add_parser("ui", help="start the web UI (needs the [ui] extra)")
    parser.add_argument(
        "--drums", metavar="RUN", help="drum run (default: the shipped gm-drums model)"
    )
    parser.add_argument("--timbre", metavar="RUN", help="timbre-transfer run")
    parser.add_argument("--lm", metavar="RUN", help="music LM run")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.set_defaults(func=_ui)
