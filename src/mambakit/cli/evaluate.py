"""``mambakit eval drums``: control adherence, tag accuracy, diversity, memorisation."""

from __future__ import annotations

import argparse
from pathlib import Path


def _eval_drums(args: argparse.Namespace) -> int:
    from mambakit.drums import DrumSynth
    from mambakit.drums.data import load_corpus
    from mambakit.eval.drums import evaluate_synth, save_report, scores_markdown

    synth = DrumSynth.from_pretrained(args.run)
    real = load_corpus(args.real)
    heldout = load_corpus(args.heldout) if args.heldout else None
    scores = evaluate_synth(synth, real, heldout, limit=args.limit, steps=args.steps)
    out = Path(args.out or Path(args.run) / "eval")
    md = save_report(scores, out, {"run": str(args.run), "real": str(args.real)})
    print(scores_markdown(scores))
    print(f"\nreport: {md} (and eval_drums.json)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """No top-level command; this module only adds ``eval`` subcommands."""


def register_eval(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser("drums", help="how well a drum run follows its controls")
    p.add_argument("run", type=Path)
    p.add_argument("--real", type=Path, required=True, help="folder of real one-shots")
    p.add_argument("--heldout", type=Path, help="clips the model never saw (requests)")
    p.add_argument("--limit", type=int, default=40, help="at most this many requests")
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--out", type=Path, help="report folder (default RUN/eval)")
    p.set_defaults(func=_eval_drums)
