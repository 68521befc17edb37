"""``mambakit drums ...``: train, generate, analyze, kit, render, dataset-from-sf2 (a thin
client of the API)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mambakit.cli.common import (
    add_device_argument,
    add_train_arguments,
    same_named,
    train_fields,
)


def _train(args: argparse.Namespace) -> int:
    from mambakit.drums.training import drums_train_config, train_drums

    if args.steps is None and args.minutes is None:
        args.minutes = 10.0
    train = drums_train_config(args.steps, args.minutes, **train_fields(args))
    summary = train_drums(
        args.data, args.out, train, preset=args.preset, tags_csv=args.tags_csv,
        workers=args.workers, init_from=args.init,
    )  # fmt: skip
    print(summary.describe(args.out))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from mambakit.drums import DrumSynth
    from mambakit.drums.pipeline import DEFAULT_MODEL
    from mambakit.dsp import ADSR, load_audio, resample, save_audio, to_mono
    from mambakit.utils import parse_seconds

    synth = DrumSynth.from_pretrained(args.run or DEFAULT_MODEL, device=args.device)
    tag = args.tag if args.tag or args.text else None
    adsr = None
    if any(v is not None for v in (args.attack, args.decay, args.sustain, args.release)):
        d = ADSR(0.002, 0.2, 0.0, 0.05)
        adsr = ADSR(
            attack_s=parse_seconds(args.attack) if args.attack else d.attack_s,
            decay_s=parse_seconds(args.decay) if args.decay else d.decay_s,
            sustain_level=float(args.sustain) if args.sustain is not None else d.sustain_level,
            release_s=parse_seconds(args.release) if args.release else d.release_s,
        )
    pitch_env = None
    if args.pitch_drop is not None:
        pitch_env = (float(args.pitch_drop), parse_seconds(args.pitch_decay))
    init = None
    if args.init:
        audio, sr = load_audio(args.init)
        init = resample(to_mono(audio), sr, synth.sample_rate)[0]
    audio, sr = synth.generate(
        tag=tag, adsr=adsr, pitch_env=pitch_env, init_audio=init,
        **same_named(args, "note", "text", "strength", "steps", "cfg", "seed", "n", "variation"),
    )  # fmt: skip
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    label = (args.tag or "text").replace(" ", "_")
    note = f"_{args.note}" if args.note else ""
    for i, clip in enumerate(audio):
        path = out / f"{label}{note}_seed{args.seed + i}.wav"
        save_audio(path, clip, sr, subtype="PCM_24")
        print(path)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import json

    from mambakit.drums import DrumSynth
    from mambakit.drums.pipeline import DEFAULTS_NAME
    from mambakit.drums.training import calibrate_decay_defaults

    if not (args.run / DEFAULTS_NAME).is_file():
        raise FileNotFoundError(f"{args.run} has no {DEFAULTS_NAME}: is it a drum run folder?")
    synth = DrumSynth.from_pretrained(args.run)
    result = calibrate_decay_defaults(
        synth, iterations=args.iterations, seeds=args.seeds, cfg=args.cfg
    )
    (args.run / DEFAULTS_NAME).write_text(json.dumps(result.defaults, indent=2))
    for tag, d in result.defaults.items():
        dec, sus = d["adsr"][1:3]
        print(
            f"{tag:>10}: decay {dec:.3f} s, sustain {sus:.2f}; rings {result.ratios[tag]:.2f}x "
            f"the library's 10 % decay of {d['decay_10_s']:.3f} s (guidance {d['cfg']:g})"
        )
    print(f"rewrote {args.run / DEFAULTS_NAME}")
    return 0


def _load_synth(run: Path | None):
    """The drum model of ``run``, or the shipped ``gm-drums`` model when none is given."""
    from mambakit.drums import DrumSynth
    from mambakit.drums.pipeline import DEFAULT_MODEL

    return DrumSynth.from_pretrained(run or DEFAULT_MODEL)


def register(subparsers: argparse._SubParsersAction) -> None:
    drums = subparsers.add_parser("drums", help="MambaKit one-shot drum synthesis")
    sub = drums.add_subparsers(dest="drums_command", metavar="COMMAND")

    p = sub.add_parser("train", help="train on a folder of one-shots")
    p.add_argument("data", type=Path, help="folder tree of drum one-shots (tags from names)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument("--preset", default="tiny", choices=("tiny", "small", "base"))
    p.add_argument(
        "--init", help="fine-tune this run or packaged model (e.g. gm-drums) instead of a new one"
    )
    add_train_arguments(p, "budget (default: 10 minutes)")
    p.add_argument("--tags-csv", type=Path, help="CSV of path,tag overriding names")
    p.add_argument("--workers", type=int, help="feature-extraction processes")
    p.set_defaults(func=_train)

    g = sub.add_parser("generate", help="generate one-shots from controls")
    g.add_argument(
        "run", type=Path, nargs="?", help="run folder or packaged model (default: gm-drums)"
    )
    g.add_argument(
        "--tag",
        help="kick, snare, clap, closed_hat, open_hat, tom, cymbal, rim, ... or a folder word "
        "(hihat, hh, bd, sd, crash, ride, ...)",
    )
    g.add_argument("--text", help="free-text prompt (needs the [text] extra, else keywords)")
    g.add_argument("--note", help="root note: MIDI number or name (C1 = 24)")
    g.add_argument("--attack", help="e.g. 2ms")
    g.add_argument("--decay", help="e.g. 300ms (time to fall 60 dB)")
    g.add_argument("--sustain", type=float, help="sustain level 0..1")
    g.add_argument("--release", help="e.g. 50ms")
    g.add_argument("--pitch-drop", type=float, help="semitones above the root at the start")
    g.add_argument("--pitch-decay", default="40ms", help="time constant of the pitch drop")
    g.add_argument("--init", type=Path, help="input sample to vary (img2img)")
    g.add_argument("--strength", type=float, default=0.6, help="0 keeps --init, 1 ignores it")
    g.add_argument("--steps", type=int, help="denoising steps")
    g.add_argument(
        "--cfg", type=float, default=None, help="guidance scale (1 = off; default: the model's)"
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("-n", type=int, default=1, help="how many variations")
    g.add_argument(
        "--variation", type=float, default=0.0, help="0..1: fresh noise per step (seeds vary more)"
    )
    add_device_argument(g)
    g.add_argument("-o", "--output", type=Path, required=True, help="folder for the WAVs")
    g.set_defaults(func=_generate)

    c = sub.add_parser(
        "calibrate",
        help="fit each tag's default envelope so tag-only requests ring as long as the library",
    )
    c.add_argument("run", type=Path, help="run folder (its drum_defaults.json is rewritten)")
    c.add_argument(
        "--iterations", type=int, default=8, help="at most this many measurements per tag (8)"
    )
    c.add_argument("--seeds", type=int, default=8, help="generations per measurement (8)")
    c.add_argument(
        "--cfg",
        type=float,
        default=None,
        help="guidance scale to store as every tag's default and fit the envelopes under "
        "(default: keep each tag's)",
    )
    c.set_defaults(func=_calibrate)

    from mambakit.cli import drums_tools

    drums_tools.add_analyze(sub)
    drums_tools.add_kit(sub, _load_synth)
    drums_tools.add_render(sub, _load_synth)
    drums_tools.add_dataset_from_sf2(sub)
    drums.set_defaults(func=lambda args: drums.print_help() or 2)
