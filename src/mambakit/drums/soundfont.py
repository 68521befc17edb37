"""A folder of real drum one-shots from any General MIDI SoundFont's drum kits.

``render_gm_drums(font, out_dir)`` plays every note of the GM percussion map (35-81) on
channel 10 for each drum kit (bank 128 program; FluidR3_GM has Standard, Room, Power,
Electronic, TR-808, Jazz, Brush and Orchestra) at a few velocities, dry (no reverb or
chorus), and writes ``out_dir/<kit>/<tag>/<kit>_<note name>_v<velocity>.wav`` at 44.1 kHz.
The folder names are drum tags of :data:`mambakit.drums.tags.TAGS`, so the result is an
ordinary one-shot folder for ``mambakit drums train`` / ``eval drums --real``.

Kits of a font share samples: FluidR3_GM's Power and Room kits play the Standard kit's
cymbals and hats (at other notes, levels or filter settings), its Jazz kit two of its
snares. A kit split into training and held-out kits would then test on training sounds,
so a note that is a near copy of a clip already kept for another kit (kits in the order
given, Standard first) is skipped: :func:`near_copy_score` is the normalised
cross-correlation at the best lag over the first 0.5 s, level- and delay-invariant, and
above 0.9 for every such reuse in FluidR3 (0.95-1.0) while distinct samples of one tag
stay under 0.8 (the closest: Power's toms vs Standard's, 0.69-0.79).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mambakit.dsp import AudioError, load_audio, save_audio
from mambakit.soundfont import DRUM_CHANNEL, find_fluidsynth, render_note

__all__ = ["GM_DRUM_KITS", "GM_PERCUSSION", "NearCopyBank", "near_copy_score", "render_gm_drums"]

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
#: Standard kit (FluidSynth warns); :func:`render_gm_drums` then skips the copies.
GM_DRUM_KITS: dict[int, str] = {
    0: "standard", 8: "room", 16: "power", 24: "electronic", 25: "tr808",
    32: "jazz", 40: "brush", 48: "orchestra",
}  # fmt: skip


#: Seconds from the start of a clip that :func:`near_copy_score` compares.
NEAR_COPY_SECONDS = 0.5


def _window_spectrum(audio: Tensor, n_window: int) -> Tensor:
    """Mono, first ``n_window`` samples, unit energy, zero-padded rfft of length 2 n_window."""
    mono = audio.reshape(-1, audio.shape[-1]).mean(0)[:n_window].double()  # [T]
    mono = mono / mono.norm().clamp_min(1e-12)
    return torch.fft.rfft(mono, n=2 * n_window)  # [n_window + 1]


def near_copy_score(clip: Tensor, others: Tensor, n_window: int) -> Tensor:
    """Normalised cross-correlation at the best lag of ``clip`` with each of ``others``.

    ``clip``: an rfft from :func:`_window_spectrum`, [F]; ``others``: [N, F] of the same.
    Returns [N] in [0, 1]: ``max_lag |sum_t a(t) b(t + lag)| / (|a| |b|)``, 1 for a copy at
    any level, delay or polarity (the zero padding makes the correlation linear, not
    circular).
    """
    xcorr = torch.fft.irfft(others.conj() * clip, n=2 * n_window, dim=-1)  # [N, 2 n_window]
    return xcorr.abs().amax(dim=-1)


class NearCopyBank:
    """The clips kept so far, by tag and kit, for the near-copy test of :func:`render_gm_drums`
    (``threshold`` None: no test, nothing kept)."""

    def __init__(self, threshold: float | None, sample_rate: int) -> None:
        self.threshold = threshold
        self.n_window = int(round(NEAR_COPY_SECONDS * sample_rate))
        self._spectra: dict[str, list[Tensor]] = {}
        self._names: dict[str, list[tuple[str, str]]] = {}  # tag -> [(kit, note name)]

    def add(self, audio: Tensor, tag: str, kit: str, name: str) -> None:
        if self.threshold is None:
            return
        self._spectra.setdefault(tag, []).append(_window_spectrum(audio, self.n_window))
        self._names.setdefault(tag, []).append((kit, name))

    def copy_of(self, audio: Tensor, tag: str, kit: str) -> str | None:
        """``"<kit> <note name> (<score>)"`` of the closest kept clip of ``tag`` from another
        kit scoring above the threshold, else ``None``."""
        if self.threshold is None:
            return None
        names = self._names.get(tag, [])
        others = [i for i, (k, _) in enumerate(names) if k != kit]
        if not others:
            return None
        spectra = torch.stack([self._spectra[tag][i] for i in others])  # [N, F]
        scores = near_copy_score(_window_spectrum(audio, self.n_window), spectra, self.n_window)
        best = int(scores.argmax())
        if float(scores[best]) <= self.threshold:
            return None
        kit_of, name_of = names[others[best]]
        return f"{kit_of} {name_of} ({float(scores[best]):.2f})"


def _skip_reason(
    audio: Tensor | None, bank: NearCopyBank, tag: str, kit: str
) -> tuple[str | None, str]:
    """Why a rendered note is not written (``None``: write it), and a detail for the warning."""
    if audio is None or float(audio.abs().max()) < 1e-4:
        return "silent", ""
    copy_of = bank.copy_of(audio, tag, kit)
    if copy_of is not None:
        return "near copies of another kit's clip", f" ~ {copy_of}"
    return None, ""


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
    near_copy: float | None = 0.9,
) -> Path:
    """Render ``kits`` x ``notes`` x ``velocities`` one-shots; returns ``out_dir``.

    Notes that render silent (the kit lacks the key) and near copies of a clip of the same
    tag already kept for another kit (:func:`near_copy_score` above ``near_copy``; ``None``
    keeps them) are skipped and counted in one warning. Existing files are kept and take
    part in the near-copy test (re-running resumes and skips the same notes).

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
    bank = NearCopyBank(near_copy, sample_rate)
    written, skipped = 0, Counter()
    examples: dict[str, str] = {}
    for kit, note, velocity in tqdm(jobs, desc="render drums", disable=not progress):
        kit_name = GM_DRUM_KITS.get(kit, f"kit{kit:03d}")
        name, tag = GM_PERCUSSION[note]
        path = out / kit_name / tag / f"{kit_name}_{name}_v{velocity:03d}.wav"
        if path.is_file():
            bank.add(load_audio(path)[0], tag, kit_name, f"{name} v{velocity}")
            written += 1
            continue
        try:
            audio, sr = render_note(
                exe, font, kit, note, velocity, hold_seconds, sample_rate,
                channel=DRUM_CHANNEL, effects=False,
            )  # fmt: skip
        except AudioError:
            audio = None
        why, detail = _skip_reason(audio, bank, tag, kit_name)
        if why is not None:
            skipped[why] += 1
            examples.setdefault(why, f"{kit_name} {name} v{velocity}{detail}")
            continue
        bank.add(audio, tag, kit_name, f"{name} v{velocity}")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_audio(path, audio, sr)
        written += 1
    if skipped:
        reasons = "; ".join(f"{n} {why} (e.g. {examples[why]})" for why, n in skipped.items())
        warnings.warn(
            f"{font}: {sum(skipped.values())} drum notes skipped: {reasons}", stacklevel=2
        )
    if not written:
        raise RuntimeError(f"{font}: every drum note rendered silent; does it have drum kits?")
    return out
