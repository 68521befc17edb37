"""``mambakit timbre ...`` (transfer, train, dataset-from-sf2), ``mambakit eval timbre`` and
``mambakit bench timbre``.

A thin client of :mod:`mambakit.timbre`; heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from mambakit.cli.common import (
    add_device_argument,
    add_json_argument,
    add_train_arguments,
    int_list,
    print_result,
    same_named,
    train_fields,
)

DEFAULT_BENCH_JSON = "out/bench/timbre.json"


def _alpha(text: str | None) -> float | tuple[float, ...] | None:
    """``"1,1,1,1,0.2"`` -> a 5-tuple, ``"0.5"`` -> 0.5 for every level."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as e:
        raise ValueError(f"--alpha: expected numbers like 1,1,1,1,0.2, got {text!r}") from e
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"--alpha: strengths must lie in [0, 1], got {text!r}")
    return values[0] if len(values) == 1 else values


def _audio_errors_as_value_errors(func):
    """The CLI prints ValueError as one clear line; AudioError already names the file."""

    def wrapper(args: argparse.Namespace) -> int:
        from mambakit.dsp import AudioError

        try:
            return func(args)
        except AudioError as e:
            raise ValueError(str(e)) from e

    return wrapper


@_audio_errors_as_value_errors
def _transfer(args: argparse.Namespace) -> int:
    from mambakit.dsp import save_audio
    from mambakit.timbre.pipeline import DEFAULT_MODEL, TimbreTransfer

    tt = TimbreTransfer.from_pretrained(args.run or DEFAULT_MODEL, device=args.device)
    if args.engine is not None and args.engine != tt.engine:
        raise ValueError(
            f"--engine {args.engine}: {args.run or DEFAULT_MODEL} holds a {tt.engine} model"
        )
    with warnings.catch_warnings():  # the report carries them; printed once below
        warnings.simplefilter("ignore")
        audio, sr = tt.transfer(args.content, list(args.style), alpha=_alpha(args.alpha))
    report = tt.last_report
    for note in report.conversions:
        print(f"note: {note}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_audio(args.output, audio[0], sr)
    print(
        f"wrote {args.output}: {sr} Hz, {audio.shape[-1]} samples ({report.seconds:.2f} s), "
        f"{report.chunks} chunk(s), {report.times_real_time:.1f}x real time"
    )
    clips = f" from {len(args.style)} clips" if len(args.style) > 1 else ""
    if report.style_notes > 1:
        print(f"style: {report.style_notes} notes{clips}, a palette (nearer pitches weigh more)")
    elif tt.engine == "scaffold":
        print("tip: a style of several notes of the instrument (a scale, or one file per note) "
              "moves the timbre further than one note")  # fmt: skip
    return 0


def _train_scaffold(args: argparse.Namespace) -> int:
    import dataclasses

    from mambakit.timbre.scaffold_training import DEFAULT_TRAIN, ScaffoldData, train_scaffold

    if args.preset not in ("tiny", "small"):
        raise ValueError(f"--preset {args.preset}: the scaffold engine has tiny and small")
    if args.gradient_checkpointing or args.bidirectional:
        raise ValueError(
            "--gradient-checkpointing and --bidirectional are U-Net options; the scaffold "
            "engine is causal (that is what makes chunked transfer seamless) and small"
        )
    train = dataclasses.replace(
        DEFAULT_TRAIN,
        max_steps=args.steps if args.steps is not None else DEFAULT_TRAIN.max_steps,
        max_minutes=args.minutes,
        lr=args.lr if args.lr is not None else DEFAULT_TRAIN.lr,
        **train_fields(args),
    )
    pairs = ScaffoldData(
        reconstruction_ratio=args.reconstruction_ratio, segment_seconds=args.segment_seconds,
        style_notes=args.style_notes,
    )  # fmt: skip
    config = args.preset
    if args.scaffold_set:
        from mambakit.timbre.scaffold import ScaffoldConfig

        config = ScaffoldConfig.preset(args.preset, **_config_overrides(args.scaffold_set))
    summary = train_scaffold(
        args.data, args.out, config, train, pairs, spectrum_weight=args.spectrum_weight,
        mfcc_weight=args.mfcc_weight, init_from=args.init_from,
    )  # fmt: skip
    print(summary.describe(args.out))
    return 0


def _config_overrides(items: list[str]) -> dict[str, Any]:
    """``["n_noise_bands=65", "embed_dim=128"]`` -> ScaffoldConfig fields, each value read
    as the field's own type (int, float or bool)."""
    import dataclasses

    from mambakit.timbre.scaffold import ScaffoldConfig

    fields = {f.name: f for f in dataclasses.fields(ScaffoldConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, FIELD one of {sorted(fields)}")
        kind = type(getattr(ScaffoldConfig(), key))
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {item!r}: {key} is true or false")
            out[key] = value.lower() in ("true", "1")
        else:
            out[key] = kind(value)
    return out


@_audio_errors_as_value_errors
def _train(args: argparse.Namespace) -> int:
    from mambakit.timbre.training import UNetTraining, timbre_train_config, train_timbre

    if args.engine == "scaffold":
        return _train_scaffold(args)
    if args.style_notes != 1:
        raise ValueError("--style-notes is a scaffold option; the U-Net trains on one style note")
    if args.lr is None:
        args.lr = 2e-4
    if args.steps is None and args.minutes is None:
        args.minutes = 10.0
    train = timbre_train_config(args.steps, args.minutes, lr=args.lr, **train_fields(args))
    options = UNetTraining(
        objective=args.objective, reconstruction_ratio=args.reconstruction_ratio,
        segment_seconds=args.segment_seconds, adversarial=not args.no_gan,
        gradient_checkpointing=args.gradient_checkpointing,
        bidirectional=True if args.bidirectional else None,
    )  # fmt: skip
    summary = train_timbre(args.data, args.out, train, args.preset, options)
    print(summary.describe(args.out))
    return 0


def _dataset_from_sf2(args: argparse.Namespace) -> int:
    from mambakit.timbre.data import render_sf2_dataset

    passed = ("programs", "pitches", "velocities", "seconds", "sample_rate")
    out = render_sf2_dataset(args.font, args.out, **same_named(args, *passed))
    count = len(json.loads((out / "examples.json").read_text()))
    print(f"wrote {count} notes to {out} (NSynth layout: examples.json + audio/)")
    return 0


def _procedural(args: argparse.Namespace) -> int:
    from mambakit.timbre.data import make_procedural_instruments

    out = make_procedural_instruments(
        args.out,
        n_instruments=args.instruments,
        pitches=args.pitches,
        seconds=args.seconds,
    )
    print(f"wrote {args.instruments} procedural instruments to {out}")
    return 0


@_audio_errors_as_value_errors
def _eval(args: argparse.Namespace) -> int:
    from mambakit.bench.common import result_metadata, write_json
    from mambakit.eval.claims import timbre_engine_claim, timbre_transfer_claim
    from mambakit.eval.timbre import evaluate_runs, evaluation_markdown

    results = evaluate_runs(
        args.runs, args.pairs, n_pairs=args.n, alpha=_alpha(args.alpha), device=args.device,
        speed_seconds=args.speed_seconds, style_notes=args.style_notes,
        style_clips=args.style_clips,
    )  # fmt: skip
    results["meta"] = result_metadata(device=args.device)
    print(evaluation_markdown(results))
    engines = {row.get("engine") for row in results["runs"]}
    print()
    for rule, applies in ((timbre_transfer_claim, "unet" in engines),
                          (timbre_engine_claim, "scaffold" in engines)):  # fmt: skip
        if applies:
            verdict = rule(results)
            print(f"- {verdict.claim}: {verdict.verdict} ({verdict.why})")
    if args.json:
        print(f"wrote {write_json(args.json, results)}")
    else:
        print(json.dumps(results, indent=2))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from mambakit.bench.timbre import run_timbre_bench, timbre_bench_markdown

    presets = [p.strip() for p in args.presets.split(",") if p.strip()] if args.presets else None
    passed = ("quick", "clip_seconds", "transfer_seconds", "repeats", "device")
    result = run_timbre_bench(presets=presets, **same_named(args, *passed))
    return print_result(timbre_bench_markdown(result), result, args.json)


def setup_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny and base only, one repeat")
    parser.add_argument("--presets", help="comma-separated subset of tiny,small,base")
    parser.add_argument(
        "--clip-seconds",
        type=float,
        default=2.1,
        help="clip for the memory and one-chunk speed (default 2.1 s, the seed's)",
    )
    parser.add_argument(
        "--transfer-seconds",
        type=float,
        default=10.0,
        help="content clip for the chunked transfer speed (default 10 s)",
    )
    parser.add_argument("--repeats", type=int, help="timed calls (default 3, --quick 1)")
    add_json_argument(parser, DEFAULT_BENCH_JSON)
    add_device_argument(parser)
    parser.set_defaults(func=_bench)


def register(subparsers: argparse._SubParsersAction) -> None:
    timbre = subparsers.add_parser("timbre", help="MambaMuse one-shot timbre transfer")
    sub = timbre.add_subparsers(dest="timbre_command", metavar="COMMAND")

    t = sub.add_parser(
        "transfer", help="play content.wav with the timbre of style.wav (or of several files)"
    )
    t.add_argument("content", type=Path, help="audio with the notes to keep (any length/rate)")
    t.add_argument("style", type=Path, nargs="+",
                   help="audio with the timbre to take (any length/rate); several files of "
                   "one instrument (e.g. one per note) make one palette: more notes, closer "
                   "timbre")  # fmt: skip
    t.add_argument(
        "--run", type=Path, help="trained run / checkpoint folder (default: the shipped gm-timbre)"
    )
    t.add_argument(
        "--engine",
        choices=("unet", "scaffold"),
        help="check that the run holds this engine (the run decides which runs)",
    )
    t.add_argument("--alpha", help="unet: AdaIN strengths, one value or 5 (skips "
                   "fine->coarse, bottleneck), e.g. 1,1,1,1,0.2; scaffold: one style strength "
                   "in [0, 1] (default 1)")  # fmt: skip
    t.add_argument("-o", "--output", type=Path, required=True, help="output WAV")
    add_device_argument(t)
    t.set_defaults(func=_transfer)

    p = sub.add_parser("train", help="train on an NSynth-layout folder of paired notes")
    p.add_argument("data", type=Path, help="folder with examples.json + audio/")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument(
        "--objective",
        default="transfer",
        choices=("transfer", "reconstruction"),
        help="transfer (default) or the seed's self-reconstruction baseline",
    )
    p.add_argument("--reconstruction-ratio", type=float, default=0.2,
                   help="share of self-reconstruction pairs in the transfer objective")  # fmt: skip
    p.add_argument(
        "--engine", default="unet", choices=("unet", "scaffold"),
        help="unet: the MambaMuse U-Net; scaffold: f0 + loudness -> Mamba decoder -> "
        "harmonic-plus-noise synthesiser",
    )  # fmt: skip
    p.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    p.add_argument("--bidirectional", action="store_true", help="bidirectional Mamba blocks")
    add_train_arguments(
        p, "budget (unet default: 10 minutes; scaffold: 1500 steps)",
        steps_help="optimizer steps (the cosine's length)",
    )  # fmt: skip
    p.add_argument(
        "--segment-seconds", type=float, help="training crop length (default: the preset's 2.1 s)"
    )
    p.add_argument("--lr", type=float, help="peak learning rate (unet 2e-4, scaffold 1e-3)")
    p.add_argument(
        "--no-gan", action="store_true",
        help="mel + STFT losses only (no discriminators): about half the cost of a step",
    )  # fmt: skip
    p.add_argument(
        "--gradient-checkpointing", action="store_true",
        help="recompute the Mamba blocks in backward: about half the memory, ~20%% slower",
    )  # fmt: skip
    p.add_argument("--spectrum-weight", type=float, default=0.0,
                   help="scaffold: weight of the long-term (time-averaged) log-mel spectrum "
                   "loss term (default 0: off)")  # fmt: skip
    p.add_argument("--mfcc-weight", type=float, default=0.0,
                   help="scaffold: weight of the MFCC-statistics distance term, what eval "
                   "timbre's style gain measures (default 0: off)")  # fmt: skip
    p.add_argument("--init-from", help="scaffold: start from this run's weights (fine-tune)")
    p.add_argument("--style-notes", type=int, default=1,
                   help="scaffold: style clips of this many notes of the target instrument, "
                   "a scale (default 1)")  # fmt: skip
    p.add_argument("--set", dest="scaffold_set", action="append", default=[],
                   metavar="FIELD=VALUE",
                   help="scaffold: override a ScaffoldConfig field of the preset, e.g. "
                   "n_noise_bands=65 (repeatable)")  # fmt: skip
    p.set_defaults(func=_train)

    d = sub.add_parser("dataset-from-sf2", help="render a SoundFont into an NSynth-layout set")
    d.add_argument("font", type=Path, help="SoundFont (.sf2)")
    d.add_argument("--out", type=Path, required=True, help="folder to write")
    d.add_argument("--programs", type=int_list, default="0,24,40,56,65,73",
                   help="GM programs, e.g. 0,24,40")  # fmt: skip
    d.add_argument("--pitches", type=int_list, default="48-72:2",
                   help="MIDI pitches, e.g. 48-72:2 or 60,64")  # fmt: skip
    d.add_argument("--velocities", type=int_list, default="100",
                   help="MIDI velocities, e.g. 75,100,127")  # fmt: skip
    d.add_argument("--seconds", type=float, default=4.0, help="note length kept")
    d.add_argument("--sample-rate", type=int, default=16000)
    d.set_defaults(func=_dataset_from_sf2)

    g = sub.add_parser("dataset-procedural", help="write a small set of procedural instruments")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--instruments", type=int, default=6)
    g.add_argument("--pitches", type=int_list, default="48-72:3")
    g.add_argument("--seconds", type=float, default=3.0)
    g.set_defaults(func=_procedural)

    timbre.set_defaults(func=lambda args: timbre.print_help() or 2)


def register_eval(eval_subparsers: argparse._SubParsersAction) -> None:
    e = eval_subparsers.add_parser("timbre", help="compare timbre-transfer runs on held-out pairs")
    e.add_argument("runs", type=Path, nargs="+",
                   help="run folders (either engine) or packaged names (gm-timbre)")  # fmt: skip
    e.add_argument("--pairs", type=Path, required=True, help="held-out NSynth-layout folder")
    e.add_argument("-n", type=int, default=32, help="number of held-out pairs")
    e.add_argument("--alpha", help="AdaIN strengths, as for `timbre transfer`")
    e.add_argument("--speed-seconds", type=float, default=10.0,
                   help="time each run on this much content, side by side (0: skip)")  # fmt: skip
    e.add_argument("--style-notes", type=int, default=1,
                   help="style clips of this many notes of the target instrument, a scale "
                        "(default 1: one note)")  # fmt: skip
    e.add_argument("--style-clips", action="store_true",
                   help="with --style-notes K: give the K notes as K clips (as several files "
                        "are), not end to end in one")  # fmt: skip
    e.add_argument("--json", type=Path, help="also write the results here")
    add_device_argument(e)
    e.set_defaults(func=_eval)
