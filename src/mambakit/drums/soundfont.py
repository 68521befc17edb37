"""A folder of real drum one-shots from any General MIDI SoundFont's drum kits.

``render_gm_drums(font, out_dir)`` plays every note of the GM percussion map (35-81) on
channel 10 for each drum kit (bank 128 program; FluidR3_GM has Standard, Room, Power,
Electronic, TR-808, Jazz, Brush and Orchestra) at a few velocities, dry (no reverb or
chorus), and writes ``out_dir/<kit>/<tag>/<kit>_<note name>_v<velocity>.wav`` at 44.1 kHz.
The folder names are drum tags of :data:`mambakit.drums.tags.TAGS`, so the result is an
ordinary one-shot folder for ``mambakit drums train`` / ``eval drums --real``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from mambakit.dsp import AudioError, save_audio
from mambakit.soundfont import DRUM_CHANNEL, find_fluidsynth, render_note

__all__ = ["GM_DRUM_KITS", "GM_PERCUSSION", "render_gm_drums"]

#: GM percussion key -> (name, drum tag). Tags follow what a producer would file it under:
#: side stick is a rim, crash/ride/splash/china are cymbals, hand percussion is perc,
#: whistles are fx. Names avoid the word "open" outside hi-hats (the tag reader takes it
#: for an open hat): the open conga, cuica and triangle are plain "hi_conga", "cuica",
#: "triangle" beside their "mute_" twins.
GM_PERCUSSION: dict[int, tuple[str, str]] = {
    35: ("acoustic_bass_drum", "kick"), 36: ("bass_drum_1", "kick"),
    37: ("side_stick", "rim"), 38: ("acoustic_snare", "snare"), 39: ("hand_clap", "clap"),
    40: ("electric_snare", "snare"), 41: ("low_floor_tom", "tom"),
    42: ("closed_hi_hat", "closed_hat"), 43: ("high_floor_tom", "tom"),
    44: ("pedal_hi_hat", "closed_hat"), 45: ("low_tom", "tom"), 46: ("open_hi_hat", "open_hat"),
    47: ("low_mid_tom", "tom"), 48: ("hi_mid_tom", "tom"), 49: ("crash_cymbal_1", "cymbal"),
    50: ("high_tom", "tom"), 51: ("ride_cymbal_1", "cymbal"), 52: ("chinese_cymbal", "cymbal"),
    53: ("ride_bell", "cymbal"), 54: ("tambourine", "perc"), 55: ("splash_cymbal", "cymbal"),
    56: ("cowbell", "perc"), 57: ("crash_cymbal_2", "cymbal"), 58: ("vibraslap", "perc"),
    59: ("ride_cymbal_2", "cymbal"), 60: ("hi_bongo", "perc"), 61: ("low_bongo", "perc"),
    62: ("mute_hi_conga", "perc"), 63: ("hi_conga", "perc"), 64: ("low_conga", "perc"),
    65: ("high_timbale", "perc"), 66: ("low_timbale", "perc"), 67: ("high_agogo", "perc"),
    68: ("low_agogo", "perc"), 69: ("cabasa", "perc"), 70: ("maracas", "perc"),
    71: ("short_whistle", "fx"), 72: ("long_whistle", "fx"), 73: ("short_guiro", "perc"),
    74: ("long_guiro", "perc"), 75: ("claves", "perc"), 76: ("hi_wood_block", "perc"),
    77: ("low_wood_block", "perc"), 78: ("mute_cuica", "perc"), 79: ("cuica", "perc"),
    80: ("mute_triangle", "perc"), 81: ("triangle", "perc"),
}  # fmt: skip

#: The GM2 drum-kit programs (bank 128). A font without one of them falls back to its
#: Standard kit (FluidSynth warns); :func:`render_gm_drums` then skips exact duplicates.
GM_DRUM_KITS: dict[int, str] = {
    0: "standard", 8: "room", 16: "power", 24: "electronic", 25: "tr808",
    32: "jazz", 40: "brush", 48: "orchestra",
}  # fmt: skip


def render_gm_drums(
    font: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    kits: Sequence[int] = tuple(GM_DRUM_KITS),
    notes: Sequence[int] = tuple(GM_PERCUSSION),
    velocities: Sequence[int] = (70, 100, 127),
    hold_seconds: float = 0.1,
    sample_rate: int = 44100,
    fluidsynth: str = "fluidsynth",
    progress: bool = True,
) -> Path:
    """Render ``kits`` x ``notes`` x ``velocities`` one-shots; returns ``out_dir``.

    Notes that render silent (the kit lacks the key) and exact duplicates of a note already
    written for another kit (a font that maps a missing kit to its Standard kit) are skipped
    and counted in one warning. Existing files are kept (re-running resumes).

    Raises:
        FileNotFoundError: no such font, or FluidSynth is not installed.
        ValueError: a note outside the GM percussion map.
        RuntimeError: nothing but silence was rendered.
    """
    font = Path(font)
    exe = find_fluidsynth(font, fluidsynth)
    unknown = sorted(set(notes) - set(GM_PERCUSSION))
    if unknown:
        raise ValueError(f"notes {unknown} are not in the GM percussion map (35-81)")
    out = Path(out_dir)
    jobs = [(k, n, v) for k in kits for n in notes for v in velocities]
    written, skipped, seen = 0, [], {}
    for kit, note, velocity in tqdm(jobs, desc="render drums", disable=not progress):
        kit_name = GM_DRUM_KITS.get(kit, f"kit{kit:03d}")
        name, tag = GM_PERCUSSION[note]
        path = out / kit_name / tag / f"{kit_name}_{name}_v{velocity:03d}.wav"
        if path.is_file():
            written += 1
            continue
        try:
            audio, sr = render_note(
                exe, font, kit, note, velocity, hold_seconds, sample_rate,
                channel=DRUM_CHANNEL, effects=False,
            )  # fmt: skip
        except AudioError:
            skipped.append(f"{kit_name} {name} v{velocity}: silent")
            continue
        if float(audio.abs().max()) < 1e-4:
            skipped.append(f"{kit_name} {name} v{velocity}: silent")
            continue
        key = (note, velocity, audio.shape[-1], round(float(audio.abs().sum()), 3))
        if key in seen:
            skipped.append(f"{kit_name} {name} v{velocity}: same as {seen[key]}")
            continue
        seen[key] = kit_name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_audio(path, audio, sr)
        written += 1
    if skipped:
        warnings.warn(
            f"{font}: {len(skipped)} drum notes skipped (e.g. {skipped[0]})", stacklevel=2
        )
    if not written:
        raise RuntimeError(f"{font}: every drum note rendered silent; does it have drum kits?")
    return out
