"""Paired-note data for timbre transfer, in the NSynth layout.

A dataset folder holds ``examples.json`` (``{note_str: {pitch, velocity, instrument_str,
instrument_family_str, instrument_source_str, ...}}``) and ``audio/<note_str>.wav``,
as NSynth (Engel et al., 2017) does. Three ways to get one:

- the real NSynth (:func:`read_nsynth` applies the seed's filters: no synthetic
  instruments, velocity > 50);
- :func:`render_sf2_dataset`: render programs x pitches x velocities of any SoundFont with
  the ``fluidsynth`` command-line program;
- :func:`make_procedural_instruments`: a small set of synthetic-but-distinct instruments
  (harmonic spectra and envelopes differ per instrument) for tests and demos.

:class:`PairedNotes` turns a set into ``(content, style, target)`` triples: content = note
p of instrument A, style = another note of instrument B, target = note p of instrument B.
This is what teaches transfer; the seed trained on self-reconstruction only.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mambakit.dsp import AudioError, load_audio, peak_normalize, resample, save_audio, to_mono
from mambakit.soundfont import find_fluidsynth, render_note
from mambakit.utils import note_name, read_document

__all__ = [
    "NoteRecord",
    "read_nsynth",
    "PairedNotes",
    "make_procedural_instruments",
    "render_sf2_dataset",
    "GM_FAMILIES",
]

EXAMPLES_NAME = "examples.json"

# General MIDI families, one per block of 8 programs (program // 8).
GM_FAMILIES = (
    "keyboard", "mallet", "organ", "guitar", "bass", "string", "string_ensemble", "brass",
    "reed", "flute", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive",
    "sound_effects",
)  # fmt: skip


@dataclass(frozen=True)
class NoteRecord:
    """One note of an NSynth-layout set: its audio file and labels (MIDI pitch, velocity)."""

    note_str: str
    path: Path
    pitch: int
    velocity: int
    instrument_str: str
    instrument_family_str: str
    instrument_source_str: str


def read_nsynth(
    root: str | os.PathLike[str],
    min_velocity: int = 51,
    drop_synthetic: bool = True,
) -> list[NoteRecord]:
    """The notes of an NSynth-layout folder, with the seed's filters.

    Args:
        root: folder with ``examples.json`` and ``audio/``.
        min_velocity: keep notes with ``velocity >= min_velocity`` (seed: velocity > 50).
        drop_synthetic: drop ``instrument_source_str == "synthetic"`` (seed's filter).

    Entries whose WAV is missing are skipped with one warning that counts them.

    Raises:
        FileNotFoundError: no ``examples.json``.
        ValueError: ``examples.json`` is not valid JSON or an entry lacks a needed key.
    """
    root = Path(root)
    index = root / EXAMPLES_NAME
    entries = read_document(index, f"{index}: no {EXAMPLES_NAME} (not an NSynth-layout folder)")
    records, missing = [], []
    for note_str, entry in sorted(entries.items()):
        try:
            record = NoteRecord(
                note_str=note_str,
                path=root / "audio" / f"{note_str}.wav",
                pitch=int(entry["pitch"]),
                velocity=int(entry["velocity"]),
                instrument_str=str(entry["instrument_str"]),
                instrument_family_str=str(entry.get("instrument_family_str", "unknown")),
                instrument_source_str=str(entry.get("instrument_source_str", "acoustic")),
            )
        except KeyError as e:
            raise ValueError(f"{index}: entry {note_str!r} has no {e.args[0]!r}") from e
        if drop_synthetic and record.instrument_source_str == "synthetic":
            continue
        if record.velocity < min_velocity:
            continue
        if not record.path.is_file():
            missing.append(record.path.name)
            continue
        records.append(record)
    if missing:
        warnings.warn(
            f"{root}: skipped {len(missing)} entries with no audio file (e.g. {missing[0]})",
            stacklevel=2,
        )
    return records


class PairedNotes(Dataset):
    """``(content, style, target)`` triples of random segments from an NSynth-layout set.

    For item ``i`` the content is note ``records[i]`` (instrument A, pitch p). With
    probability ``1 - reconstruction_ratio`` (objective ``"transfer"``) an instrument B != A
    that has pitch p is drawn: the style is a note of B at another pitch (when B has one)
    and the target is B's note at pitch p. Otherwise (and always for objective
    ``"reconstruction"``, the seed's setup) style = target = content.

    With ``style_notes`` = k > 1 the style clip is a palette of B: the style note above
    and k - 1 more notes of B at other pitches (never p), each a crop of its own,
    end to end in order of pitch (a scale); the extra notes come from a generator seeded
    by the triple's note indices, so the content, target and first style note are those
    that ``style_notes=1`` draws. ``indices`` then name the style note nearest to p. A
    self-reconstruction's palette is of A, with the content crop as its note at p.

    Segments are ``segment_seconds`` long and start uniformly within the first
    ``max_start_seconds`` (seed: 2.1 s starting within the first second); content and
    target share their start so their onsets line up; the style has its own start.
    Notes are resampled to ``sample_rate``, mixed to mono, peak-normalised to 0.95, and
    kept in memory after their first use.

    Randomness comes from ``generator`` when given to :meth:`sample`, else from torch's
    global RNG (which the Trainer seeds per step, so runs are reproducible).

    Items: ``{"content", "style", "target"}`` each ``[1, T]`` float32, ``"transfer"`` (bool
    tensor: whether the triple is a cross-instrument one) and ``"indices"`` (``[3]`` record
    indices of content, style, target).
    """

    def __init__(
        self,
        data: str | os.PathLike[str] | Sequence[NoteRecord],
        sample_rate: int = 16000,
        segment_seconds: float = 2.1,
        max_start_seconds: float = 1.0,
        objective: str = "transfer",
        reconstruction_ratio: float = 0.2,
        style_notes: int = 1,
    ) -> None:
        if style_notes < 1:
            raise ValueError(f"style_notes must be >= 1, got {style_notes}")
        if objective not in ("transfer", "reconstruction"):
            raise ValueError(f"objective must be 'transfer' or 'reconstruction', got {objective!r}")
        if not 0.0 <= reconstruction_ratio <= 1.0:
            raise ValueError(f"reconstruction_ratio must be in [0, 1], got {reconstruction_ratio}")
        self.records = list(data) if not isinstance(data, (str, os.PathLike)) else read_nsynth(data)
        if not self.records:
            raise ValueError(f"{data}: no usable notes (after the velocity / source filters)")
        self.sample_rate = sample_rate
        self.segment = int(round(segment_seconds * sample_rate))
        self.max_start = int(round(max_start_seconds * sample_rate))
        self.objective = objective
        self.reconstruction_ratio = 1.0 if objective == "reconstruction" else reconstruction_ratio
        self.style_notes = style_notes
        # instrument -> pitch -> record indices
        self.by_instrument: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, r in enumerate(self.records):
            self.by_instrument[r.instrument_str][r.pitch].append(i)
        self.instruments = sorted(self.by_instrument)
        self._audio: dict[int, Tensor] = {}

    @classmethod
    def from_source(cls, source: str | os.PathLike[str] | PairedNotes, **options) -> PairedNotes:
        """``source`` as it is when it is already a :class:`PairedNotes` (built by the caller),
        else ``cls(source, **options)`` from an NSynth-layout folder; what the training
        entry points accept as their data."""
        return source if isinstance(source, PairedNotes) else cls(source, **options)

    def __len__(self) -> int:
        return len(self.records)

    def audio(self, index: int) -> Tensor:
        """The whole note ``index`` as ``[1, T]`` at ``sample_rate`` (cached)."""
        if index not in self._audio:
            record = self.records[index]
            audio, sr = load_audio(record.path)
            audio = resample(to_mono(audio), sr, self.sample_rate)
            self._audio[index] = peak_normalize(audio, 0.95)
        return self._audio[index]

    def _crop(self, audio: Tensor, start: int) -> Tensor:
        seg = audio[:, start : start + self.segment]
        return torch.nn.functional.pad(seg, (0, self.segment - seg.shape[-1]))

    def _start(self, n: int, generator: torch.Generator | None) -> int:
        latest = max(0, min(self.max_start, n - self.segment))
        return int(torch.randint(latest + 1, (1,), generator=generator))

    def _choice(self, options: Sequence[int], generator: torch.Generator | None) -> int:
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    def sample(self, index: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The triple for content note ``index``, drawn with ``generator``."""
        content_rec = self.records[index]
        pitch = content_rec.pitch
        partners = [
            name
            for name in self.instruments
            if name != content_rec.instrument_str and pitch in self.by_instrument[name]
        ]
        transfer = bool(partners) and float(torch.rand((), generator=generator)) >= (
            self.reconstruction_ratio
        )
        content = self.audio(index)
        start = self._start(content.shape[-1], generator)
        if not transfer:
            seg = self._crop(content, start)
            style = seg
            if self.style_notes > 1:  # a palette of A holding this very crop
                notes = self.by_instrument[content_rec.instrument_str]
                style, _ = self._palette(seg, index, pitch, notes)
            return {
                "content": seg,
                "style": style,
                "target": seg,
                "transfer": torch.tensor(False),
                "indices": torch.tensor([index, index, index]),
            }
        other = partners[int(torch.randint(len(partners), (1,), generator=generator))]
        notes = self.by_instrument[other]
        target_index = self._choice(notes[pitch], generator)
        style_pitches = [p for p in sorted(notes) if p != pitch] or [pitch]
        style_index = self._choice(notes[self._choice(style_pitches, generator)], generator)
        style = self.audio(style_index)
        style = self._crop(style, self._start(style.shape[-1], generator))
        if self.style_notes > 1:
            style, style_index = self._palette(style, style_index, pitch, notes)
        return {
            "content": self._crop(content, start),
            "style": style,
            "target": self._crop(self.audio(target_index), start),
            "transfer": torch.tensor(True),
            "indices": torch.tensor([index, style_index, target_index]),
        }

    def _palette(self, first: Tensor, first_index: int, pitch: int,
                 notes: dict[int, list[int]]) -> tuple[Tensor, int]:  # fmt: skip
        """The style crop ``first`` (record ``first_index``) and ``style_notes - 1`` crops of
        other pitches of the same instrument (each pitch once while there are enough, so
        that every palette has the same length), end to end in order of pitch, and the
        record of the one nearest to ``pitch``."""
        g = torch.Generator().manual_seed(first_index * 1_000_003 + pitch)
        first_pitch = self.records[first_index].pitch
        pool = [q for q in sorted(notes) if q not in (pitch, first_pitch)] or [first_pitch]
        order = torch.randperm(len(pool), generator=g).tolist()
        chosen = [(first_pitch, first_index, first)]
        for i in range(self.style_notes - 1):
            q = pool[order[i % len(pool)]]
            record = self._choice(notes[q], g)
            audio = self.audio(record)
            chosen.append((q, record, self._crop(audio, self._start(audio.shape[-1], g))))
        chosen.sort(key=lambda c: c[0])  # stable: the first note leads its pitch
        nearest = min(chosen, key=lambda c: (abs(c[0] - pitch), c[0]))
        return torch.cat([c[2] for c in chosen], dim=-1), nearest[1]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.sample(index)


def _write_examples(out_dir: Path, entries: dict[str, dict]) -> None:
    (out_dir / EXAMPLES_NAME).write_text(json.dumps(entries, indent=1, sort_keys=True))


def _entry(note_str: str, pitch: int, velocity: int, instrument: str, family: str, sr: int) -> dict:
    return {
        "note_str": note_str,
        "pitch": pitch,
        "velocity": velocity,
        "instrument_str": instrument,
        "instrument_family_str": family,
        "instrument_source_str": "acoustic",
        "sample_rate": sr,
    }


def make_procedural_instruments(
    out_dir: str | os.PathLike[str],
    n_instruments: int = 4,
    pitches: Sequence[int] = (48, 52, 55, 60, 64, 67),
    velocities: Sequence[int] = (100,),
    seconds: float = 1.0,
    sample_rate: int = 16000,
    seed: int = 0,
    prefix: str = "procedural",
) -> Path:
    """Write a small NSynth-layout set of additive-synthesis instruments.

    Instrument k has its own harmonic spectrum (amplitude ``1 / h^rolloff``, odd harmonics
    only for some, a formant-like boost around one harmonic), its own envelope (attack and
    exponential decay times) and a slight inharmonicity, so instruments differ in timbre
    the way acoustic ones do while a note's pitch is exact:

        x(t) = env(t) * sum_h a_h sin(2 pi h f0 sqrt(1 + B h^2) t),  f0 = 440 * 2^((p - 69) / 12)

    Instruments are named ``{prefix}_000``, ``{prefix}_001``, ...; another ``seed`` draws
    other instruments, so give a held-out set its own ``prefix`` (the evaluation matches
    instruments by name). Returns ``out_dir``.
    """
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    entries = {}
    for k in range(n_instruments):
        rolloff = rng.uniform(0.6, 2.5)
        odd_only = k % 2 == 1
        formant = int(rng.integers(2, 8))
        attack = rng.uniform(0.002, 0.08)
        decay = rng.uniform(0.2, 1.5)
        inharmonicity = rng.uniform(0.0, 4e-4)
        name = f"{prefix}_{k:03d}"
        for pitch in pitches:
            f0 = 440.0 * 2 ** ((pitch - 69) / 12)
            wave = np.zeros_like(t)
            for h in range(1, 40):
                if odd_only and h % 2 == 0:
                    continue
                freq = h * f0 * math.sqrt(1 + inharmonicity * h * h)
                if freq >= sample_rate / 2 * 0.95:
                    break
                amp = h**-rolloff * (3.0 if h == formant else 1.0)
                wave += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
            env = np.minimum(t / attack, 1.0) * np.exp(-t / decay)
            for velocity in velocities:
                note_str = f"{name}-{pitch:03d}-{velocity:03d}"
                audio = wave * env * (velocity / 127)
                audio = 0.9 * audio / max(np.abs(audio).max(), 1e-9) * (velocity / 127)
                save_audio(out / "audio" / f"{note_str}.wav", audio.astype(np.float32), sample_rate)
                entries[note_str] = _entry(
                    note_str, pitch, velocity, name, "synth_demo", sample_rate
                )
    _write_examples(out, entries)
    return out


def render_sf2_dataset(
    font: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    programs: Sequence[int] = (0, 24, 40, 56, 65, 73),
    pitches: Sequence[int] = tuple(range(48, 73, 2)),
    velocities: Sequence[int] = (100,),
    seconds: float = 4.0,
    hold_seconds: float = 3.0,
    sample_rate: int = 16000,
    fluidsynth: str = "fluidsynth",
    progress: bool = True,
) -> Path:
    """Render General-MIDI ``programs`` x ``pitches`` x ``velocities`` of a SoundFont into
    an NSynth-layout folder (NSynth's own recipe: hold 3 s, keep 4 s, 16 kHz).

    Each note is a one-note MIDI file played by the ``fluidsynth`` command-line program
    (``fluidsynth -ni -F out.wav -r RATE font.sf2 note.mid``); the result is mixed to mono
    and cut or padded to ``seconds``. Notes that render silent (the font lacks the
    program / key) are skipped and counted in a warning.

    Raises:
        FileNotFoundError: the font does not exist or the ``fluidsynth`` program is absent
            (install it, e.g. ``apt-get install fluidsynth``).
    """
    font = Path(font)
    exe = find_fluidsynth(font, fluidsynth)
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sample_rate))
    entries, silent = {}, []
    jobs = [(p, k, v) for p in programs for k in pitches for v in velocities]
    for program, pitch, velocity in tqdm(jobs, desc="render sf2", disable=not progress):
        try:
            audio, sr = render_note(exe, font, program, pitch, velocity, hold_seconds, sample_rate)
        except AudioError:
            silent.append((program, pitch, velocity))
            continue
        audio = resample(to_mono(audio), sr, sample_rate)[:, :n]
        audio = torch.nn.functional.pad(audio, (0, n - audio.shape[-1]))
        if float(audio.abs().max()) < 1e-4:
            silent.append((program, pitch, velocity))
            continue
        instrument = f"{font.stem}_program{program:03d}"
        note_str = f"{instrument}-{pitch:03d}-{velocity:03d}"
        save_audio(out / "audio" / f"{note_str}.wav", audio, sample_rate)
        family = GM_FAMILIES[program // 8]
        entries[note_str] = _entry(note_str, pitch, velocity, instrument, family, sample_rate)
    if silent:
        p, k, v = silent[0]
        warnings.warn(
            f"{font}: {len(silent)} notes rendered silent and were skipped "
            f"(e.g. program {p}, note {note_name(k)}, velocity {v})",
            stacklevel=2,
        )
    if not entries:
        raise RuntimeError(f"{font}: every note rendered silent; is it a melodic SoundFont?")
    _write_examples(out, entries)
    return out
