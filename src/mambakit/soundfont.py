"""Render single MIDI notes from a SoundFont with the FluidSynth command-line program.

Used to turn any ``.sf2`` into training data: paired instrument notes for ``timbre``
(:func:`mambakit.timbre.data.render_sf2_dataset`) and drum one-shots for ``drums``
(:func:`mambakit.drums.soundfont.render_gm_drums`). FluidSynth is a system program
(``apt-get install fluidsynth``, ``brew install fluid-synth``), not a Python dependency:
it is looked up when a render starts and its absence is a clear error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from torch import Tensor

from mambakit.dsp import load_audio

__all__ = ["DRUM_CHANNEL", "find_fluidsynth", "render_note"]

#: MIDI channel 10 (0-based 9): General MIDI's percussion channel, bank 128 in a GM font,
#: where the program number selects the drum kit.
DRUM_CHANNEL = 9


def find_fluidsynth(font: str | os.PathLike[str], fluidsynth: str = "fluidsynth") -> str:
    """The path of the ``fluidsynth`` program, after checking that ``font`` exists.

    Raises:
        FileNotFoundError: the font does not exist, or the program is not installed.
    """
    font = Path(font)
    if not font.is_file():
        raise FileNotFoundError(f"{font}: no such SoundFont file")
    exe = shutil.which(fluidsynth)
    if exe is None:
        raise FileNotFoundError(
            f"the {fluidsynth!r} program is not installed; it renders {font.name} "
            "(install FluidSynth, e.g. `apt-get install fluidsynth` or `brew install fluid-synth`)"
        )
    return exe


def _note_midi_file(
    path: Path, program: int, pitch: int, velocity: int, hold_s: float, channel: int
) -> None:
    """One note: program change, note on, note off after ``hold_s`` seconds (at 120 bpm)."""
    import mido

    ticks_per_beat, tempo = 480, 500_000  # 120 bpm: one beat = 0.5 s
    hold_ticks = max(1, int(round(hold_s / (tempo / 1e6) * ticks_per_beat)))
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=tempo, time=0),
            mido.Message("program_change", program=program, channel=channel, time=0),
            mido.Message("note_on", note=pitch, velocity=velocity, channel=channel, time=0),
            mido.Message("note_off", note=pitch, velocity=0, channel=channel, time=hold_ticks),
        ]
    )
    mido.MidiFile(tracks=[track], ticks_per_beat=ticks_per_beat).save(str(path))


def render_note(
    exe: str,
    font: str | os.PathLike[str],
    program: int,
    pitch: int,
    velocity: int,
    hold_s: float,
    sample_rate: int,
    channel: int = 0,
    effects: bool = True,
) -> tuple[Tensor, int]:
    """Play one note of ``font`` through FluidSynth; returns ``(audio [C, T], sr)``.

    ``exe`` comes from :func:`find_fluidsynth`. The note is held for ``hold_s`` seconds and
    the file runs on until FluidSynth's voices are silent (the release tail included).
    ``channel`` 9 (:data:`DRUM_CHANNEL`) plays the GM drum kit ``program``; ``effects=False``
    turns FluidSynth's reverb and chorus off (dry one-shots).

    Raises:
        ValueError: program, pitch or velocity outside the MIDI range.
        RuntimeError: FluidSynth failed (its message is included).
        mambakit.dsp.AudioError: FluidSynth wrote no readable audio (e.g. a silent note).
    """
    if not (0 <= program < 128 and 0 <= pitch < 128 and 0 < velocity < 128):
        raise ValueError(
            f"program {program}, pitch {pitch}, velocity {velocity}: out of MIDI range"
        )
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "note.mid", Path(tmp) / "note.wav"
        _note_midi_file(mid, program, pitch, velocity, hold_s, channel)
        cmd = [exe, "-ni", "-q", "-g", "0.8", "-r", str(sample_rate), "-F", str(wav)]
        if not effects:
            cmd += ["-R", "0", "-C", "0"]
        result = subprocess.run(
            [*cmd, str(font), str(mid)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0 or not wav.is_file():
            raise RuntimeError(
                f"fluidsynth failed on {font} (program {program}, note {pitch}): "
                f"{result.stderr.strip()[-300:]}"
            )
        return load_audio(wav)
