"""``mambakit drums analyze|kit|render`` subcommands (registered by ``cli/drums.py``).

Each ``add_*`` adds one subparser to the ``drums`` subparser group and sets
``func=handler``; handlers take the parsed ``argparse.Namespace`` and return an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mambakit.cli.common import UserError, int_list, same_named


def _analyze(args: argparse.Namespace) -> int:
    from mambakit.drums.data import DrumCorpusConfig, UnusableFile, analyze_clip, preprocess_file
    from mambakit.utils import note_name

    cfg = DrumCorpusConfig(seconds=args.seconds)
    try:
        audio = preprocess_file(args.file, cfg)
    except (UnusableFile, OSError) as exc:
        raise UserError(f"{args.file}: {exc}") from exc
    f = analyze_clip(audio, cfg.sr)
    a, d, s, r = (float(v) for v in f["adsr"][:4])
    midi = float(f["midi_note"])
    penv = f["pitch_env"]
    print(f"file:        {args.file}")
    print(f"ADSR vector: {np.array2string(f['adsr'], precision=4)}")
    print(f"  attack {a:.4g}  decay {d:.4g}  sustain {s:.4g}  release {r:.4g}")
    print(f"root note:   {note_name(int(round(midi)))} (MIDI {midi:.2f})")
    print(f"octave:      {int(f['octave'])}   pitch class: {int(f['pitch_class'])}")
    print(f"tonal:       {bool(f['tonal'])}")
    print(
        f"pitch env:   start {penv[0]:+.2f} st, max |{np.abs(penv).max():.2f}| st, "
        f"end {penv[-1]:+.2f} st (relative to root)"
    )
    if args.png:
        _plot(args.png, audio, cfg.sr, f)
        print(f"plot:        {args.png}")
    return 0


def _plot(png: Path, audio: np.ndarray, sr: int, f: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mambakit import dsp

    t = np.arange(audio.size) / sr
    fig, ax = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    ax[0].plot(t, audio, lw=0.5)
    ax[0].set_ylabel("waveform")
    env = np.asarray(dsp.hilbert_envelope(audio, sr)).reshape(-1)
    ax[1].plot(t, env, label="Hilbert envelope")
    try:
        adsr = dsp.ADSR(*(float(v) for v in f["adsr"]))
        fitted = np.asarray(dsp.render_adsr(adsr, audio.size, sr)).reshape(-1)
        ax[1].plot(t, fitted, label="fitted ADSR")
    except (AttributeError, TypeError, ValueError):
        pass  # plot the envelope alone if the ADSR cannot be rebuilt from its vector
    ax[1].legend()
    ax[1].set_ylabel("amplitude")
    ax[2].plot(t, f["pitch_env"])
    ax[2].set_ylabel("pitch env [st]")
    ax[2].set_xlabel("time [s]")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def add_analyze(sub: Any) -> argparse.ArgumentParser:
    """``mambakit drums analyze FILE [--png PATH] [--seconds S]``."""
    p = sub.add_parser("analyze", help="print the ADSR, root note and pitch envelope of a one-shot")
    p.add_argument("file", type=Path)
    p.add_argument("--png", type=Path, default=None, help="plot waveform/envelope/pitch here")
    p.add_argument("--seconds", type=float, default=1.0, help="analysis length [s]")
    p.set_defaults(func=_analyze)
    return p


def add_kit(sub: Any, make_synth: Callable[[Path | None], Any]) -> argparse.ArgumentParser:
    """``mambakit drums kit [RUN] kit.yaml -o KITDIR``; ``make_synth(run_dir or None)`` loads
    the model (``None``: the shipped one)."""

    def _kit(args: argparse.Namespace) -> int:
        from mambakit.drums.kit import generate_kit, load_kit_yaml, write_kit

        try:
            pads = load_kit_yaml(args.spec)
        except (OSError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        synth = make_synth(args.run)
        audios = generate_kit(synth, pads)
        sfz = write_kit(args.output, pads, audios, int(getattr(synth, "sample_rate", 44100)))
        print(f"wrote {len(pads)} pads to {sfz.parent} ({sfz.name}, kit.json, samples/)")
        return 0

    p = sub.add_parser("kit", help="generate a drum kit (SFZ + WAVs) from a YAML spec")
    p.add_argument(
        "run", type=Path, nargs="?", help="run folder or packaged model (default: gm-drums)"
    )
    p.add_argument("spec", type=Path, help="kit YAML (see drums/assets/default_kit.yaml)")
    p.add_argument("-o", "--output", type=Path, required=True, help="kit folder to write")
    p.set_defaults(func=_kit)
    return p


def _render(args: argparse.Namespace, make_synth: Callable[[Path | None], Any]) -> int:
    import soundfile as sf

    from mambakit.drums.arrange import bundled_pattern_path, render_pattern
    from mambakit.drums.kit import default_kit_path, generate_kit, load_kit_yaml, write_kit

    kit, pattern = args.kit, args.pattern
    if pattern is None and kit is not None and kit.suffix.lower() in (".mid", ".midi"):
        kit, pattern = None, kit  # `render beat.mid -o x.wav`: the one path is the pattern
    pattern = pattern or bundled_pattern_path()
    if kit is None:  # no kit folder: the bundled 8-pad kit from the model, beside the output
        synth = make_synth(args.run)
        pads = load_kit_yaml(default_kit_path())
        kit = args.output.parent / f"{args.output.stem}_kit"
        write_kit(kit, pads, generate_kit(synth, pads), int(synth.sample_rate))
        print(f"generated the bundled kit into {kit}")
    try:
        audio, sr = render_pattern(
            kit,
            pattern,
            sr=args.sr,
            channel=None if args.any_channel else 9,
            choke_hats=not args.no_choke,
        )
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, audio[0], sr, subtype="PCM_24")
    print(f"wrote {args.output} ({audio.shape[1] / sr:.2f} s at {sr} Hz)")
    return 0


def add_render(sub: Any, make_synth: Callable[[Path | None], Any]) -> argparse.ArgumentParser:
    """``mambakit drums render [KITDIR] [pattern.mid] -o beat.wav [--run RUN]``: without a
    kit folder, the bundled kit is generated first by ``make_synth(args.run)`` (``None``:
    the shipped model); without a pattern, the bundled 2-bar pattern is played."""
    p = sub.add_parser("render", help="render a General MIDI drum pattern with a kit folder")
    p.add_argument("kit", type=Path, nargs="?", help="kit folder (default: generate one)")
    p.add_argument("pattern", type=Path, nargs="?", help="GM drum MIDI (default: bundled)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--run", type=Path, help="model for the generated kit (default: gm-drums)")
    p.add_argument("--sr", type=int, default=44100)
    p.add_argument("--any-channel", action="store_true", help="accept notes on every channel")
    p.add_argument("--no-choke", action="store_true", help="let open hats ring under closed hats")
    p.set_defaults(func=lambda args: _render(args, make_synth))
    return p


def _dataset_from_sf2(args: argparse.Namespace) -> int:
    from mambakit.drums.soundfont import render_gm_drums

    out = render_gm_drums(
        args.font, args.out, **same_named(args, "kits", "notes", "velocities", "near_copy")
    )
    files = sorted(out.rglob("*.wav"))
    tags = sorted({f.parent.name for f in files})
    print(f"wrote {len(files)} one-shots ({', '.join(tags)}) to {out}")
    return 0


def add_dataset_from_sf2(sub: Any) -> argparse.ArgumentParser:
    """``mambakit drums dataset-from-sf2 FONT.sf2 --out DIR``: GM drum kits -> one-shots."""
    from mambakit.drums.soundfont import GM_DRUM_KITS

    p = sub.add_parser(
        "dataset-from-sf2", help="render a SoundFont's GM drum kits into a one-shot folder"
    )
    p.add_argument("font", type=Path, help="General MIDI SoundFont (.sf2) with drum kits")
    p.add_argument("--out", type=Path, required=True, help="folder to write (kit/tag/*.wav)")
    p.add_argument(
        "--kits",
        type=int_list,
        default=",".join(str(k) for k in GM_DRUM_KITS),
        help="bank-128 programs (0 standard, 8 room, 16 power, 24 electronic, 25 tr808, ...)",
    )
    p.add_argument("--notes", type=int_list, default="35-81",
                   help="GM percussion keys, e.g. 35-81 or 36,38,42")  # fmt: skip
    p.add_argument("--velocities", type=int_list, default="70,100,127", help="MIDI velocities")
    p.add_argument(
        "--near-copy",
        type=float,
        default=0.9,
        help="skip a note whose best-lag normalised cross-correlation with a clip kept for "
        "another kit of the same tag exceeds this (kits share samples; 1 keeps every note)",
    )
    p.set_defaults(func=_dataset_from_sf2)
    return p
