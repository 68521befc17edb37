"""``mambakit eval drums | ablations | early-training``: how well drum runs follow their
controls, the seed's ablation study, and quality from the first batches."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mambakit.cli.common import add_device_argument


def _training_summary(run: Path) -> dict[str, float] | None:
    """Steps and seconds of a run, from the last line of its ``metrics.jsonl``."""
    from mambakit.train import last_logged

    last = last_logged(run)
    return None if last is None else {"steps": last.get("step"), "seconds": last.get("time")}


def _eval_drums(args: argparse.Namespace) -> int:
    from mambakit.drums import DrumSynth
    from mambakit.drums.data import load_corpus
    from mambakit.eval.drum_tagger import kit_cross_validation
    from mambakit.eval.drums import (
        evaluate_synth,
        generation_seconds,
        per_tag_markdown,
        save_report,
        scores_markdown,
    )

    synth = DrumSynth.from_pretrained(args.run)
    real = load_corpus(args.real)
    heldout = load_corpus(args.heldout) if args.heldout else None
    out = Path(args.out or Path(args.run) / "eval")
    scores = evaluate_synth(
        synth, real, heldout, limit=args.limit, steps=args.steps, sheet=out / "sheet.png",
        cfg=args.cfg,
    )  # fmt: skip
    from mambakit.bench.common import result_metadata

    extra = {
        "kind": "eval-drums",
        "meta": result_metadata(),
        "run": str(args.run),
        "real": str(args.real),
        "heldout": str(args.heldout) if args.heldout else None,
        "cfg": args.cfg if args.cfg is not None else {t: d.cfg for t, d in synth.defaults.items()},
        "training": _training_summary(Path(args.run)),
        "tag_classifier": kit_cross_validation(real, args.real),
        "speed": {f"pads_{n}_s": generation_seconds(synth, n) for n in (1, 16)}
        if args.speed
        else None,
    }
    md = save_report(scores, out, extra)
    print(scores_markdown(scores) + "\n\n" + per_tag_markdown(scores))
    if extra["speed"]:
        print("\ngeneration: " + ", ".join(f"{k} {v:.2f} s" for k, v in extra["speed"].items()))
    print(f"\nreport: {md} (and eval_drums.json, sheet.png)")
    return 0


def _verdicts(*verdicts) -> None:
    for v in verdicts:
        print(f"- {v.claim}: {v.verdict} ({v.why})")


def _eval_ablations(args: argparse.Namespace) -> int:
    from mambakit.eval.ablations import ablations_markdown, run_ablations
    from mambakit.eval.claims import full_res_claim, no_adsr_claim, no_sine_claim

    if args.budget_minutes is None and args.budget_steps is None:
        raise ValueError("give --budget-minutes M (or --budget-steps N, or both)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    result = run_ablations(
        args.data, args.out, _study_settings(args), minutes=args.budget_minutes,
        steps=args.budget_steps, variants=variants,
    )  # fmt: skip
    print(ablations_markdown(result) + "\n")
    _verdicts(no_sine_claim(result), no_adsr_claim(result), full_res_claim(result))
    print(f"\nsaved {args.out}/ablations.json, ablations.md, figure4.png")
    return 0


def _eval_early(args: argparse.Namespace) -> int:
    from mambakit.eval.claims import coherent_claim, first_batch_claim
    from mambakit.eval.early import DEFAULT_BATCHES, early_markdown, run_early_training

    batches = DEFAULT_BATCHES if args.batches is None else [int(b) for b in args.batches.split(",")]
    result = run_early_training(args.data, args.out, _study_settings(args), batches=batches)
    print(early_markdown(result) + "\n")
    _verdicts(first_batch_claim(result), coherent_claim(result))
    print(f"\nsaved {args.out}/early.json, early.md, early.png")
    return 0


def _study_settings(args: argparse.Namespace) -> Any:
    """The :class:`~mambakit.eval.ablations.StudySettings` of the options of :func:`_add_common`."""
    from mambakit.eval.ablations import StudySettings

    return StudySettings(
        preset=args.preset, heldout=args.heldout, batch_size=args.batch_size, limit=args.limit,
        gen_steps=args.gen_steps, seed=args.seed, device=args.device,
    )  # fmt: skip


def _add_common(p: argparse.ArgumentParser, batch_size: int) -> None:
    """Options shared by the training evaluations."""
    p.add_argument("data", type=Path, help="folder of one-shots to train on")
    p.add_argument("--heldout", type=Path, help="clips the models never saw (requests)")
    p.add_argument("--preset", default="tiny", choices=("tiny", "small", "base"))
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"default {batch_size}")
    p.add_argument("--limit", type=int, default=24, help="requests per evaluation (default 24)")
    p.add_argument("--gen-steps", type=int, help="denoising steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    """No top-level command; this module only adds ``eval`` subcommands."""


def register_eval(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser("drums", help="how well a drum run follows its controls")
    p.add_argument("run", type=Path)
    p.add_argument("--real", type=Path, required=True, help="folder of real one-shots")
    p.add_argument("--heldout", type=Path, help="clips the model never saw (requests)")
    p.add_argument("--limit", type=int, default=40, help="at most this many requests")
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument(
        "--cfg", type=float, default=None, help="guidance scale (1 = off; default: the model's)"
    )
    p.add_argument("--out", type=Path, help="report folder (default RUN/eval)")
    p.add_argument(
        "--speed", action="store_true", help="also time 1 and 16 pads (median of 3, this machine)"
    )
    p.set_defaults(func=_eval_drums)

    p = eval_sub.add_parser(
        "ablations", help="full / no_sine / no_adsr / full_res at equal budget (seed Figure 4)"
    )
    _add_common(p, batch_size=8)
    p.add_argument("--budget-minutes", type=float, help="training minutes per variant")
    p.add_argument("--budget-steps", type=int, help="training steps per variant")
    p.add_argument(
        "--variants", default="full,no_sine,no_adsr,full_res", help="comma-separated subset"
    )
    p.add_argument("--out", type=Path, default=Path("out/ablations"), help="default out/ablations")
    p.set_defaults(func=_eval_ablations)

    p = eval_sub.add_parser(
        "early-training", help="samples after 1, 2, 5, ... batches of 2, vs the scaffold"
    )
    _add_common(p, batch_size=2)
    p.add_argument("--batches", help="comma-separated batch counts (default 1,2,5,10,50,200)")
    p.add_argument("--out", type=Path, default=Path("out/early"), help="default out/early")
    p.set_defaults(func=_eval_early)
